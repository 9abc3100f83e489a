//! Start-up: the store's contents → what the engine rebuilds its state from,
//! and what the writer needs to know of the layout.
//!
//! Reads every key once, in order, and groups them by campaign. Keys under
//! a uid with no campaign record belong to nothing (a deletion's leftovers
//! from an older version, or damage): the start-up batch removes them.
//! Decisions before a campaign's watermark were forgotten and are skipped;
//! every outcome is joined to its decision.

use super::format::{self, DecisionEntry, Key, LinearStats, Meta, OutcomeEntry, Position, Row};
use super::writer::{Block, Layout, OutcomeBlock};
use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::store::{Op, Store};
use crate::FastMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything the store held, for the engine.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The run this process writes under (one more than the last).
    pub run: u32,
    pub next_uid: u64,
    pub campaigns: Vec<RecoveredCampaign>,
}

#[derive(Debug)]
pub struct RecoveredCampaign {
    pub uid: u64,
    pub spec: CampaignSpec,
    /// (number, name), by number.
    pub segments: Vec<(u32, Arc<str>)>,
    /// (segment, arm, statistics).
    pub rows: Vec<(u32, u32, Row)>,
    /// The learned delay distribution's bin counts, if any was stored.
    pub delay: Option<Vec<f64>>,
    /// (arm, ridge statistics) of a contextual campaign.
    pub linear: Vec<(u32, LinearStats)>,
    /// Budget and uplift counters.
    pub counters: Vec<(format::Counted, format::Counters)>,
    /// Decisions before this position were forgotten.
    pub watermark: Position,
    /// Decision blocks (checked, still encoded), in log order: a million
    /// decisions are decoded one block at a time, straight into the
    /// engine's log, instead of all at once.
    blocks: Vec<(Position, Vec<u8>)>,
    /// Outcomes by the decision they resolve (the first, if several).
    outcomes: FastMap<Position, OutcomeEntry>,
}

impl RecoveredCampaign {
    /// The remembered decisions in log order, each joined to its outcome.
    /// Consumes the blocks; outcomes left over afterwards name no
    /// remembered decision (see [`Self::dangling_outcomes`]).
    pub fn drain_decisions(&mut self) -> impl Iterator<Item = RecoveredDecision> + '_ {
        let watermark = self.watermark;
        let outcomes = &mut self.outcomes;
        std::mem::take(&mut self.blocks)
            .into_iter()
            .flat_map(|(first, bytes)| {
                // Checked by `assemble`; a block that fails now yields nothing.
                let entries = format::decode_decisions(b"decisions", &bytes).unwrap_or_default();
                entries
                    .into_iter()
                    .enumerate()
                    .map(move |(i, entry)| ((first.0, first.1.saturating_add(i as u64)), entry))
            })
            .filter(move |(at, _)| *at >= watermark)
            .map(move |(at, entry)| RecoveredDecision {
                at,
                outcome: outcomes.remove(&at),
                entry,
            })
    }

    /// After [`Self::drain_decisions`]: outcomes naming no remembered
    /// decision (only possible for damaged data).
    pub fn dangling_outcomes(&self) -> usize {
        self.outcomes
            .keys()
            .filter(|at| **at >= self.watermark)
            .count()
    }
}

#[derive(Debug)]
pub struct RecoveredDecision {
    pub at: Position,
    pub entry: DecisionEntry,
    pub outcome: Option<OutcomeEntry>,
}

/// One campaign's keys, decoded but not yet joined.
#[derive(Debug, Default)]
pub(super) struct RawCampaign {
    pub spec_chunks: BTreeMap<u16, Vec<u8>>,
    pub segments: Vec<(u32, Arc<str>)>,
    pub rows: Vec<(u32, u32, Row)>,
    pub delay: Option<Vec<f64>>,
    pub counters: Vec<(format::Counted, format::Counters)>,
    pub linear_chunks: BTreeMap<(u32, u16), Vec<u8>>,
    pub decision_blocks: Vec<(Position, Vec<u8>)>,
    pub outcome_blocks: Vec<(u32, u64, Vec<OutcomeEntry>)>,
    pub watermark: Position,
}

/// The whole store, decoded.
#[derive(Debug, Default)]
pub(super) struct Raw {
    pub version: Option<u32>,
    pub meta: Option<Meta>,
    pub campaigns: BTreeMap<u64, RawCampaign>,
    /// Keys of another format (an older version's).
    pub foreign_keys: usize,
}

/// Decodes every key of the store but the decision log's (its own range,
/// read only by exports).
pub(super) fn read(store: &dyn Store) -> Result<Raw, StoreError> {
    let mut raw = Raw::default();
    let mut visit = |k: &[u8], v: &[u8]| -> Result<(), StoreError> {
        let Some(key) = format::decode_key(k)? else {
            raw.foreign_keys += 1;
            return Ok(());
        };
        let c = key.uid().map(|uid| raw.campaigns.entry(uid).or_default());
        match (key, c) {
            (Key::Version, _) => raw.version = Some(format::decode_version(k, v)?),
            (Key::Meta, _) => raw.meta = Some(format::decode_meta(k, v)?),
            (Key::Spec { chunk, .. }, Some(c)) => {
                c.spec_chunks.insert(chunk, v.to_vec());
            }
            (Key::Segment { segment, .. }, Some(c)) => {
                let name = std::str::from_utf8(v).map_err(|e| format::corrupt(k, e))?;
                c.segments.push((segment, Arc::from(name)));
            }
            (Key::Row { segment, arm, .. }, Some(c)) => {
                c.rows.push((segment, arm, format::decode_row(k, v)?))
            }
            (Key::Linear { arm, chunk, .. }, Some(c)) => {
                c.linear_chunks.insert((arm, chunk), v.to_vec());
            }
            (Key::Decisions { first, .. }, Some(c)) => {
                c.decision_blocks.push((first, v.to_vec()));
            }
            (Key::Outcomes { run, first_seq, .. }, Some(c)) => {
                c.outcome_blocks
                    .push((run, first_seq, format::decode_outcomes(k, v)?));
            }
            (Key::Watermark { .. }, Some(c)) => c.watermark = format::decode_position(k, v)?,
            (Key::Delay { .. }, Some(c)) => c.delay = Some(format::decode_delay(k, v)?),
            (Key::Counters { of, .. }, Some(c)) => {
                c.counters.push((of, format::decode_counters(k, of, v)?));
            }
            (_, None) => return Err(format::corrupt(k, "campaign key without a uid")),
        }
        Ok(())
    };
    let log = [super::log::LOG_TAG];
    store.scan_range(&[], Some(&log), &mut visit)?;
    store.scan_range(&[super::log::LOG_TAG + 1], None, &mut visit)?;
    Ok(raw)
}

/// Concatenates chunks 0, 1, … (they must be contiguous).
fn join_chunks<'a>(
    what: &str,
    chunks: impl Iterator<Item = (u16, &'a Vec<u8>)>,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for (expected, (n, bytes)) in chunks.enumerate() {
        if usize::from(n) != expected {
            return Err(format::corrupt(
                what.as_bytes(),
                format!("chunk {expected} missing"),
            ));
        }
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// What [`assemble`] makes of one raw campaign.
pub(super) struct Assembled {
    pub campaign: RecoveredCampaign,
    pub layout: Layout,
    /// Outcomes naming a decision that already had one (kept: the first).
    pub duplicate_outcomes: Vec<Position>,
}

/// Joins one campaign's keys; `None` if it has no campaign record.
pub(super) fn assemble(uid: u64, raw: RawCampaign) -> Result<Option<Assembled>, StoreError> {
    if raw.spec_chunks.is_empty() {
        return Ok(None);
    }
    let label = format!("campaign uid {uid}");
    let spec_bytes = join_chunks(&label, raw.spec_chunks.iter().map(|(n, b)| (*n, b)))?;
    let spec = format::decode_spec(label.as_bytes(), &spec_bytes)?;
    spec.validate()
        .map_err(|e| format::corrupt(label.as_bytes(), format!("invalid campaign: {e}")))?;
    let mut layout = Layout::default();
    layout.spec_chunks = raw.spec_chunks.len() as u16;
    if let Some(bins) = &raw.delay {
        layout.delay = Some(crate::policy::delay::DelayModel::from_bins(
            u64::from(spec.reward_timeout_seconds) * 1000,
            bins.clone(),
        ));
    }
    layout.fit_spec(&spec);
    let mut linear = Vec::new();
    let mut arms: Vec<u32> = raw.linear_chunks.keys().map(|(a, _)| *a).collect();
    arms.dedup();
    for arm in arms {
        let bytes = join_chunks(
            &label,
            raw.linear_chunks
                .range((arm, 0)..=(arm, u16::MAX))
                .map(|((_, n), b)| (*n, b)),
        )?;
        let stats = format::decode_linear(label.as_bytes(), &bytes)?;
        // Statistics the engine cannot use (A not invertible) start afresh
        // on both sides, so the engine and the writer never disagree.
        let usable = crate::policy::linucb::LinearArm::from_parts(
            stats.a.clone(),
            stats.b.clone(),
            stats.pulls,
            stats.reward_sum,
            stats.reward_sq_sum,
        )
        .is_ok();
        if let Some(slot) = layout.linear.get_mut(arm as usize).filter(|_| usable) {
            if slot.b.len() == stats.b.len() {
                *slot = stats.clone();
                linear.push((arm, stats));
            }
        }
    }
    let mut blocks = Vec::with_capacity(raw.decision_blocks.len());
    for (first, bytes) in raw.decision_blocks {
        let key = format::decisions_key(uid, first);
        let n = format::decode_decisions(&key, &bytes)?.len() as u64;
        if n == 0 {
            continue;
        }
        let last = first
            .1
            .checked_add(n - 1)
            .ok_or_else(|| format::corrupt(&key, "slots overflow"))?;
        layout.blocks.push_back(Block { first, last });
        blocks.push((first, bytes));
    }
    let mut outcomes: FastMap<Position, OutcomeEntry> = FastMap::default();
    let mut duplicate_outcomes = Vec::new();
    for (run, first_seq, entries) in raw.outcome_blocks {
        let max_ref = entries.iter().map(|o| o.decision).max().unwrap_or_default();
        layout.outcome_blocks.push_back(OutcomeBlock {
            run,
            first_seq,
            max_ref,
        });
        for o in entries {
            if o.decision < raw.watermark {
                continue;
            }
            match outcomes.entry(o.decision) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    duplicate_outcomes.push(o.decision)
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(o);
                }
            }
        }
    }
    let mut segments = raw.segments;
    segments.sort_by_key(|(n, _)| *n);
    Ok(Some(Assembled {
        campaign: RecoveredCampaign {
            uid,
            spec,
            segments,
            rows: raw.rows,
            delay: raw.delay.clone(),
            linear,
            counters: raw.counters,
            watermark: raw.watermark,
            blocks,
            outcomes,
        },
        layout,
        duplicate_outcomes,
    }))
}

/// What start-up makes of a store: what the engine gets, the writer's
/// layouts, and the start-up batch (version, the new run, orphans removed).
pub(super) type Opened = (Recovered, FastMap<u64, Layout>, Vec<Op>);

/// Reads a store of the current format (see [`Opened`]).
pub(super) fn recover(store: &dyn Store) -> Result<Opened, StoreError> {
    let raw = read(store)?;
    if let Some(v) = raw.version.filter(|&v| v > format::FORMAT_VERSION) {
        return Err(format::corrupt(
            format::VERSION_KEY,
            format!(
                "the data directory has format {v}, written by a newer banditd (this one reads up to {})",
                format::FORMAT_VERSION
            ),
        ));
    }
    if raw.foreign_keys > 0 {
        return Err(format::corrupt(
            b"?",
            format!("{} keys of an unknown format", raw.foreign_keys),
        ));
    }
    let meta = raw.meta.unwrap_or_default();
    let mut recovered = Recovered {
        run: meta.run.wrapping_add(1).max(1),
        next_uid: meta.next_uid.max(1),
        campaigns: Vec::new(),
    };
    let mut layouts = FastMap::default();
    let mut startup = vec![Op::Put(
        format::VERSION_KEY.to_vec(),
        format::encode_version(),
    )];
    for (uid, c) in raw.campaigns {
        match assemble(uid, c)? {
            Some(a) => {
                for at in &a.duplicate_outcomes {
                    tracing::error!(
                        uid,
                        run = at.0,
                        slot = at.1,
                        "a decision has two outcomes; the first is kept"
                    );
                }
                recovered.next_uid = recovered.next_uid.max(uid.saturating_add(1));
                layouts.insert(uid, a.layout);
                recovered.campaigns.push(a.campaign);
            }
            None => {
                tracing::warn!(uid, "removing the rows of a campaign that no longer exists");
                startup.push(Op::DeletePrefix(format::campaign_prefix(uid)));
            }
        }
    }
    startup.push(Op::Put(
        format::META_KEY.to_vec(),
        format::encode_meta(&Meta {
            next_uid: recovered.next_uid,
            run: recovered.run,
        }),
    ));
    Ok((recovered, layouts, startup))
}
