//! The engine: campaigns in memory, pending decisions, and the rules.
//!
//! Both the gRPC layer and the simulator drive this type, so a simulation
//! exercises exactly the code that serves traffic. It owns:
//! - validation of every request (ids, segments, reward ranges, limits);
//! - idempotency (a retried `Choose` with the caller's decision id returns the
//!   same answer; a retried `Reward` is a no-op reported as duplicate);
//! - delayed rewards: a decision waits `reward_timeout_seconds`; then its
//!   campaign's `default_reward` is learned exactly once ([`Engine::expire_due`]);
//! - what is persisted: every state change is appended, under the
//!   campaign's lock, to the [`Journal`], which writes it behind in
//!   batches. The engine itself never does I/O; in strict durability the
//!   API waits for the journal ([`Engine::wait_durable`]) before replying.
//!
//! Files: `campaigns` (create, delete, arms), `choose`, `reward`, `expiry`
//! (timeouts and forgetting), `recovery` (state from the store at
//! start-up), `ids` (finding a decision by id), `state` (one campaign),
//! `decisions` (the decision log), `stats` (reports).
//!
//! Concurrency: the campaign maps are behind a `RwLock` taken only to look
//! a campaign up (read) or to create/delete one (write), never across
//! anything slow. Each campaign has its own mutex; caller-chosen ids live
//! in a sharded index. No lock is held across an `.await` (the engine is
//! synchronous).
//!
//! Retention: a resolved decision is remembered (to answer duplicates and
//! late rewards correctly) until its deadline plus the retention (by
//! default one more reward timeout); after that its id is unknown
//! (`NOT_FOUND`).

mod budgets;
mod campaigns;
mod choose;
mod decisions;
mod expiry;
mod export;
mod ids;
mod learning;
mod recovery;
mod replicated;
mod reward;
mod state;
mod stats;
mod vectors;

pub use decisions::DecisionStatus;
pub use export::{ExportHeader, ExportOutcome, ExportRecord};
pub use replicated::Totals;
pub use stats::{ArmReport, SegmentReport, UpliftReport};
pub use vectors::{VectorMode, VectorWork};

use crate::error::{Error, Result};
use crate::journal::{Change, Journal, JournalError, JournalOptions, Mode, Ticket};
use crate::store::Store;
use crate::FastMap;
use ids::ForeignIndex;
use parking_lot::RwLock;
use rand::Rng;
use state::CampaignCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Decisions expired or forgotten per hold of a campaign's lock.
const EXPIRY_BATCH: usize = 256;
/// Pending decisions one campaign may have unless configured otherwise.
pub const DEFAULT_MAX_PENDING_PER_CAMPAIGN: usize = 4_000_000;

/// Where the engine reads the time (wall clock in ms since the Unix epoch).
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// A clock tests and the simulator move by hand.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// How the engine is built.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Seed for every campaign's RNG (mixed with the campaign id); `None` = from the OS.
    pub seed: Option<u64>,
    pub clock: Clock,
    /// How changes are written behind (ignored by [`Engine::in_memory`]).
    pub journal: JournalOptions,
    /// A `Choose` beyond this many pending decisions of its campaign is
    /// `RESOURCE_EXHAUSTED`.
    pub max_pending_per_campaign: usize,
    /// How long a resolved decision is remembered after its deadline;
    /// `None` = one more reward timeout of its campaign.
    pub retention: Option<Duration>,
    /// Who computes Thompson vectors (see `engine::vectors`): the deciding
    /// call (default), or a background task the caller runs
    /// ([`Engine::make_wanted_vectors`]; the daemon does).
    pub vectors: VectorMode,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            seed: None,
            clock: Clock::System,
            journal: JournalOptions::default(),
            max_pending_per_campaign: DEFAULT_MAX_PENDING_PER_CAMPAIGN,
            retention: None,
            vectors: VectorMode::Inline,
        }
    }
}

/// A `Choose` request after conversion from the wire.
#[derive(Debug, Clone, Default)]
pub struct ChooseRequest {
    pub campaign_id: String,
    pub segment: String,
    pub context: Vec<(String, f64)>,
    /// Caller-chosen idempotency key.
    pub decision_id: Option<String>,
    /// Slots of the slate to fill (0 and 1: a single arm).
    pub count: usize,
}

/// The answer to a `Choose`.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Shared with the engine's own record of a caller-chosen id.
    pub decision_id: Arc<str>,
    /// Index of the arm in the campaign's arms (arms are only ever appended).
    pub arm: usize,
    pub arm_id: String,
    pub propensity: f64,
    /// A holdout decision (the campaign's `holdout_fraction`).
    pub holdout: bool,
    /// Every slot of the slate in order, the first being `arm`, `arm_id`
    /// and `propensity` (one entry for a single arm).
    pub slate: Vec<SlotChoice>,
}

/// One slot of a slate.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotChoice {
    pub arm: usize,
    pub arm_id: String,
    /// The probability this arm had of being in this slot.
    pub propensity: f64,
}

/// One campaign's figures for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignGauges {
    pub id: Arc<str>,
    pub pending: usize,
    /// Decisions rewarded since this process started.
    pub rewarded: u64,
    /// Decisions that reached their timeout (default reward) since start.
    pub expired: u64,
    /// Named segments (the campaign-wide one not counted).
    pub segments: usize,
}

/// The answer to a `Reward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardOutcome {
    Learned,
    Duplicate,
}

#[derive(Debug)]
pub struct Engine {
    /// Campaigns by id and by uid. Read-locked to look up, write-locked
    /// only to create or delete; never held while waiting for anything.
    campaigns: RwLock<Campaigns>,
    /// Decisions with caller-chosen ids.
    foreign: ForeignIndex,
    /// Where changes go; `None` for an engine that persists nothing.
    journal: Option<Journal>,
    clock: Clock,
    seed: u64,
    /// This process's run (part of every server-generated decision id).
    run: u32,
    max_pending: usize,
    retention_ms: Option<u64>,
    /// Who computes Thompson vectors, and the campaigns waiting for some.
    vector_mode: VectorMode,
    vectors: vectors::VectorQueue,
}

/// The campaigns, by id and by uid.
#[derive(Debug, Default)]
struct Campaigns {
    by_id: FastMap<Arc<str>, Arc<CampaignCell>>,
    by_uid: FastMap<u64, Arc<CampaignCell>>,
    next_uid: u64,
}

impl Campaigns {
    fn insert(&mut self, cell: Arc<CampaignCell>) {
        self.next_uid = self.next_uid.max(cell.uid.saturating_add(1));
        self.by_uid.insert(cell.uid, cell.clone());
        self.by_id.insert(cell.id.clone(), cell);
    }

    fn remove(&mut self, id: &str) -> Option<Arc<CampaignCell>> {
        let cell = self.by_id.remove(id)?;
        self.by_uid.remove(&cell.uid);
        Some(cell)
    }
}

impl From<JournalError> for Error {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Full => Error::ResourceExhausted(
                "the write queue is full (the store is slower than the traffic); retry later"
                    .into(),
            ),
            JournalError::Failed(why) => Error::Unavailable(why),
            JournalError::NotDurable(why) => Error::NotDurable(why),
        }
    }
}

impl Engine {
    /// Builds an engine over `store`: recovers what it holds (migrating an
    /// older format), makes the new run durable, and starts the journal.
    pub fn open(store: Arc<dyn Store>, options: EngineOptions) -> Result<Self> {
        let (journal, recovered) = Journal::open(store, options.journal.clone())?;
        let mut engine = Self::new(&options, recovered.run);
        engine.journal = Some(journal);
        engine.restore(recovered);
        Ok(engine)
    }

    /// An engine that persists nothing (the simulator, benchmarks).
    pub fn in_memory(options: EngineOptions) -> Self {
        Self::new(&options, 1)
    }

    fn new(options: &EngineOptions, run: u32) -> Self {
        Engine {
            campaigns: RwLock::new(Campaigns {
                next_uid: 1,
                ..Campaigns::default()
            }),
            foreign: ForeignIndex::default(),
            journal: None,
            clock: options.clock.clone(),
            seed: options.seed.unwrap_or_else(|| rand::rng().random()),
            run,
            max_pending: options.max_pending_per_campaign,
            retention_ms: options.retention.map(|d| d.as_millis() as u64),
            vector_mode: options.vectors,
            vectors: vectors::VectorQueue::default(),
        }
    }

    fn campaign(&self, id: &str) -> Result<Arc<CampaignCell>> {
        self.campaigns
            .read()
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("campaign {id:?}")))
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Refuses a change before anything is touched when the journal cannot
    /// take `n` more changes.
    fn admit(&self, n: usize) -> Result<()> {
        match &self.journal {
            Some(j) => Ok(j.admit(n)?),
            None => Ok(()),
        }
    }

    /// Appends a change (call with the campaign's lock held).
    fn append(&self, change: impl FnOnce() -> Change) {
        if let Some(j) = &self.journal {
            j.append(change());
        }
    }

    /// In strict durability, waits until everything the engine did before
    /// this call is flushed and fdatasync'd; immediate otherwise.
    pub async fn wait_durable(&self) -> Result<()> {
        match &self.journal {
            Some(j) if j.mode() == Mode::Strict => Ok(j.wait(j.current()).await?),
            _ => Ok(()),
        }
    }

    /// Resolves once the store has failed (never for an in-memory engine).
    pub async fn store_failed(&self) {
        match &self.journal {
            Some(j) => j.failed().await,
            None => std::future::pending().await,
        }
    }

    /// Why the store failed, if it has.
    pub fn store_failure(&self) -> Option<String> {
        self.journal.as_ref().and_then(Journal::failure)
    }

    /// Writes and flushes everything so far, and waits for it (any mode).
    pub fn sync(&self) -> Result<()> {
        match &self.journal {
            Some(j) => Ok(j.sync()?),
            None => Ok(()),
        }
    }

    /// Drains the journal, flushes, and stops its writer (shutdown).
    pub fn shutdown(&self) -> Result<()> {
        match &self.journal {
            Some(j) => Ok(j.shutdown()?),
            None => Ok(()),
        }
    }

    /// (changes queued for the writer, tickets appended − tickets durable).
    pub fn write_backlog(&self) -> (usize, Ticket) {
        match &self.journal {
            Some(j) => (j.queued(), j.current().saturating_sub(j.durable())),
            None => (0, 0),
        }
    }

    /// Decisions known to the engine (pending and remembered), for metrics and tests.
    pub fn decision_count(&self) -> usize {
        let cells: Vec<Arc<CampaignCell>> = self.campaigns.read().by_id.values().cloned().collect();
        cells.iter().map(|c| c.state.lock().log.len()).sum()
    }

    /// Per campaign, what an operator watches (metrics), in id order.
    pub fn campaign_gauges(&self) -> Vec<CampaignGauges> {
        let cells: Vec<Arc<CampaignCell>> = self.campaigns.read().by_id.values().cloned().collect();
        let mut out: Vec<CampaignGauges> = cells
            .iter()
            .map(|c| {
                let st = c.state.lock();
                let (rewarded, expired) = st.log.resolved_totals();
                CampaignGauges {
                    id: c.id.clone(),
                    pending: st.log.pending(),
                    rewarded,
                    expired,
                    segments: st.segments.iter().filter(|s| s.is_named()).count(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// A digest of everything a call can change: every campaign's
    /// definition, tallies (per segment and arm: outcomes, sums, pending),
    /// contextual statistics and decisions. Equal digests mean nothing
    /// learned or decided differs (for checks such as "a refused call
    /// changed nothing"; cheap: no posterior is computed).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut cells: Vec<Arc<CampaignCell>> =
            self.campaigns.read().by_id.values().cloned().collect();
        cells.sort_by(|a, b| a.id.cmp(&b.id));
        for c in cells {
            let st = c.state.lock();
            c.id.hash(&mut h);
            format!("{:?}", st.spec).hash(&mut h);
            for seg in &st.segments {
                seg.name.hash(&mut h);
                for t in &seg.arms {
                    (t.counts.n, t.pending, t.counts.sum.to_bits()).hash(&mut h);
                }
            }
            // The learned statistics bit for bit (`a_inv` follows from them);
            // hashed as bits, not formatted: the fuzzer calls this per input.
            for arm in &st.linear {
                for x in arm.a.iter().chain(&arm.b) {
                    x.to_bits().hash(&mut h);
                }
                (
                    arm.pulls,
                    arm.reward_sum.to_bits(),
                    arm.reward_sq_sum.to_bits(),
                )
                    .hash(&mut h);
                for (bucket, p) in &arm.pending {
                    (bucket, p.count, p.weight.to_bits()).hash(&mut h);
                }
            }
            (st.log.len(), st.log.pending(), st.log.next_slot(self.run)).hash(&mut h);
        }
        h.finish()
    }

    /// Bytes the store takes on disk, when it can tell.
    pub fn store_size_bytes(&self) -> Option<u64> {
        self.journal.as_ref().and_then(Journal::store_size_bytes)
    }

    /// Pending decisions of all campaigns.
    pub fn pending_count(&self) -> usize {
        let cells: Vec<Arc<CampaignCell>> = self.campaigns.read().by_id.values().cloned().collect();
        cells.iter().map(|c| c.state.lock().log.pending()).sum()
    }
}

/// The seed of a campaign's RNG is mixed with a hash of its id.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
