//! The decision log: every decision with the probabilities it was made
//! with, and its outcome, kept for a retention (default 7 days) within a
//! disk bound, for export and off-policy evaluation.
//!
//! The writer appends to it in the same batches as the state, so it is
//! exactly as durable; an export reads it straight from the store. It never
//! holds a caller-chosen decision id (an export names decisions by their
//! position), so it cannot carry a customer identifier the caller put there.
//!
//! | key | value |
//! |---|---|
//! | `L` uid `d` first_ms:u64 run:u32 slot:u64 | decision records, in the order made |
//! | `L` uid `o` first_ms:u64 run:u32 seq:u64 | outcome records, in the order learned |
//!
//! The `L` range lies outside the campaigns' `C` range, so start-up's scan
//! of the state never reads it. A block spans at most [`MAX_SPAN_MS`] of
//! time, so a time range is found from its keys, and a block is deleted once
//! all of it is past the retention (or, beyond the disk bound, oldest first).
//! Within a decision block, a probability vector that is the same as the
//! previous one of its segment (Thompson serves one vector to many
//! decisions) is written as a one-byte reference.

use super::format::{self, Position, Reader, Resolution};
use crate::error::StoreError;
use crate::store::Store;
use crate::FastMap;
use std::collections::VecDeque;
use std::sync::Arc;

pub const LOG_TAG: u8 = b'L';
const DECISIONS: u8 = b'd';
const OUTCOMES: u8 = b'o';
/// Longest time one block spans.
pub const MAX_SPAN_MS: u64 = 3_600_000;
/// Longest probability vector kept (longer ones are left out; the chosen
/// arm's propensity is always there).
const MAX_PROBS: usize = 256;

mod codec;
use codec::{decode_decisions, decode_outcomes, Encoder};

/// How much of the log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Records older than this (behind the newest) are deleted; 0 turns the
    /// log off.
    pub retention_ms: u64,
    /// Beyond this many bytes the oldest blocks are deleted.
    pub max_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            retention_ms: 7 * 24 * 3_600_000,
            max_bytes: 1 << 30,
        }
    }
}

impl LogOptions {
    /// No decision log.
    pub const OFF: LogOptions = LogOptions {
        retention_ms: 0,
        max_bytes: 0,
    };

    pub fn enabled(&self) -> bool {
        self.retention_ms > 0 && self.max_bytes > 0
    }
}

pub fn campaign_prefix(uid: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(LOG_TAG);
    k.extend_from_slice(&uid.to_be_bytes());
    k
}

fn block_key(uid: u64, kind: u8, first_ms: u64, run: u32, n: u64) -> Vec<u8> {
    let mut k = campaign_prefix(uid);
    k.push(kind);
    k.extend_from_slice(&first_ms.to_be_bytes());
    k.extend_from_slice(&run.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The first key of a campaign's `kind` blocks at or after `ms`.
fn range_start(uid: u64, kind: u8, ms: u64) -> Vec<u8> {
    let mut k = campaign_prefix(uid);
    k.push(kind);
    k.extend_from_slice(&ms.to_be_bytes());
    k
}

struct LogKey {
    uid: u64,

    first_ms: u64,
}

fn decode_key(key: &[u8]) -> Result<LogKey, StoreError> {
    let mut r = Reader::new(key, key);
    if r.u8()? != LOG_TAG {
        return Err(format::corrupt(key, "not a decision log key"));
    }
    let uid = r.u64()?;
    let kind = r.u8()?;
    if kind != DECISIONS && kind != OUTCOMES {
        return Err(format::corrupt(
            key,
            format!("unknown log block kind {kind}"),
        ));
    }
    let first_ms = r.u64()?;
    r.u32()?;
    r.u64()?;
    if !r.at_end() {
        return Err(format::corrupt(key, "trailing bytes"));
    }
    Ok(LogKey { uid, first_ms })
}

/// A decision as the log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedDecision {
    pub at: Position,
    pub created_ms: u64,
    pub segment: u32,
    pub arm: u16,
    pub propensity: f64,
    /// P(chosen) for every arm by index, where the policy has it.
    pub probs: Option<Arc<[f64]>>,
    /// Context feature values in the campaign's feature order (no intercept).
    pub context: Vec<f64>,
    /// A holdout decision (chosen uniformly, not learned from).
    pub holdout: bool,
    /// Its slot in its slate (0: the first, or a single arm).
    pub slot: u8,
}

/// An outcome as the log keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedOutcome {
    pub decision: Position,
    pub created_ms: u64,
    pub at_ms: u64,
    pub resolution: Resolution,
    pub reward: f64,
}

/// A tail closed for a new one, and its bytes if they are not written yet.
type Closed = (Sealed, Option<Vec<u8>>);

#[derive(Debug)]
struct Sealed {
    key: Vec<u8>,
    first_ms: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Tail {
    key: Vec<u8>,
    first_ms: u64,
    bytes: Vec<u8>,
    dirty: bool,
    /// What the next record is written relative to.
    encoder: Encoder,
}

#[derive(Debug, Default)]
struct CampaignLog {
    /// Sealed blocks of both kinds, oldest first (by their first time).
    sealed: VecDeque<Sealed>,
    decisions: Option<Tail>,
    outcomes: Option<Tail>,
    next_seq: u64,
}

/// The writer's side of the log.
#[derive(Debug)]
pub(super) struct LogWriter {
    opts: LogOptions,
    run: u32,
    campaigns: FastMap<u64, CampaignLog>,
    /// Bytes of every block, tails included.
    total: u64,
    newest_ms: u64,
    touched: Vec<u64>,
    /// Tails closed during the batch with records not yet written.
    closed: Vec<(Vec<u8>, Vec<u8>)>,
    /// Blocks to delete with the next batch (a log turned off).
    closed_deletes: Vec<Vec<u8>>,
}

/// What [`LogWriter::finish`] wants written.
pub(super) struct LogOps {
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<Vec<u8>>,
}

impl LogWriter {
    /// The log as the store holds it (every block found is sealed: this
    /// run starts new tails).
    pub fn load(store: &dyn Store, opts: LogOptions, run: u32) -> Result<Self, StoreError> {
        let mut w = LogWriter {
            opts,
            run,
            campaigns: FastMap::default(),
            total: 0,
            newest_ms: 0,
            touched: Vec::new(),
            closed: Vec::new(),
            closed_deletes: Vec::new(),
        };
        if !opts.enabled() {
            // Turned off: what an earlier run logged goes with the first
            // batch (an operator turning the log off wants it gone).
            store.scan_range(&[LOG_TAG], Some(&[LOG_TAG + 1]), &mut |k, _| {
                w.closed_deletes.push(k.to_vec());
                Ok(())
            })?;
            return Ok(w);
        }
        let mut blocks = Vec::new();
        store.scan_range(&[LOG_TAG], Some(&[LOG_TAG + 1]), &mut |k, v| {
            let key = decode_key(k)?;
            blocks.push((key.uid, key.first_ms, k.to_vec(), v.len() as u64));
            Ok(())
        })?;
        blocks.sort_by_key(|b| (b.0, b.1));
        for (uid, first_ms, key, bytes) in blocks {
            w.total += bytes;
            w.newest_ms = w.newest_ms.max(first_ms);
            w.campaigns
                .entry(uid)
                .or_default()
                .sealed
                .push_back(Sealed {
                    key,
                    first_ms,
                    bytes,
                });
        }
        Ok(w)
    }

    fn touch(&mut self, uid: u64) {
        if self.touched.last() != Some(&uid) {
            self.touched.push(uid);
        }
    }

    /// Starts a new tail for `kind` unless the current one can take a
    /// record of up to `len` bytes at `ms`; returns the tail closed, if
    /// any, and the bytes a new tail starts with (0 when none was started).
    fn tail_for(
        c: &mut CampaignLog,
        uid: u64,
        kind: u8,
        ms: u64,
        len: usize,
        run: u32,
        n: u64,
    ) -> (Option<Closed>, u64) {
        let slot = if kind == DECISIONS {
            &mut c.decisions
        } else {
            &mut c.outcomes
        };
        let fits = slot.as_ref().is_some_and(|t| {
            t.bytes.len() + len <= format::MAX_VALUE_BYTES
                && ms < t.first_ms.saturating_add(MAX_SPAN_MS)
        });
        if fits {
            return (None, 0);
        }
        // A closed tail with records not yet written is written with the
        // batch.
        let closed = slot.take().map(|t| {
            let unwritten = t.dirty.then(|| t.bytes.clone());
            (
                Sealed {
                    key: t.key,
                    first_ms: t.first_ms,
                    bytes: t.bytes.len() as u64,
                },
                unwritten,
            )
        });
        let mut bytes = Vec::with_capacity(format::SEAL_BYTES);
        Encoder::start(&mut bytes);
        let started = bytes.len() as u64;
        *slot = Some(Tail {
            key: block_key(uid, kind, ms, run, n),
            first_ms: ms,
            bytes,
            dirty: false,
            encoder: Encoder::default(),
        });
        (closed, started)
    }

    pub fn decision(&mut self, uid: u64, d: &LoggedDecision) {
        if !self.opts.enabled() {
            return;
        }
        let run = self.run;
        let c = self.campaigns.entry(uid).or_default();
        let len = codec::decision_max(d);
        let (closed, started) = Self::tail_for(c, uid, DECISIONS, d.created_ms, len, run, d.at.1);
        if let Some((s, unwritten)) = closed {
            if let Some(bytes) = unwritten {
                self.closed.push((s.key.clone(), bytes));
            }
            c.sealed.push_back(s);
        }
        self.total += started;
        if let Some(t) = c.decisions.as_mut() {
            let before = t.bytes.len();
            t.encoder.decision(&mut t.bytes, d);
            t.dirty = true;
            self.total += (t.bytes.len() - before) as u64;
        }
        self.newest_ms = self.newest_ms.max(d.created_ms);
        self.touch(uid);
    }

    pub fn outcome(&mut self, uid: u64, o: &LoggedOutcome) {
        if !self.opts.enabled() {
            return;
        }
        let run = self.run;
        let c = self.campaigns.entry(uid).or_default();
        let seq = c.next_seq;
        let (closed, started) =
            Self::tail_for(c, uid, OUTCOMES, o.at_ms, codec::OUTCOME_MAX, run, seq);
        if let Some((s, unwritten)) = closed {
            if let Some(bytes) = unwritten {
                self.closed.push((s.key.clone(), bytes));
            }
            c.sealed.push_back(s);
        }
        self.total += started;
        c.next_seq += 1;
        if let Some(t) = c.outcomes.as_mut() {
            let before = t.bytes.len();
            t.encoder.outcome(&mut t.bytes, o);
            t.dirty = true;
            self.total += (t.bytes.len() - before) as u64;
        }
        self.newest_ms = self.newest_ms.max(o.at_ms);
        self.touch(uid);
    }

    /// A deleted campaign's log goes with it (the caller deletes the prefix).
    pub fn deleted(&mut self, uid: u64) {
        if let Some(c) = self.campaigns.remove(&uid) {
            let tails = [c.decisions, c.outcomes]
                .into_iter()
                .flatten()
                .map(|t| t.bytes.len() as u64);
            let sealed = c.sealed.iter().map(|s| s.bytes);
            self.total = self.total.saturating_sub(tails.chain(sealed).sum());
        }
        self.touched.retain(|&u| u != uid);
        let prefix = campaign_prefix(uid);
        self.closed.retain(|(k, _)| !k.starts_with(&prefix));
    }

    /// The batch's log writes: touched tails (sealed once full), and the
    /// blocks past the retention or beyond the disk bound.
    pub fn finish(&mut self) -> LogOps {
        let mut ops = LogOps {
            puts: std::mem::take(&mut self.closed),
            deletes: std::mem::take(&mut self.closed_deletes),
        };
        if !self.opts.enabled() {
            return ops;
        }
        for uid in std::mem::take(&mut self.touched) {
            let Some(c) = self.campaigns.get_mut(&uid) else {
                continue;
            };
            for slot in [&mut c.decisions, &mut c.outcomes] {
                if let Some(t) = slot.as_mut() {
                    if t.dirty {
                        ops.puts.push((t.key.clone(), t.bytes.clone()));
                        t.dirty = false;
                    }
                    if t.bytes.len() >= format::SEAL_BYTES {
                        if let Some(t) = slot.take() {
                            c.sealed.push_back(Sealed {
                                key: t.key,
                                first_ms: t.first_ms,
                                bytes: t.bytes.len() as u64,
                            });
                        }
                    }
                }
            }
            // Keep the sealed blocks ordered by time (a tail of one kind
            // can be sealed after a younger block of the other).
            if c.sealed.len() > 1 {
                let n = c.sealed.len();
                if c.sealed[n - 2].first_ms > c.sealed[n - 1].first_ms {
                    c.sealed.make_contiguous().sort_by_key(|s| s.first_ms);
                }
            }
        }
        let cutoff = self
            .newest_ms
            .saturating_sub(self.opts.retention_ms)
            .saturating_sub(MAX_SPAN_MS);
        for c in self.campaigns.values_mut() {
            // A campaign gone quiet: its tails past the retention are sealed
            // so that they go too.
            let mut moved = false;
            for slot in [&mut c.decisions, &mut c.outcomes] {
                if slot
                    .as_ref()
                    .is_some_and(|t| t.first_ms < cutoff && !t.dirty)
                {
                    if let Some(t) = slot.take() {
                        c.sealed.push_front(Sealed {
                            key: t.key,
                            first_ms: t.first_ms,
                            bytes: t.bytes.len() as u64,
                        });
                        moved = true;
                    }
                }
            }
            if moved {
                c.sealed.make_contiguous().sort_by_key(|s| s.first_ms);
            }
            while c.sealed.front().is_some_and(|s| s.first_ms < cutoff) {
                if let Some(s) = c.sealed.pop_front() {
                    self.total = self.total.saturating_sub(s.bytes);
                    ops.deletes.push(s.key);
                }
            }
        }
        while self.total > self.opts.max_bytes {
            let oldest = self
                .campaigns
                .iter()
                .filter_map(|(&uid, c)| c.sealed.front().map(|s| (s.first_ms, uid)))
                .min();
            let Some((_, uid)) = oldest else { break };
            if let Some(s) = self
                .campaigns
                .get_mut(&uid)
                .and_then(|c| c.sealed.pop_front())
            {
                self.total = self.total.saturating_sub(s.bytes);
                ops.deletes.push(s.key);
            }
        }
        ops
    }
}

/// What [`verify`] found in the decision log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSummary {
    pub blocks: u64,
    pub decisions: u64,
    pub outcomes: u64,
    pub bytes: u64,
}

/// The logged decisions of one campaign and run, by slot: (segment, arm,
/// propensity bits), and the lowest slot kept.
#[derive(Debug, Default)]
pub struct RunIndex {
    pub first_slot: u64,
    pub decisions: FastMap<u64, (u32, u16, u64)>,
}

/// Per campaign uid and run, what the log holds (see [`verify`]).
pub type LogIndex = FastMap<u64, FastMap<u32, RunIndex>>;

/// Reads every block of the decision log: each must decode, belong to a
/// campaign uid in `known` and (decision blocks) start no earlier than
/// their key says; problems go to `violations`. Returns the counts and an
/// index of the logged decisions, for checking them against the state.
pub fn verify(
    store: &dyn Store,
    known: &dyn Fn(u64) -> bool,
    violations: &mut Vec<String>,
) -> Result<(LogSummary, LogIndex), StoreError> {
    let mut s = LogSummary::default();
    let mut index = LogIndex::default();
    store.scan_range(&[LOG_TAG], Some(&[LOG_TAG + 1]), &mut |k, v| {
        s.blocks += 1;
        s.bytes += v.len() as u64;
        let key = match decode_key(k) {
            Ok(key) => key,
            Err(e) => {
                violations.push(format!("decision log: {e}"));
                return Ok(());
            }
        };
        if !known(key.uid) {
            violations.push(format!(
                "decision log block of campaign uid {}, which has no campaign record",
                key.uid
            ));
        }
        let kind = k.get(9).copied();
        let decoded = if kind == Some(DECISIONS) {
            decode_decisions(k, v).map(|ds| {
                if ds.first().is_some_and(|d| d.created_ms < key.first_ms) {
                    violations.push(format!(
                        "decision log block of campaign uid {} starts before its key's time",
                        key.uid
                    ));
                }
                s.decisions += ds.len() as u64;
                let runs = index.entry(key.uid).or_default();
                for d in ds {
                    let r = runs.entry(d.at.0).or_insert_with(|| RunIndex {
                        first_slot: u64::MAX,
                        ..RunIndex::default()
                    });
                    r.first_slot = r.first_slot.min(d.at.1);
                    r.decisions
                        .insert(d.at.1, (d.segment, d.arm, d.propensity.to_bits()));
                }
            })
        } else {
            decode_outcomes(k, v).map(|os| s.outcomes += os.len() as u64)
        };
        if let Err(e) = decoded {
            violations.push(format!("decision log: {e}"));
        }
        Ok(())
    })?;
    Ok((s, index))
}

/// A decision of an export, joined with its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedDecision {
    pub decision: LoggedDecision,
    pub outcome: Option<LoggedOutcome>,
}

/// Reads campaign `uid`'s decisions made in `since_ms..=until_ms` in the
/// order they were made, each with its outcome if one is logged, and hands
/// them to `visit` (which may stop the export by returning `false`).
/// Outcomes are held in memory only from a decision's time until its
/// outcome is due (`horizon_ms`, the reward timeout plus slack), so memory
/// stays bounded by one timeout's worth of outcomes; decisions still
/// unmatched then (pending ones, or expired late after a restart) come
/// last, with their outcome if the rest of the log has it.
pub fn export(
    store: &dyn Store,
    uid: u64,
    since_ms: u64,
    until_ms: u64,
    horizon_ms: u64,
    visit: &mut dyn FnMut(ExportedDecision) -> bool,
) -> Result<(), StoreError> {
    let start = since_ms.saturating_sub(MAX_SPAN_MS);
    let end_d = until_ms.saturating_add(1);
    let mut outcomes: FastMap<Position, LoggedOutcome> = FastMap::default();
    // Outcome blocks are read in time order up to `loaded_to` (exclusive).
    let mut loaded_to = start;
    let mut load_outcomes =
        |to_ms: u64, outcomes: &mut FastMap<Position, LoggedOutcome>| -> Result<(), StoreError> {
            if to_ms <= loaded_to {
                return Ok(());
            }
            store.scan_range(
                &range_start(uid, OUTCOMES, loaded_to),
                Some(&range_start(uid, OUTCOMES, to_ms)),
                &mut |k, v| {
                    for o in decode_outcomes(k, v)? {
                        if (since_ms..=until_ms).contains(&o.created_ms) {
                            outcomes.entry(o.decision).or_insert(o);
                        }
                    }
                    Ok(())
                },
            )?;
            loaded_to = to_ms;
            Ok(())
        };
    // Decision blocks, a window of time at a time.
    let mut from = start;
    let window = MAX_SPAN_MS;
    let mut stopped = false;
    let mut unmatched: Vec<LoggedDecision> = Vec::new();
    while from < end_d && !stopped {
        let to = from.saturating_add(window).min(end_d);
        // Skip a gap in the log at once (a range may reach far beyond it).
        let Some(next) = store.first_key(
            &range_start(uid, DECISIONS, from),
            Some(&range_start(uid, DECISIONS, end_d)),
        )?
        else {
            break;
        };
        let next_ms = decode_key(&next)?.first_ms;
        if next_ms >= to {
            from = next_ms;
            continue;
        }
        let mut blocks: Vec<Vec<LoggedDecision>> = Vec::new();
        store.scan_range(
            &range_start(uid, DECISIONS, from),
            Some(&range_start(uid, DECISIONS, to)),
            &mut |k, v| {
                blocks.push(decode_decisions(k, v)?);
                Ok(())
            },
        )?;
        // Every decision of these blocks was made before `to + span`; its
        // outcome came at most `horizon` later.
        load_outcomes(
            to.saturating_add(MAX_SPAN_MS).saturating_add(horizon_ms),
            &mut outcomes,
        )?;
        for d in blocks.into_iter().flatten() {
            if !(since_ms..=until_ms).contains(&d.created_ms) {
                continue;
            }
            match outcomes.remove(&d.at) {
                Some(o) => {
                    if !visit(ExportedDecision {
                        decision: d,
                        outcome: Some(o),
                    }) {
                        stopped = true;
                        break;
                    }
                }
                // Still pending, or resolved later than the horizon (an
                // expiry after the daemon was down): looked up at the end.
                None => unmatched.push(d),
            }
        }
        from = to;
    }
    if stopped || unmatched.is_empty() {
        return Ok(());
    }
    let earliest = unmatched.iter().map(|d| d.created_ms).min().unwrap_or(0);
    let mut late: FastMap<Position, LoggedOutcome> = FastMap::default();
    let wanted: std::collections::HashSet<Position> = unmatched.iter().map(|d| d.at).collect();
    store.scan_range(
        &range_start(uid, OUTCOMES, earliest.saturating_sub(MAX_SPAN_MS)),
        Some(&range_start(uid, OUTCOMES, u64::MAX)),
        &mut |k, v| {
            for o in decode_outcomes(k, v)? {
                if wanted.contains(&o.decision) {
                    late.entry(o.decision).or_insert(o);
                }
            }
            Ok(())
        },
    )?;
    for d in unmatched {
        let outcome = late.remove(&d.at);
        if !visit(ExportedDecision {
            decision: d,
            outcome,
        }) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
