//! Migration of format 0 (banditd before the journal: one key per
//! decision, rows keyed by campaign name, outcomes as two ordered inserts
//! with a per-campaign sequence number) to the current format, in one
//! atomic batch at start-up.
//!
//! Format 0 keys (one tree, lengths one byte):
//! - `c` campaign-id → the campaign (JSON);
//! - `p` len campaign len segment arm:u32 → n u64, sum f64, through u64;
//! - `d` decision-id → status u8, arm u32, propensity f64, created u64,
//!   deadline u64, outcome_seq u64, reward f64, len campaign, len segment,
//!   n u16, context f64×n;
//! - `l` len campaign arm:u32 → d u16, updates u32, pulls u64, sum f64,
//!   through u64, A d², b d, A⁻¹ d².
//!
//! Format 0 could stop between an outcome's decision write and its row's;
//! its start-up folded such a decision (sequence number above the row's
//! `through`) into the row. The migration does the same, once. Decisions
//! keep their ids (as caller-chosen ids in run 0, in deadline order) so
//! rewards for them still land; the campaign's watermark records that the
//! rows hold history older than the decisions kept.

use super::format::{self, DecisionEntry, LinearStats, Meta, OutcomeEntry, Position, Resolution};
use super::recover;
use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::policy::thompson::ArmCounts;
use crate::store::{Op, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

struct V0Decision {
    id: String,
    campaign: String,
    segment: String,
    arm: u32,
    propensity: f64,
    created_ms: u64,
    deadline_ms: u64,
    /// 0 pending, 1 rewarded, 2 expired.
    status: u8,
    outcome_seq: u64,
    reward: f64,
    context: Vec<f64>,
}

struct V0Linear {
    a: Vec<f64>,
    b: Vec<f64>,
    pulls: u64,
    reward_sum: f64,
    through: u64,
}

#[derive(Default)]
struct V0 {
    keys: Vec<Vec<u8>>,
    campaigns: BTreeMap<String, CampaignSpec>,
    /// (campaign, segment, arm) → (counts, through).
    rows: BTreeMap<(String, String, u32), (ArmCounts, u64)>,
    linear: BTreeMap<(String, u32), V0Linear>,
    decisions: Vec<V0Decision>,
}

fn read_str(r: &mut format::Reader<'_>, key: &[u8]) -> Result<String, StoreError> {
    let n = r.u8()? as usize;
    let b = r.bytes(n)?;
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|e| format::corrupt(key, e))
}

fn decode(k: &[u8], v: &[u8], out: &mut V0) -> Result<(), StoreError> {
    out.keys.push(k.to_vec());
    match k.first() {
        Some(b'c') => {
            let spec: CampaignSpec = format::decode_spec(k, v)?;
            out.campaigns.insert(spec.id.clone(), spec);
        }
        Some(b'p') => {
            let mut kr = format::Reader::new(k, &k[1..]);
            let campaign = read_str(&mut kr, k)?;
            let segment = read_str(&mut kr, k)?;
            let arm = kr.u32()?;
            kr.end()?;
            let mut r = format::Reader::new(k, v);
            let counts = ArmCounts {
                n: r.u64()?,
                sum: r.f64()?,
            };
            let through = r.u64()?;
            r.end()?;
            out.rows.insert((campaign, segment, arm), (counts, through));
        }
        Some(b'd') => {
            let id = std::str::from_utf8(&k[1..])
                .map_err(|e| format::corrupt(k, e))?
                .to_owned();
            let mut r = format::Reader::new(k, v);
            let status = r.u8()?;
            let arm = r.u32()?;
            let propensity = r.f64()?;
            let created_ms = r.u64()?;
            let deadline_ms = r.u64()?;
            let outcome_seq = r.u64()?;
            let reward = r.f64()?;
            let campaign = read_str(&mut r, k)?;
            let segment = read_str(&mut r, k)?;
            let n = r.u16()? as usize;
            let context = (0..n).map(|_| r.f64()).collect::<Result<Vec<_>, _>>()?;
            r.end()?;
            if status > 2 {
                return Err(format::corrupt(
                    k,
                    format!("unknown decision status {status}"),
                ));
            }
            out.decisions.push(V0Decision {
                id,
                campaign,
                segment,
                arm,
                propensity,
                created_ms,
                deadline_ms,
                status,
                outcome_seq,
                reward,
                context,
            });
        }
        Some(b'l') => {
            let mut kr = format::Reader::new(k, &k[1..]);
            let campaign = read_str(&mut kr, k)?;
            let arm = kr.u32()?;
            let mut r = format::Reader::new(k, v);
            let d = r.u16()? as usize;
            let _updates = r.u32()?;
            let pulls = r.u64()?;
            let reward_sum = r.f64()?;
            let through = r.u64()?;
            let a = (0..d * d).map(|_| r.f64()).collect::<Result<Vec<_>, _>>()?;
            let b = (0..d).map(|_| r.f64()).collect::<Result<Vec<_>, _>>()?;
            let _a_inv = r.bytes(8 * d * d)?;
            r.end()?;
            out.linear.insert(
                (campaign, arm),
                V0Linear {
                    a,
                    b,
                    pulls,
                    reward_sum,
                    through,
                },
            );
        }
        _ => return Err(format::corrupt(k, "unknown key of format 0")),
    }
    Ok(())
}

/// Migrates a format-0 store in place; does nothing to an empty or current one.
pub(super) fn migrate_if_needed(store: &dyn Store) -> Result<(), StoreError> {
    let raw = recover::read(store)?;
    if raw.foreign_keys == 0 {
        return Ok(());
    }
    if raw.version.is_some() || raw.meta.is_some() || !raw.campaigns.is_empty() {
        return Err(format::corrupt(
            b"?",
            "the data directory mixes keys of format 0 and of the current format",
        ));
    }
    let mut v0 = V0::default();
    store.scan(&mut |k, v| decode(k, v, &mut v0))?;
    let ops = convert(v0);
    store.apply(&ops)?;
    store.flush()?;
    tracing::info!(
        "data directory migrated from format 0 to format {}",
        format::FORMAT_VERSION
    );
    Ok(())
}

fn convert(v0: V0) -> Vec<Op> {
    let mut ops: Vec<Op> = v0.keys.iter().map(|k| Op::Delete(k.clone())).collect();
    let mut decisions = v0.decisions;
    decisions.sort_by_key(|d| d.deadline_ms);
    let mut rows = v0.rows;
    let mut linear = v0.linear;
    // Fold interrupted outcome writes into their rows, exactly once.
    for d in decisions.iter().filter(|d| d.status != 0) {
        let key = (d.campaign.clone(), d.segment.clone(), d.arm);
        let (counts, through) = rows.entry(key).or_default();
        if d.outcome_seq > *through {
            counts.add(d.reward);
            *through = d.outcome_seq;
        }
        if let Some(l) = linear.get_mut(&(d.campaign.clone(), d.arm)) {
            if d.outcome_seq > l.through && d.context.len() == l.b.len() {
                let n = l.b.len();
                for i in 0..n {
                    l.b[i] += d.reward * d.context[i];
                    for j in 0..n {
                        l.a[i * n + j] += d.context[i] * d.context[j];
                    }
                }
                l.pulls += 1;
                l.reward_sum += d.reward;
                l.through = d.outcome_seq;
            }
        }
    }
    let mut next_uid = 1u64;
    for (id, spec) in &v0.campaigns {
        let uid = next_uid;
        next_uid += 1;
        let bytes = format::encode_spec(spec);
        for (n, chunk) in format::chunks(&bytes).enumerate() {
            ops.push(Op::Put(format::spec_key(uid, n as u16), chunk.to_vec()));
        }
        let mut segments: BTreeMap<String, u32> = BTreeMap::new();
        let names = rows
            .keys()
            .filter(|(c, _, _)| c == id)
            .map(|(_, s, _)| s.clone())
            .chain(
                decisions
                    .iter()
                    .filter(|d| &d.campaign == id)
                    .map(|d| d.segment.clone()),
            );
        for name in names {
            let n = segments.len() as u32;
            segments.entry(name).or_insert(n);
        }
        for (name, &n) in &segments {
            ops.push(Op::Put(
                format::segment_key(uid, n),
                name.as_bytes().to_vec(),
            ));
        }
        for ((_, segment, arm), (counts, _)) in rows.iter().filter(|((c, _, _), _)| c == id) {
            if (*arm as usize) < spec.arms.len() {
                ops.push(Op::Put(
                    format::row_key(uid, segments[segment], *arm),
                    format::encode_row(&format::Row {
                        counts: *counts,
                        decayed: None,
                    }),
                ));
            }
        }
        for ((_, arm), l) in linear.range((id.clone(), 0)..=(id.clone(), u32::MAX)) {
            let stats = LinearStats {
                a: l.a.clone(),
                b: l.b.clone(),
                pulls: l.pulls,
                reward_sum: l.reward_sum,
                // Format 0 kept no Σr²: exact for rewards of 0 and 1, the
                // common case; the residual noise is approximate otherwise.
                reward_sq_sum: l.reward_sum.max(0.0),
            };
            let bytes = format::encode_linear(&stats);
            for (n, chunk) in format::chunks(&bytes).enumerate() {
                ops.push(Op::Put(
                    format::linear_key(uid, *arm, n as u16),
                    chunk.to_vec(),
                ));
            }
        }
        let timeout_ms = u64::from(spec.reward_timeout_seconds) * 1000;
        let mine: Vec<&V0Decision> = decisions
            .iter()
            .filter(|d| &d.campaign == id && (d.arm as usize) < spec.arms.len())
            .collect();
        let mut block = Vec::new();
        let mut first: Position = (0, 0);
        let mut outcomes = Vec::new();
        let mut seq = 0u64;
        // Slots start at 1 and the watermark says everything before was
        // forgotten: the rows count history the decisions no longer show.
        ops.push(Op::Put(
            format::watermark_key(uid),
            format::encode_position((0, 1)),
        ));
        for (i, d) in mine.iter().enumerate() {
            let slot = i as u64 + 1;
            let entry = DecisionEntry {
                created_ms: d.deadline_ms.saturating_sub(timeout_ms),
                propensity: d.propensity,
                segment: segments[&d.segment],
                arm: d.arm as u16,
                caller_id: Some(Arc::from(d.id.as_str())),
                context: (!d.context.is_empty()).then(|| Arc::from(d.context.clone())),
                probs: None,
                holdout: false,
                slot: 0,
            };
            if block.len() + format::decision_len(&entry) > format::MAX_VALUE_BYTES {
                ops.push(Op::Put(
                    format::decisions_key(uid, first),
                    std::mem::take(&mut block),
                ));
            }
            if block.is_empty() {
                first = (0, slot);
            }
            format::push_decision(&mut block, &entry);
            if d.status != 0 {
                if outcomes.len() + format::OUTCOME_LEN > format::MAX_VALUE_BYTES {
                    let start = seq - (outcomes.len() / format::OUTCOME_LEN) as u64;
                    ops.push(Op::Put(
                        format::outcomes_key(uid, 0, start),
                        std::mem::take(&mut outcomes),
                    ));
                }
                format::push_outcome(
                    &mut outcomes,
                    &OutcomeEntry {
                        decision: (0, slot),
                        resolution: if d.status == 1 {
                            Resolution::Rewarded
                        } else {
                            Resolution::Expired
                        },
                        reward: d.reward,
                        at_ms: d.created_ms,
                    },
                );
                seq += 1;
            }
        }
        if !block.is_empty() {
            ops.push(Op::Put(format::decisions_key(uid, first), block));
        }
        if !outcomes.is_empty() {
            let start = seq - (outcomes.len() / format::OUTCOME_LEN) as u64;
            ops.push(Op::Put(format::outcomes_key(uid, 0, start), outcomes));
        }
    }
    ops.push(Op::Put(
        format::VERSION_KEY.to_vec(),
        format::encode_version(),
    ));
    ops.push(Op::Put(
        format::META_KEY.to_vec(),
        format::encode_meta(&Meta { next_uid, run: 0 }),
    ));
    ops
}

#[cfg(test)]
mod tests;
