//! How the decision log's records are written in a block.
//!
//! Version 2 (since issue 10's log went on by default) is compact: a block
//! value starts with [`BLOCK_V2`], and each record stores its run, slot and
//! time as deltas from the previous record of the block (zigzag varints),
//! its segment and arm as varints, its propensity only when it is not the
//! probability vector's entry for the arm, and a reward of 0 or 1 as a flag.
//! A Thompson decision whose vector repeats is 5 bytes, an outcome 8
//! (version 1: 37 and 37). Version-1 blocks (records from a fixed layout,
//! first byte the run's high byte, 0) still decode.
//!
//! Decision record: flags, [run], Δslot, Δcreated_ms, segment, arm,
//! [propensity f64], [vector: n, n × f64 — or, when it takes at most two
//! values, n, the two and a bitmap], [context: n, n × f64].
//! Outcome record: flags, [run], Δslot, Δat_ms, at_ms − created_ms,
//! [reward f64]. Every Δ is from the previous record (0 at the block's
//! start), so a block decodes on its own.

use super::{LoggedDecision, LoggedOutcome, MAX_PROBS};
use crate::error::StoreError;
use crate::journal::format::{self, Reader, Resolution};
use crate::FastMap;
use std::sync::Arc;

/// The first byte of a version-2 block. A version-1 block starts with its
/// first record's run, big-endian: 0 below run 2²⁴, and runs (one per
/// start of the daemon) never reach 0xB2 × 2²⁴.
pub(super) const BLOCK_V2: u8 = 0xB2;

const D_RUN: u8 = 1;
const D_PROBS_INLINE: u8 = 2;
const D_PROBS_REPEAT: u8 = 4;
const D_PROPENSITY: u8 = 8;
const D_CONTEXT: u8 = 16;
/// The vector takes at most two values (LinUCB, ε-greedy, uniform): n, the
/// first value, the other, and a bitmap of the entries equal to the other.
const D_PROBS_LEVELS: u8 = 32;
/// A holdout decision (chosen uniformly, not learned from).
const D_HOLDOUT: u8 = 64;
/// A slot of a slate other than the first: its number follows the arm.
const D_SLOT: u8 = 128;

const O_RUN: u8 = 1;
const O_EXPIRED: u8 = 2;
const O_REWARD_0: u8 = 4;
const O_REWARD_1: u8 = 8;

/// The most bytes one outcome record takes.
pub(super) const OUTCOME_MAX: usize = 1 + 5 + 3 * 10 + 8;

/// The most bytes `d`'s record takes.
pub(super) fn decision_max(d: &LoggedDecision) -> usize {
    1 + 5
        + 2 * 10
        + 5
        + 3
        + 8
        + d.probs.as_ref().map_or(0, |p| 3 + 8 * p.len())
        + 3
        + 8 * d.context.len()
}

fn put_varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push((x as u8) | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

fn varint(r: &mut Reader<'_>, key: &[u8]) -> Result<u64, StoreError> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let b = r.u8()?;
        if shift == 63 && b > 1 {
            return Err(format::corrupt(key, "a varint beyond 64 bits"));
        }
        x |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(x);
        }
    }
    Err(format::corrupt(key, "a varint longer than 10 bytes"))
}

/// The signed difference `to − from` (wrapping) as a zigzag varint.
fn put_delta(v: &mut Vec<u8>, from: u64, to: u64) {
    let d = to.wrapping_sub(from) as i64;
    put_varint(v, ((d << 1) ^ (d >> 63)) as u64);
}

fn delta(r: &mut Reader<'_>, key: &[u8], from: u64) -> Result<u64, StoreError> {
    let z = varint(r, key)?;
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    Ok(from.wrapping_add(d as u64))
}

fn put_f64s(v: &mut Vec<u8>, xs: &[f64]) {
    put_varint(v, xs.len() as u64);
    for x in xs {
        v.extend_from_slice(&x.to_bits().to_be_bytes());
    }
}

fn f64s(r: &mut Reader<'_>, key: &[u8], max: usize) -> Result<Vec<f64>, StoreError> {
    let n = varint(r, key)?;
    if n > max as u64 {
        return Err(format::corrupt(key, format!("a vector of {n} values")));
    }
    (0..n).map(|_| r.f64()).collect()
}

/// What the next record of a block is written relative to.
#[derive(Debug, Default)]
pub(super) struct Encoder {
    run: u32,
    slot: u64,
    ms: u64,
    /// Decision blocks: the last vector written per segment and slot.
    last: FastMap<(u32, u8), Arc<[f64]>>,
}

impl Encoder {
    /// Decoding: reads a record's run (when `new_run`), slot and time.
    fn advance(&mut self, r: &mut Reader<'_>, key: &[u8], new_run: bool) -> Result<(), StoreError> {
        if new_run {
            self.run = u32::try_from(varint(r, key)?)
                .map_err(|_| format::corrupt(key, "a run beyond u32"))?;
        }
        self.slot = delta(r, key, self.slot)?;
        self.ms = delta(r, key, self.ms)?;
        Ok(())
    }

    /// Starts a block's value.
    pub fn start(v: &mut Vec<u8>) {
        v.push(BLOCK_V2);
    }

    pub fn decision(&mut self, v: &mut Vec<u8>, d: &LoggedDecision) {
        let mut flags = 0;
        if d.at.0 != self.run {
            flags |= D_RUN;
        }
        let probs = d.probs.as_ref().filter(|p| p.len() <= MAX_PROBS);
        let repeat = probs.is_some_and(|p| {
            self.last
                .get(&(d.segment, d.slot))
                .is_some_and(|q| Arc::ptr_eq(p, q) || **p == **q)
        });
        let levels = probs.and_then(|p| two_levels(p));
        match probs {
            Some(_) if repeat => flags |= D_PROBS_REPEAT,
            Some(_) if levels.is_some() => flags |= D_PROBS_LEVELS,
            Some(_) => flags |= D_PROBS_INLINE,
            None => {}
        }
        let implied = probs
            .and_then(|p| p.get(usize::from(d.arm)))
            .is_some_and(|q| q.to_bits() == d.propensity.to_bits());
        if !implied {
            flags |= D_PROPENSITY;
        }
        if !d.context.is_empty() {
            flags |= D_CONTEXT;
        }
        if d.holdout {
            flags |= D_HOLDOUT;
        }
        if d.slot != 0 {
            flags |= D_SLOT;
        }
        v.push(flags);
        self.put_position(v, flags & D_RUN != 0, d.at, d.created_ms);
        put_varint(v, u64::from(d.segment));
        put_varint(v, u64::from(d.arm));
        if d.slot != 0 {
            put_varint(v, u64::from(d.slot));
        }
        if flags & D_PROPENSITY != 0 {
            v.extend_from_slice(&d.propensity.to_bits().to_be_bytes());
        }
        if let (Some(p), false) = (probs, repeat) {
            match levels {
                Some((a, b)) => {
                    put_varint(v, p.len() as u64);
                    v.extend_from_slice(&a.to_be_bytes());
                    v.extend_from_slice(&b.to_be_bytes());
                    for chunk in p.chunks(8) {
                        let mut byte = 0u8;
                        for (i, q) in chunk.iter().enumerate() {
                            if q.to_bits() != a {
                                byte |= 1 << i;
                            }
                        }
                        v.push(byte);
                    }
                }
                None => put_f64s(v, p),
            }
            self.last.insert((d.segment, d.slot), p.clone());
        }
        if flags & D_CONTEXT != 0 {
            put_f64s(v, &d.context);
        }
    }

    pub fn outcome(&mut self, v: &mut Vec<u8>, o: &LoggedOutcome) {
        let mut flags = 0;
        if o.decision.0 != self.run {
            flags |= O_RUN;
        }
        if o.resolution == Resolution::Expired {
            flags |= O_EXPIRED;
        }
        if o.reward.to_bits() == 0.0f64.to_bits() {
            flags |= O_REWARD_0;
        } else if o.reward.to_bits() == 1.0f64.to_bits() {
            flags |= O_REWARD_1;
        }
        v.push(flags);
        self.put_position(v, flags & O_RUN != 0, o.decision, o.at_ms);
        put_delta(v, o.created_ms, o.at_ms);
        if flags & (O_REWARD_0 | O_REWARD_1) == 0 {
            v.extend_from_slice(&o.reward.to_bits().to_be_bytes());
        }
    }

    /// Encoding: a record's run (when `new_run`), slot and time, each
    /// relative to the previous record's; the mirror of `advance`.
    fn put_position(&mut self, v: &mut Vec<u8>, new_run: bool, at: (u32, u64), ms: u64) {
        if new_run {
            put_varint(v, u64::from(at.0));
        }
        put_delta(v, self.slot, at.1);
        put_delta(v, self.ms, ms);
        (self.run, self.slot, self.ms) = (at.0, at.1, ms);
    }
}

/// The bit patterns of a vector of at least 3 entries that takes at most
/// two values: the first entry's and the other (the same if only one).
fn two_levels(p: &[f64]) -> Option<(u64, u64)> {
    let a = p.first()?.to_bits();
    let mut b = None;
    for q in p {
        let q = q.to_bits();
        if q != a && b.get_or_insert(q) != &q {
            return None;
        }
    }
    (p.len() >= 3).then_some((a, b.unwrap_or(a)))
}

/// A decision block's records, in the order written.
pub(super) fn decode_decisions(
    key: &[u8],
    value: &[u8],
) -> Result<Vec<LoggedDecision>, StoreError> {
    let Some((&BLOCK_V2, body)) = value.split_first() else {
        return decode_decisions_v1(key, value);
    };
    let mut r = Reader::new(key, body);
    let mut out = Vec::new();
    let mut e = Encoder::default();
    while !r.at_end() {
        let flags = r.u8()?;
        let vector = flags & (D_PROBS_INLINE | D_PROBS_REPEAT | D_PROBS_LEVELS);
        // Every flag bit has a meaning; two vector kinds at once have none.
        if vector.count_ones() > 1 {
            return Err(format::corrupt(
                key,
                format!("decision flags {flags:#x} name two kinds of vector"),
            ));
        }
        e.advance(&mut r, key, flags & D_RUN != 0)?;
        let segment = u32::try_from(varint(&mut r, key)?)
            .map_err(|_| format::corrupt(key, "a segment beyond u32"))?;
        let arm = u16::try_from(varint(&mut r, key)?)
            .map_err(|_| format::corrupt(key, "an arm beyond u16"))?;
        let slot = if flags & D_SLOT != 0 {
            u8::try_from(varint(&mut r, key)?)
                .map_err(|_| format::corrupt(key, "a slot beyond u8"))?
        } else {
            0
        };
        let explicit = if flags & D_PROPENSITY != 0 {
            Some(r.f64()?)
        } else {
            None
        };
        let probs = if flags & D_PROBS_INLINE != 0 {
            let p: Arc<[f64]> = f64s(&mut r, key, MAX_PROBS)?.into();
            e.last.insert((segment, slot), p.clone());
            Some(p)
        } else if flags & D_PROBS_LEVELS != 0 {
            let n = varint(&mut r, key)?;
            if n > MAX_PROBS as u64 {
                return Err(format::corrupt(key, format!("a vector of {n} values")));
            }
            let (a, b) = (r.f64()?, r.f64()?);
            let bits = r.bytes((n as usize).div_ceil(8))?;
            let p: Arc<[f64]> = (0..n as usize)
                .map(|i| {
                    if bits[i / 8] & (1 << (i % 8)) != 0 {
                        b
                    } else {
                        a
                    }
                })
                .collect::<Vec<f64>>()
                .into();
            e.last.insert((segment, slot), p.clone());
            Some(p)
        } else if flags & D_PROBS_REPEAT != 0 {
            Some(
                e.last
                    .get(&(segment, slot))
                    .cloned()
                    .ok_or_else(|| format::corrupt(key, "a repeated vector without a first"))?,
            )
        } else {
            None
        };
        let propensity = match explicit {
            Some(p) => p,
            None => probs
                .as_ref()
                .and_then(|p| p.get(usize::from(arm)).copied())
                .ok_or_else(|| {
                    format::corrupt(key, "no propensity and no vector entry for the arm")
                })?,
        };
        let context = if flags & D_CONTEXT != 0 {
            f64s(&mut r, key, usize::from(u16::MAX))?
        } else {
            Vec::new()
        };
        out.push(LoggedDecision {
            at: (e.run, e.slot),
            created_ms: e.ms,
            segment,
            arm,
            propensity,
            probs,
            context,
            holdout: flags & D_HOLDOUT != 0,
            slot,
        });
    }
    Ok(out)
}

/// An outcome block's records, in the order written.
pub(super) fn decode_outcomes(key: &[u8], value: &[u8]) -> Result<Vec<LoggedOutcome>, StoreError> {
    let Some((&BLOCK_V2, body)) = value.split_first() else {
        return decode_outcomes_v1(key, value);
    };
    let mut r = Reader::new(key, body);
    let mut out = Vec::with_capacity(body.len() / 8);
    let mut e = Encoder::default();
    while !r.at_end() {
        let flags = r.u8()?;
        if flags & !(O_RUN | O_EXPIRED | O_REWARD_0 | O_REWARD_1) != 0
            || flags & (O_REWARD_0 | O_REWARD_1) == O_REWARD_0 | O_REWARD_1
        {
            return Err(format::corrupt(
                key,
                format!("unknown outcome flags {flags:#x}"),
            ));
        }
        e.advance(&mut r, key, flags & O_RUN != 0)?;
        // Stored as at − created: created = at − that.
        let age = delta(&mut r, key, 0)?;
        let reward = if flags & O_REWARD_0 != 0 {
            0.0
        } else if flags & O_REWARD_1 != 0 {
            1.0
        } else {
            r.f64()?
        };
        out.push(LoggedOutcome {
            decision: (e.run, e.slot),
            created_ms: e.ms.wrapping_sub(age),
            at_ms: e.ms,
            resolution: if flags & O_EXPIRED != 0 {
                Resolution::Expired
            } else {
                Resolution::Rewarded
            },
            reward,
        });
    }
    Ok(out)
}

// Version 1's vector tags.
const PROBS_NONE: u8 = 0;
const PROBS_INLINE: u8 = 1;
const PROBS_REPEAT: u8 = 2;

#[cfg(test)]
fn push_f64(v: &mut Vec<u8>, x: f64) {
    v.extend_from_slice(&x.to_bits().to_be_bytes());
}

fn read_f64(r: &mut Reader<'_>) -> Result<f64, StoreError> {
    Ok(f64::from_bits(r.u64()?))
}

/// Appends a version-1 decision record (tests: blocks written before the
/// compact format still decode); `previous` is the last vector written for
/// its segment in this block.
#[cfg(test)]
pub(super) fn push_decision_v1(v: &mut Vec<u8>, d: &LoggedDecision, previous: Option<&Arc<[f64]>>) {
    v.extend_from_slice(&d.at.0.to_be_bytes());
    v.extend_from_slice(&d.at.1.to_be_bytes());
    v.extend_from_slice(&d.created_ms.to_be_bytes());
    v.extend_from_slice(&d.segment.to_be_bytes());
    v.extend_from_slice(&d.arm.to_be_bytes());
    push_f64(v, d.propensity);
    match &d.probs {
        Some(p) if previous.is_some_and(|q| Arc::ptr_eq(p, q) || **p == **q) => {
            v.push(PROBS_REPEAT)
        }
        Some(p) if p.len() <= MAX_PROBS => {
            v.push(PROBS_INLINE);
            v.extend_from_slice(&(p.len() as u16).to_be_bytes());
            for &x in p.iter() {
                push_f64(v, x);
            }
        }
        _ => v.push(PROBS_NONE),
    }
    v.extend_from_slice(&(d.context.len() as u16).to_be_bytes());
    for &x in &d.context {
        push_f64(v, x);
    }
}

fn decode_decisions_v1(key: &[u8], value: &[u8]) -> Result<Vec<LoggedDecision>, StoreError> {
    let mut r = Reader::new(key, value);
    let mut out = Vec::new();
    let mut last: FastMap<u32, Arc<[f64]>> = FastMap::default();
    while !r.at_end() {
        let at = (r.u32()?, r.u64()?);
        let created_ms = r.u64()?;
        let segment = r.u32()?;
        let arm = r.u16()?;
        let propensity = read_f64(&mut r)?;
        let probs = match r.u8()? {
            PROBS_NONE => None,
            PROBS_INLINE => {
                let n = usize::from(r.u16()?);
                let mut p = Vec::with_capacity(n);
                for _ in 0..n {
                    p.push(read_f64(&mut r)?);
                }
                let p: Arc<[f64]> = p.into();
                last.insert(segment, p.clone());
                Some(p)
            }
            PROBS_REPEAT => Some(
                last.get(&segment)
                    .cloned()
                    .ok_or_else(|| format::corrupt(key, "a repeated vector without a first"))?,
            ),
            other => return Err(format::corrupt(key, format!("unknown vector tag {other}"))),
        };
        let n = usize::from(r.u16()?);
        let mut context = Vec::with_capacity(n);
        for _ in 0..n {
            context.push(read_f64(&mut r)?);
        }
        out.push(LoggedDecision {
            at,
            created_ms,
            segment,
            arm,
            propensity,
            probs,
            context,
            holdout: false,
            slot: 0,
        });
    }
    Ok(out)
}

const OUTCOME_LEN: usize = 4 + 8 + 8 + 8 + 1 + 8;

#[cfg(test)]
pub(super) fn push_outcome_v1(v: &mut Vec<u8>, o: &LoggedOutcome) {
    v.extend_from_slice(&o.decision.0.to_be_bytes());
    v.extend_from_slice(&o.decision.1.to_be_bytes());
    v.extend_from_slice(&o.created_ms.to_be_bytes());
    v.extend_from_slice(&o.at_ms.to_be_bytes());
    v.push(match o.resolution {
        Resolution::Rewarded => 0,
        Resolution::Expired => 1,
    });
    push_f64(v, o.reward);
}

fn decode_outcomes_v1(key: &[u8], value: &[u8]) -> Result<Vec<LoggedOutcome>, StoreError> {
    let mut r = Reader::new(key, value);
    let mut out = Vec::with_capacity(value.len() / OUTCOME_LEN);
    while !r.at_end() {
        let decision = (r.u32()?, r.u64()?);
        let created_ms = r.u64()?;
        let at_ms = r.u64()?;
        let resolution = match r.u8()? {
            0 => Resolution::Rewarded,
            1 => Resolution::Expired,
            other => return Err(format::corrupt(key, format!("unknown resolution {other}"))),
        };
        let reward = read_f64(&mut r)?;
        out.push(LoggedOutcome {
            decision,
            created_ms,
            at_ms,
            resolution,
            reward,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions() -> Vec<LoggedDecision> {
        let v: Arc<[f64]> = vec![0.25, 0.5, 0.25].into();
        let w: Arc<[f64]> = vec![0.1, 0.2, 0.7].into();
        // LinUCB's: ε/K everywhere, the leaders (1−ε)/ties more.
        let linucb: Arc<[f64]> = (0..20)
            .map(|i| {
                if i == 3 || i == 17 {
                    0.45 + 0.005
                } else {
                    0.005
                }
            })
            .collect::<Vec<f64>>()
            .into();
        let flat: Arc<[f64]> = vec![0.2; 5].into();
        let d =
            |at, ms, segment, arm, propensity, probs: Option<&Arc<[f64]>>, context: Vec<f64>| {
                LoggedDecision {
                    at,
                    created_ms: ms,
                    segment,
                    arm,
                    propensity,
                    probs: probs.cloned(),
                    context,
                    holdout: segment == 1 && arm == 0,
                    slot: if at.1 == 3 { 1 } else { 0 },
                }
            };
        vec![
            d((3, 0), 1_700_000_000_000, 0, 1, 0.5, Some(&v), vec![]),
            d((3, 1), 1_700_000_000_000, 0, 0, 0.25, Some(&v), vec![]),
            d((3, 2), 1_700_000_000_005, 1, 2, 0.7, Some(&w), vec![]),
            d((3, 3), 1_700_000_000_006, 0, 2, 0.25, Some(&v), vec![]),
            // The clock stepped back; the slot jumped; a new run.
            d(
                (4, 90),
                1_699_999_999_000,
                7,
                300,
                0.01,
                None,
                vec![-1.5, 2.0],
            ),
            d(
                (4, 7),
                1_699_999_999_001,
                7,
                1,
                1.0,
                None,
                vec![f64::MAX, -0.0],
            ),
            // A propensity that is not the vector's entry is kept as given.
            d(
                (3, u64::MAX),
                u64::MAX,
                u32::MAX,
                u16::MAX,
                0.3,
                Some(&v),
                vec![],
            ),
            d(
                (3, 8),
                1_700_000_000_010,
                2,
                17,
                0.455,
                Some(&linucb),
                vec![0.5; 20],
            ),
            d((3, 9), 1_700_000_000_010, 3, 4, 0.2, Some(&flat), vec![]),
        ]
    }

    fn outcomes() -> Vec<LoggedOutcome> {
        let o = |decision, created_ms, at_ms, resolution, reward| LoggedOutcome {
            decision,
            created_ms,
            at_ms,
            resolution,
            reward,
        };
        vec![
            o(
                (3, 1),
                1_700_000_000_000,
                1_700_000_060_000,
                Resolution::Rewarded,
                1.0,
            ),
            o(
                (3, 0),
                1_700_000_000_000,
                1_700_000_060_001,
                Resolution::Expired,
                0.0,
            ),
            o(
                (3, 2),
                1_700_000_000_005,
                1_700_000_000_004,
                Resolution::Rewarded,
                42.5,
            ),
            o((4, 0), 5, 1_700_000_060_002, Resolution::Rewarded, -0.0),
            o((4, u64::MAX), u64::MAX, 0, Resolution::Expired, f64::MIN),
        ]
    }

    #[test]
    fn compact_records_round_trip() {
        let mut v = Vec::new();
        Encoder::start(&mut v);
        let mut e = Encoder::default();
        for d in &decisions() {
            let before = v.len();
            e.decision(&mut v, d);
            assert!(v.len() - before <= decision_max(d));
        }
        let back = decode_decisions(b"k", &v).expect("decode");
        assert_eq!(back, decisions());
        assert_eq!(back[6].propensity.to_bits(), 0.3f64.to_bits());
        // A two-level vector of 20 entries takes 1 + 8 + 8 + 3 bytes, not 161.
        let mut no_context = decisions()[7].clone();
        no_context.context.clear();
        let mut one = Vec::new();
        Encoder::default().decision(&mut one, &no_context);
        assert!(one.len() <= 35, "{}", one.len());

        let mut v = Vec::new();
        Encoder::start(&mut v);
        let mut e = Encoder::default();
        for o in &outcomes() {
            let before = v.len();
            e.outcome(&mut v, o);
            assert!(v.len() - before <= OUTCOME_MAX);
        }
        let back = decode_outcomes(b"k", &v).expect("decode");
        assert_eq!(back.len(), outcomes().len());
        for (a, b) in back.iter().zip(outcomes()) {
            assert_eq!(
                (a.decision, a.created_ms, a.at_ms, a.resolution),
                (b.decision, b.created_ms, b.at_ms, b.resolution)
            );
            assert_eq!(a.reward.to_bits(), b.reward.to_bits());
        }
    }

    // The common records are small: a Thompson decision whose vector
    // repeats, and a 0/1 outcome a minute later.
    #[test]
    fn common_records_are_a_few_bytes() {
        let v: Arc<[f64]> = vec![0.1; 10].into();
        let mut e = Encoder::default();
        let mut buf = Vec::new();
        for slot in 0..1000u64 {
            let mut d = LoggedDecision {
                at: (1, slot),
                created_ms: 1_700_000_000_000 + slot * 3,
                segment: 2,
                arm: (slot % 10) as u16,
                propensity: 0.1,
                probs: Some(v.clone()),
                context: vec![],
                holdout: false,
                slot: 0,
            };
            d.propensity = v[usize::from(d.arm)];
            e.decision(&mut buf, &d);
        }
        assert!(buf.len() <= 1000 * 5 + 100, "{} bytes", buf.len());
        let mut e = Encoder::default();
        let mut buf = Vec::new();
        for slot in 0..1000u64 {
            e.outcome(
                &mut buf,
                &LoggedOutcome {
                    decision: (1, slot),
                    created_ms: 1_700_000_000_000 + slot * 3,
                    at_ms: 1_700_000_060_000 + slot * 3,
                    resolution: Resolution::Expired,
                    reward: 0.0,
                },
            );
        }
        assert!(buf.len() <= 1000 * 8 + 30, "{} bytes", buf.len());
    }

    // Blocks written in version 1 still decode.
    #[test]
    fn version_1_blocks_still_decode() {
        let ds = decisions();
        let mut v = Vec::new();
        let mut last: FastMap<u32, Arc<[f64]>> = FastMap::default();
        // (Version 1 had no two-level vectors; the first six have none.)
        for d in ds.iter().take(6) {
            push_decision_v1(&mut v, d, last.get(&d.segment));
            if let Some(p) = &d.probs {
                last.insert(d.segment, p.clone());
            }
        }
        assert_eq!(v[0], 0);
        // (Nor slots.)
        let want: Vec<LoggedDecision> = ds[..6]
            .iter()
            .map(|d| LoggedDecision {
                slot: 0,
                ..d.clone()
            })
            .collect();
        assert_eq!(decode_decisions(b"k", &v).expect("decode"), want);
        let mut v = Vec::new();
        for o in outcomes().iter().take(3) {
            push_outcome_v1(&mut v, o);
        }
        assert_eq!(
            decode_outcomes(b"k", &v).expect("decode"),
            outcomes()[..3].to_vec()
        );
    }

    #[test]
    fn corrupt_compact_blocks_are_errors() {
        let mut v = Vec::new();
        Encoder::start(&mut v);
        Encoder::default().decision(&mut v, &decisions()[0]);
        for cut in 1..v.len() {
            assert!(decode_decisions(b"k", &v[..cut]).is_err() || cut == 1);
        }
        let mut bad = v.clone();
        bad[1] |= 0x80;
        assert!(decode_decisions(b"k", &bad).is_err());
        // A repeat with no vector before it.
        assert!(decode_decisions(b"k", &[BLOCK_V2, D_PROBS_REPEAT, 0, 0, 0, 0]).is_err());
        // A varint beyond 64 bits (its tenth byte above 1).
        assert!(decode_outcomes(
            b"k",
            &[BLOCK_V2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0, 0]
        )
        .is_err());
        // An unlimited varint.
        assert!(decode_outcomes(
            b"k",
            &[BLOCK_V2, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        )
        .is_err());
    }
}
