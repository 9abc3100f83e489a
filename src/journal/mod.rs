//! The journal: the engine's ordered stream of state changes, written
//! behind to the store in batches by one writer thread.
//!
//! Owns the write path and nothing else: the engine decides *what* changed
//! (a [`Change`], plain data) and appends it, under the campaign's lock, to
//! a lock-free in-memory queue; it never touches the store. The writer
//! thread drains the queue, keeps only the last version of each row in a
//! batch, encodes it in the on-disk [`format`], and applies it to the
//! [`Store`] as one atomic batch. So an outcome, its decision's new status
//! and the arm's new statistics are always written together, and a crash
//! keeps a prefix of the batches.
//!
//! Durability ([`Mode`]):
//! - `Default`: calls return at once. The writer applies a batch every
//!   `batch_interval` and flushes (sled flush + `fdatasync`) every
//!   `flush_interval`; a crash — a killed process or a power cut — loses
//!   what was acknowledged less than about `batch_interval +
//!   flush_interval` (plus the flush's own duration) before it.
//! - `Strict`: a mutating call waits ([`Journal::wait`]) until its change
//!   is flushed and fdatasync'd. The writer flushes after every batch, so
//!   one `fdatasync` acknowledges every request that arrived while the
//!   previous one ran (group commit).
//!
//! Tickets: every appended change counts one ticket, taken *after* the
//! append, so when the writer has read the ticket counter and then seen the
//! queue empty, every change with a ticket up to the value read is in its
//! batch. `durable` is the highest ticket known flushed.
//!
//! Failure is permanent: once a batch or a flush fails (or the writer
//! panics), [`Journal::admit`] refuses every further change, waiters whose
//! change was not yet durable get [`JournalError::NotDurable`] (the change
//! *was* applied in memory), and [`Journal::failed`] resolves so that the
//! server can turn its health to `NOT_SERVING`. After an `fdatasync` error
//! Linux may have dropped the dirty pages, so no later success could prove
//! anything.
//!
//! The queue is bounded by [`JournalOptions::capacity`] through
//! [`Journal::admit`], checked before any change is made.

pub mod check;
pub mod format;
pub mod log;
mod migrate;
mod recover;
mod writer;

pub use format::{DecisionEntry, LinearStats, OutcomeEntry, Position, Resolution, Row};
pub use recover::{Recovered, RecoveredCampaign, RecoveredDecision};

use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::store::Store;
use crossbeam_queue::SegQueue;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One state change, in the order the engine made it (per campaign).
#[derive(Debug, Clone)]
pub enum Change {
    /// A campaign was created, or its definition changed (arms added or retired).
    Campaign { uid: u64, spec: Arc<CampaignSpec> },
    /// A campaign was deleted: everything under its uid goes.
    Deleted { uid: u64 },
    /// A campaign met a new segment, numbered `segment`.
    Segment {
        uid: u64,
        segment: u32,
        name: Arc<str>,
    },
    /// A decision was made at `at`.
    Decision {
        uid: u64,
        at: Position,
        entry: DecisionEntry,
    },
    /// A decision (made at `created_ms`) was resolved; `row` is its arm's
    /// statistics in its segment after learning it, and `context`
    /// (contextual campaigns) is what the arm's ridge statistics learn it
    /// with. A reward that arrived also teaches the delay distribution.
    /// `row` is `None` for a holdout decision, which is not learned (no
    /// row, no ridge update, no delay).
    Outcome {
        uid: u64,
        outcome: OutcomeEntry,
        segment: u32,
        arm: u16,
        row: Option<Row>,
        created_ms: u64,
        context: Option<Arc<[f64]>>,
    },
    /// A budget's or an uplift's counters changed (their new values).
    Counters {
        uid: u64,
        of: format::Counted,
        counters: format::Counters,
    },
    /// Every decision before `below` has been forgotten.
    Forgotten { uid: u64, below: Position },
}

/// A place in the change stream: "everything appended up to here".
pub type Ticket = u64;

/// When calls are acknowledged relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Acknowledge at once; batch and flush on a timer.
    Default,
    /// Acknowledge after the change's batch is flushed and fdatasync'd.
    Strict,
}

#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub mode: Mode,
    /// Default mode: how long changes gather before a batch is applied.
    pub batch_interval: Duration,
    /// Default mode: how often applied batches are flushed.
    pub flush_interval: Duration,
    /// Changes the queue may hold before [`Journal::admit`] refuses more.
    pub capacity: usize,
    /// How much of the decision log is kept.
    pub decision_log: log::LogOptions,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            mode: Mode::Default,
            batch_interval: Duration::from_millis(10),
            flush_interval: Duration::from_millis(200),
            capacity: 1 << 18,
            decision_log: log::LogOptions::default(),
        }
    }
}

/// Why a change cannot be accepted or acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// The store failed earlier; nothing is accepted any more.
    #[error("the store failed: {0}")]
    Failed(String),
    /// The queue is at capacity (the store is slower than the traffic).
    #[error("the write queue is full")]
    Full,
    /// The change was applied in memory but the store failed before it was
    /// durable: whether it survives a restart is unknown.
    #[error("the store failed before the change was durable: {0}")]
    NotDurable(String),
}

#[derive(Debug, Default)]
struct DurableState {
    /// Every ticket up to this one is flushed.
    durable: Ticket,
    failure: Option<String>,
}

#[derive(Debug)]
struct Shared {
    queue: SegQueue<Change>,
    /// Tickets handed out (one per appended change).
    enqueued: AtomicU64,
    capacity: usize,
    options: JournalOptions,
    failed: AtomicBool,
    stopping: AtomicBool,
    /// Set by the writer thread as it ends, however it ends.
    stopped: AtomicBool,
    /// Someone waits in [`Journal::sync`]: flush now.
    sync_requested: AtomicBool,
    /// Guarded with `changed` for blocking waiters; `notify` wakes async ones.
    state: Mutex<DurableState>,
    changed: Condvar,
    notify: tokio::sync::Notify,
    writer: Mutex<Option<std::thread::Thread>>,
}

impl Shared {
    fn publish(&self, durable: Option<Ticket>, failure: Option<String>) {
        {
            let mut s = self.state.lock();
            if let Some(d) = durable {
                if s.failure.is_none() {
                    s.durable = s.durable.max(d);
                }
            }
            if let Some(f) = failure {
                if s.failure.is_none() {
                    s.failure = Some(f);
                }
                self.failed.store(true, Ordering::Release);
            }
        }
        self.changed.notify_all();
        self.notify.notify_waiters();
    }

    fn wake_writer(&self) {
        if let Some(t) = self.writer.lock().as_ref() {
            t.unpark();
        }
    }

    /// `Ok` once `ticket` is durable, `Err` once it cannot become so.
    fn check(&self, ticket: Ticket) -> Option<Result<(), JournalError>> {
        let s = self.state.lock();
        if s.durable >= ticket {
            Some(Ok(()))
        } else {
            s.failure
                .as_ref()
                .map(|f| Err(JournalError::NotDurable(f.clone())))
        }
    }
}

/// Handle to the change stream and its writer thread.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Read by exports of the decision log (only the writer writes).
    store: Arc<dyn Store>,
    /// The run this process writes decisions under (see [`format`]).
    run: u32,
}

impl Journal {
    /// Reads `store` (migrating an older format), numbers this process's
    /// run, removes what belongs to no campaign, makes that durable, and
    /// starts the writer. Returns the journal and what the store held.
    pub fn open(
        store: Arc<dyn Store>,
        options: JournalOptions,
    ) -> Result<(Journal, Recovered), StoreError> {
        migrate::migrate_if_needed(&*store)?;
        let (recovered, layouts, startup) = recover::recover(&*store)?;
        store.apply(&startup)?;
        store.flush()?;
        let run = recovered.run;
        let shared = Arc::new(Shared {
            queue: SegQueue::new(),
            enqueued: AtomicU64::new(0),
            capacity: options.capacity,
            options: options.clone(),
            failed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sync_requested: AtomicBool::new(false),
            state: Mutex::new(DurableState::default()),
            changed: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            writer: Mutex::new(None),
        });
        let log = log::LogWriter::load(&*store, options.decision_log, run)?;
        let writer = writer::Writer::new(layouts, run, recovered.next_uid, log);
        let worker = shared.clone();
        let reader = store.clone();
        let handle = std::thread::Builder::new()
            .name("banditd-journal".into())
            .spawn(move || writer::run(worker, store, writer))
            .map_err(StoreError::Io)?;
        *shared.writer.lock() = Some(handle.thread().clone());
        Ok((
            Journal {
                shared,
                thread: Mutex::new(Some(handle)),
                store: reader,
                run,
            },
            recovered,
        ))
    }

    /// Whether this journal keeps a decision log.
    pub fn logs_decisions(&self) -> bool {
        self.shared.options.decision_log.enabled()
    }

    /// Campaign `uid`'s logged decisions made in `since_ms..=until_ms`
    /// with their outcomes, as applied to the store (see [`log::export`]).
    pub fn export(
        &self,
        uid: u64,
        since_ms: u64,
        until_ms: u64,
        horizon_ms: u64,
        visit: &mut dyn FnMut(log::ExportedDecision) -> bool,
    ) -> Result<(), StoreError> {
        log::export(&*self.store, uid, since_ms, until_ms, horizon_ms, visit)
    }

    /// Bytes the store takes on disk, when it can tell.
    pub fn store_size_bytes(&self) -> Option<u64> {
        self.store.size_on_disk()
    }

    /// This process's run number.
    pub fn run(&self) -> u32 {
        self.run
    }

    pub fn mode(&self) -> Mode {
        self.shared.options.mode
    }

    /// Whether `n` more changes may be appended now. Called before the
    /// engine changes anything, so a refusal changes nothing.
    pub fn admit(&self, n: usize) -> Result<(), JournalError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(JournalError::Failed(self.failure().unwrap_or_default()));
        }
        if self.shared.queue.len() + n > self.shared.capacity {
            return Err(JournalError::Full);
        }
        Ok(())
    }

    /// Appends a change; the returned ticket covers it and everything
    /// appended before it.
    pub fn append(&self, change: Change) -> Ticket {
        self.shared.queue.push(change);
        let t = self.shared.enqueued.fetch_add(1, Ordering::AcqRel) + 1;
        if self.shared.options.mode == Mode::Strict {
            self.shared.wake_writer();
        }
        t
    }

    /// A ticket covering everything appended so far.
    pub fn current(&self) -> Ticket {
        self.shared.enqueued.load(Ordering::Acquire)
    }

    /// Highest ticket known durable.
    pub fn durable(&self) -> Ticket {
        self.shared.state.lock().durable
    }

    /// Changes waiting for the writer.
    pub fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    /// Why the store failed, once it has.
    pub fn failure(&self) -> Option<String> {
        self.shared.state.lock().failure.clone()
    }

    /// Waits until `ticket` is durable (strict mode's acknowledgement).
    pub async fn wait(&self, ticket: Ticket) -> Result<(), JournalError> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.shared.check(ticket) {
                return r;
            }
            notified.await;
        }
    }

    /// Resolves once the store has failed.
    pub async fn failed(&self) {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.failed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Flushes everything appended so far and waits for it (blocking), in
    /// either mode: tests, and the end of shutdown.
    pub fn sync(&self) -> Result<(), JournalError> {
        let ticket = self.current();
        self.shared.sync_requested.store(true, Ordering::Release);
        self.shared.wake_writer();
        let mut s = self.shared.state.lock();
        loop {
            if s.durable >= ticket {
                return Ok(());
            }
            if let Some(f) = &s.failure {
                return Err(JournalError::NotDurable(f.clone()));
            }
            if self.shared.stopped.load(Ordering::Acquire) {
                return Err(JournalError::NotDurable("the writer has stopped".into()));
            }
            self.shared
                .changed
                .wait_for(&mut s, Duration::from_millis(50));
        }
    }

    /// Drains the queue, flushes, and stops the writer (graceful shutdown).
    pub fn shutdown(&self) -> Result<(), JournalError> {
        let synced = self.sync();
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake_writer();
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        synced?;
        match self.failure() {
            Some(f) => Err(JournalError::Failed(f)),
            None => Ok(()),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Without an explicit shutdown (tests, errors): stop the thread
        // after it has written what it has.
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake_writer();
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;
