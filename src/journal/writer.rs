//! The writer thread: changes → coalesced batches → the store.
//!
//! It alone writes to the store, so it alone knows the on-disk layout of
//! each campaign ([`Layout`]): where its decision and outcome blocks are,
//! which tail block is still being appended to, and (contextual campaigns)
//! a shadow of the arms' ridge statistics, replayed from the outcomes, so
//! that a row is encoded once per batch however many rewards moved it.

use super::format::{self, DecisionEntry, LinearStats, OutcomeEntry, Position, Resolution};
use super::log::{self, LogWriter, LoggedDecision, LoggedOutcome};
use super::{Change, Mode, Shared};
use crate::campaign::{CampaignSpec, PolicySpec};
use crate::error::StoreError;
use crate::policy::delay::DelayModel;
use crate::store::{Op, Store};
use crate::FastMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Changes taken off the queue for one batch at least may be (the cap is
/// twice the queue's capacity, so a drain always catches up with a queue
/// that admission keeps below its capacity, and durability is published).
const MAX_BATCH: usize = 1 << 16;
/// Strict mode: how long an idle writer sleeps before looking again.
const IDLE: Duration = Duration::from_millis(20);

/// A sealed decision block: slots `first.1 ..= last` of run `first.0`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Block {
    pub first: Position,
    pub last: u64,
}

/// The block still being appended to.
#[derive(Debug, Default)]
struct Tail {
    first: Position,
    next: u64,
    bytes: Vec<u8>,
    dirty: bool,
}

/// A sealed outcome block and the latest decision it refers to.
#[derive(Debug, Clone, Copy)]
pub(super) struct OutcomeBlock {
    pub run: u32,
    pub first_seq: u64,
    pub max_ref: Position,
}

#[derive(Debug, Default)]
struct OutcomeTail {
    first_seq: u64,
    bytes: Vec<u8>,
    max_ref: Position,
    dirty: bool,
}

/// One campaign's on-disk layout, as the writer knows it.
#[derive(Debug, Default)]
pub(super) struct Layout {
    pub spec_chunks: u16,
    pub blocks: VecDeque<Block>,
    tail: Option<Tail>,
    pub outcome_blocks: VecDeque<OutcomeBlock>,
    outcome_tail: Option<OutcomeTail>,
    /// Sequence number of the next outcome of this run.
    next_seq: u64,
    /// Contextual campaigns: ridge statistics per arm, and which changed.
    pub linear: Vec<LinearStats>,
    linear_dirty: Vec<bool>,
    pub lambda: f64,
    /// A shadow of the campaign's delay distribution, replayed from rewards.
    pub delay: Option<DelayModel>,
    delay_dirty: bool,
}

impl Layout {
    /// Widens the shadow ridge statistics to the spec's arms.
    pub fn fit_spec(&mut self, spec: &CampaignSpec) {
        if self.delay.is_none() {
            self.delay = Some(DelayModel::new(
                u64::from(spec.reward_timeout_seconds) * 1000,
            ));
        }
        if let PolicySpec::LinUcb {
            lambda, features, ..
        }
        | PolicySpec::LinTs {
            lambda, features, ..
        } = &spec.policy
        {
            self.lambda = *lambda;
            let d = features.len() + 1;
            while self.linear.len() < spec.arms.len() {
                let mut a = vec![0.0; d * d];
                for i in 0..d {
                    a[i * d + i] = *lambda;
                }
                self.linear.push(LinearStats {
                    a,
                    b: vec![0.0; d],
                    pulls: 0,
                    reward_sum: 0.0,
                    reward_sq_sum: 0.0,
                });
            }
            self.linear_dirty.resize(self.linear.len(), false);
        }
    }
}

/// The writer's state between batches.
#[derive(Debug)]
pub(super) struct Writer {
    layouts: FastMap<u64, Layout>,
    run: u32,
    next_uid: u64,
    /// Coalesced writes of the batch being built, in key order.
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    prefix_deletes: Vec<Vec<u8>>,
    touched: Vec<u64>,
    meta_dirty: bool,
    /// The decision log, written in the same batches.
    log: LogWriter,
}

impl Writer {
    pub fn new(layouts: FastMap<u64, Layout>, run: u32, next_uid: u64, log: LogWriter) -> Self {
        Writer {
            layouts,
            run,
            next_uid,
            ops: BTreeMap::new(),
            prefix_deletes: Vec::new(),
            touched: Vec::new(),
            meta_dirty: false,
            log,
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        debug_assert!(value.len() <= format::MAX_VALUE_BYTES);
        self.ops.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.ops.insert(key, None);
    }

    fn touch(&mut self, uid: u64) {
        if self.touched.last() != Some(&uid) {
            self.touched.push(uid);
        }
    }

    /// Adds one change to the batch being built.
    pub fn add(&mut self, change: Change) {
        match change {
            Change::Campaign { uid, spec } => {
                let bytes = format::encode_spec(&spec);
                let layout = self.layouts.entry(uid).or_default();
                layout.fit_spec(&spec);
                let before = layout.spec_chunks;
                let mut n = 0u16;
                let mut writes = Vec::new();
                for chunk in format::chunks(&bytes) {
                    writes.push((format::spec_key(uid, n), chunk.to_vec()));
                    n += 1;
                }
                layout.spec_chunks = n;
                for (k, v) in writes {
                    self.put(k, v);
                }
                for stale in n..before {
                    self.delete(format::spec_key(uid, stale));
                }
                if uid >= self.next_uid {
                    self.next_uid = uid.saturating_add(1);
                    self.meta_dirty = true;
                }
            }
            Change::Deleted { uid } => {
                self.layouts.remove(&uid);
                let prefix = format::campaign_prefix(uid);
                let doomed: Vec<Vec<u8>> = self
                    .ops
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    self.ops.remove(&k);
                }
                self.touched.retain(|&u| u != uid);
                self.prefix_deletes.push(prefix);
                self.log.deleted(uid);
                self.prefix_deletes.push(log::campaign_prefix(uid));
            }
            Change::Segment { uid, segment, name } => {
                self.put(format::segment_key(uid, segment), name.as_bytes().to_vec());
            }
            Change::Decision { uid, at, entry } => {
                if self.layouts.contains_key(&uid) {
                    self.log.decision(
                        uid,
                        &LoggedDecision {
                            at,
                            created_ms: entry.created_ms,
                            segment: entry.segment,
                            arm: entry.arm,
                            propensity: entry.propensity,
                            probs: entry.probs.clone(),
                            // Without the intercept.
                            context: entry
                                .context
                                .as_deref()
                                .map(|x| x.get(1..).unwrap_or_default().to_vec())
                                .unwrap_or_default(),
                            holdout: entry.holdout,
                            slot: entry.slot,
                        },
                    );
                }
                self.decision(uid, at, &entry)
            }
            Change::Outcome {
                uid,
                outcome,
                segment,
                arm,
                row,
                created_ms,
                context,
            } => {
                let learned = row.is_some();
                if self.layouts.contains_key(&uid) {
                    if let Some(row) = row {
                        self.put(
                            format::row_key(uid, segment, u32::from(arm)),
                            format::encode_row(&row),
                        );
                    }
                    self.log.outcome(
                        uid,
                        &LoggedOutcome {
                            decision: outcome.decision,
                            created_ms,
                            at_ms: outcome.at_ms,
                            resolution: outcome.resolution,
                            reward: outcome.reward,
                        },
                    );
                }
                self.outcome(uid, &outcome, arm, created_ms, context.as_deref(), learned);
            }
            Change::Counters { uid, of, counters } => {
                if self.layouts.contains_key(&uid) {
                    self.put(
                        format::counters_key(uid, of),
                        format::encode_counters(&counters),
                    );
                }
            }
            Change::Forgotten { uid, below } => self.forget(uid, below),
        }
    }

    fn decision(&mut self, uid: u64, at: Position, entry: &DecisionEntry) {
        let Some(layout) = self.layouts.get_mut(&uid) else {
            tracing::error!(uid, "decision for a campaign the journal does not know");
            return;
        };
        let len = format::decision_len(entry);
        let fits = layout.tail.as_ref().is_some_and(|t| {
            t.first.0 == at.0 && t.next == at.1 && t.bytes.len() + len <= format::MAX_VALUE_BYTES
        });
        let mut closed = None;
        if !fits {
            if let Some(t) = layout.tail.take() {
                closed = Some(t);
            }
            layout.tail = Some(Tail {
                first: at,
                next: at.1,
                bytes: Vec::with_capacity(format::SEAL_BYTES),
                dirty: false,
            });
        }
        if let Some(t) = layout.tail.as_mut() {
            format::push_decision(&mut t.bytes, entry);
            t.next += 1;
            t.dirty = true;
        }
        if let Some(t) = closed {
            layout.blocks.push_back(Block {
                first: t.first,
                last: t.next - 1,
            });
            if t.dirty {
                self.put(format::decisions_key(uid, t.first), t.bytes);
            }
        }
        self.touch(uid);
    }

    fn outcome(
        &mut self,
        uid: u64,
        o: &OutcomeEntry,
        arm: u16,
        created_ms: u64,
        context: Option<&[f64]>,
        learned: bool,
    ) {
        let run = self.run;
        let Some(layout) = self.layouts.get_mut(&uid) else {
            tracing::error!(uid, "outcome for a campaign the journal does not know");
            return;
        };
        if let (Some(x), Some(stats), true) =
            (context, layout.linear.get_mut(usize::from(arm)), learned)
        {
            learn_linear(stats, x, o.reward);
            layout.linear_dirty[usize::from(arm)] = true;
        }
        if let (Resolution::Rewarded, Some(delay), true) =
            (o.resolution, layout.delay.as_mut(), learned)
        {
            // As `engine::state::learn`: the reward for rates, 1 per reward
            // for contextual campaigns.
            let weight = if layout.linear.is_empty() {
                o.reward
            } else {
                f64::from(u8::from(o.reward > 0.0))
            };
            if weight > 0.0 {
                delay.observe(o.at_ms.saturating_sub(created_ms), weight);
                layout.delay_dirty = true;
            }
        }
        let fits = layout
            .outcome_tail
            .as_ref()
            .is_some_and(|t| t.bytes.len() + format::OUTCOME_LEN <= format::MAX_VALUE_BYTES);
        let mut closed = None;
        if !fits {
            closed = layout.outcome_tail.take();
            layout.outcome_tail = Some(OutcomeTail {
                first_seq: layout.next_seq,
                bytes: Vec::with_capacity(format::SEAL_BYTES),
                max_ref: o.decision,
                dirty: false,
            });
        }
        if let Some(t) = layout.outcome_tail.as_mut() {
            format::push_outcome(&mut t.bytes, o);
            t.max_ref = t.max_ref.max(o.decision);
            t.dirty = true;
        }
        layout.next_seq += 1;
        if let Some(t) = closed {
            layout.outcome_blocks.push_back(OutcomeBlock {
                run,
                first_seq: t.first_seq,
                max_ref: t.max_ref,
            });
            if t.dirty {
                self.put(format::outcomes_key(uid, run, t.first_seq), t.bytes);
            }
        }
        self.touch(uid);
    }

    fn forget(&mut self, uid: u64, below: Position) {
        let run = self.run;
        let Some(layout) = self.layouts.get_mut(&uid) else {
            return;
        };
        let mut deletes = Vec::new();
        while let Some(b) = layout.blocks.front() {
            if (b.first.0, b.last) >= below {
                break;
            }
            deletes.push(format::decisions_key(uid, b.first));
            layout.blocks.pop_front();
        }
        if let Some(t) = &layout.tail {
            if t.next > 0 && (t.first.0, t.next - 1) < below && layout.blocks.is_empty() {
                deletes.push(format::decisions_key(uid, t.first));
                layout.tail = None;
            }
        }
        while let Some(b) = layout.outcome_blocks.front() {
            if b.max_ref >= below {
                break;
            }
            deletes.push(format::outcomes_key(uid, b.run, b.first_seq));
            layout.outcome_blocks.pop_front();
        }
        if let Some(t) = &layout.outcome_tail {
            if t.max_ref < below && layout.outcome_blocks.is_empty() {
                deletes.push(format::outcomes_key(uid, run, t.first_seq));
                layout.outcome_tail = None;
            }
        }
        for k in deletes {
            self.delete(k);
        }
        self.put(format::watermark_key(uid), format::encode_position(below));
    }

    /// Finishes the batch: writes the touched tails and ridge statistics
    /// and returns the store operations (empty when nothing changed).
    pub fn finish(&mut self) -> Vec<Op> {
        let run = self.run;
        for uid in std::mem::take(&mut self.touched) {
            let Some(layout) = self.layouts.get_mut(&uid) else {
                continue;
            };
            let mut puts = Vec::new();
            if let Some(t) = layout.tail.as_mut() {
                if t.dirty {
                    puts.push((format::decisions_key(uid, t.first), t.bytes.clone()));
                    t.dirty = false;
                }
                if t.bytes.len() >= format::SEAL_BYTES {
                    layout.blocks.push_back(Block {
                        first: t.first,
                        last: t.next - 1,
                    });
                    layout.tail = None;
                }
            }
            if let Some(t) = layout.outcome_tail.as_mut() {
                if t.dirty {
                    puts.push((format::outcomes_key(uid, run, t.first_seq), t.bytes.clone()));
                    t.dirty = false;
                }
                if t.bytes.len() >= format::SEAL_BYTES {
                    layout.outcome_blocks.push_back(OutcomeBlock {
                        run,
                        first_seq: t.first_seq,
                        max_ref: t.max_ref,
                    });
                    layout.outcome_tail = None;
                }
            }
            if std::mem::take(&mut layout.delay_dirty) {
                if let Some(d) = &layout.delay {
                    puts.push((format::delay_key(uid), format::encode_delay(d.bins())));
                }
            }
            for (arm, dirty) in layout.linear_dirty.iter_mut().enumerate() {
                if std::mem::take(dirty) {
                    let bytes = format::encode_linear(&layout.linear[arm]);
                    for (n, chunk) in format::chunks(&bytes).enumerate() {
                        puts.push((
                            format::linear_key(uid, arm as u32, n as u16),
                            chunk.to_vec(),
                        ));
                    }
                }
            }
            for (k, v) in puts {
                self.put(k, v);
            }
        }
        let log_ops = self.log.finish();
        for (k, v) in log_ops.puts {
            self.put(k, v);
        }
        for k in log_ops.deletes {
            self.delete(k);
        }
        if std::mem::take(&mut self.meta_dirty) {
            let meta = format::Meta {
                next_uid: self.next_uid,
                run,
            };
            self.put(format::META_KEY.to_vec(), format::encode_meta(&meta));
        }
        let mut out: Vec<Op> = std::mem::take(&mut self.prefix_deletes)
            .into_iter()
            .map(Op::DeletePrefix)
            .collect();
        out.extend(
            std::mem::take(&mut self.ops)
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => Op::Put(k, v),
                    None => Op::Delete(k),
                }),
        );
        out
    }
}

/// `A += x xᵀ`, `b += r x`, exactly as `policy::linucb::LinearArm` does, so
/// the persisted statistics equal the engine's bit for bit.
fn learn_linear(s: &mut LinearStats, x: &[f64], reward: f64) {
    let d = s.b.len();
    if x.len() != d {
        return;
    }
    for ((row, bi), &xi) in s.a.chunks_exact_mut(d).zip(s.b.iter_mut()).zip(x) {
        *bi += reward * xi;
        for (aij, &xj) in row.iter_mut().zip(x) {
            *aij += xi * xj;
        }
    }
    s.pulls += 1;
    s.reward_sum += reward;
    s.reward_sq_sum += reward * reward;
}

/// Marks the journal failed if the writer thread unwinds.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.changed.notify_all();
        if std::thread::panicking() {
            tracing::error!("the journal writer panicked; the store is now read-only");
            self.0
                .publish(None, Some("the journal writer panicked".into()));
        }
    }
}

fn fail(shared: &Shared, what: &str, e: &StoreError) {
    tracing::error!(error = %e, "journal {what} failed; refusing every further change");
    shared.publish(None, Some(format!("{what} failed")));
}

/// The writer thread's loop; returns when stopped or after a failure.
pub(super) fn run(shared: Arc<Shared>, store: Arc<dyn Store>, mut w: Writer) {
    let _guard = PanicGuard(&shared);
    let opts = shared.options.clone();
    let strict = opts.mode == Mode::Strict;
    let mut last_flush = Instant::now();
    // Highest ticket whose change is applied to the store, and whether
    // anything applied is not yet flushed.
    let mut applied = 0;
    let mut unflushed = false;
    let mut changes = Vec::new();
    loop {
        let stopping = shared.stopping.load(Ordering::Acquire);
        let sync = shared.sync_requested.swap(false, Ordering::AcqRel);
        if !stopping && !sync {
            if strict {
                // Idle only when every ticket handed out is published: a
                // change popped by the last drain may carry a ticket taken
                // after that drain read the counter.
                let idle = shared.queue.is_empty()
                    && shared.enqueued.load(Ordering::Acquire) <= applied
                    && !unflushed;
                if idle {
                    std::thread::park_timeout(IDLE);
                    continue;
                }
            } else {
                std::thread::park_timeout(opts.batch_interval);
            }
        }
        let ticket = shared.enqueued.load(Ordering::Acquire);
        changes.clear();
        let max_batch = opts.capacity.saturating_mul(2).max(MAX_BATCH);
        while changes.len() < max_batch {
            match shared.queue.pop() {
                Some(c) => changes.push(c),
                None => break,
            }
        }
        let complete = shared.queue.is_empty() || changes.len() < max_batch;
        if !changes.is_empty() {
            for c in changes.drain(..) {
                w.add(c);
            }
            let ops = w.finish();
            if !ops.is_empty() {
                if let Err(e) = store.apply(&ops) {
                    fail(&shared, "write", &e);
                    return;
                }
                unflushed = true;
            }
        }
        if complete {
            applied = ticket;
        }
        let due = strict || sync || stopping || last_flush.elapsed() >= opts.flush_interval;
        if due {
            if unflushed {
                if let Err(e) = store.flush() {
                    fail(&shared, "flush", &e);
                    return;
                }
                unflushed = false;
                last_flush = Instant::now();
            }
            if complete {
                shared.publish(Some(applied), None);
            }
        }
        if stopping && complete && !unflushed && shared.queue.is_empty() {
            shared.publish(Some(applied), None);
            return;
        }
    }
}
