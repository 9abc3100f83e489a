//! The on-disk format, version [`FORMAT_VERSION`]: keys, values and their
//! codecs. Pure functions of bytes; no I/O.
//!
//! Every number is big-endian, so keys sort numerically. A campaign's keys
//! all start with `C` and its uid (a number never reused), so deleting a
//! campaign is one prefix delete and a re-created campaign of the same name
//! can never see its predecessor's rows.
//!
//! | key | value |
//! |---|---|
//! | `V` | format version: u32 |
//! | `M` | next campaign uid: u64, last run: u32 |
//! | `C` uid `c` chunk:u16 | the campaign record (JSON), in chunks |
//! | `C` uid `s` segment:u32 | the segment's name (UTF-8) |
//! | `C` uid `p` segment:u32 arm:u32 | outcomes n: u64, reward sum: f64 [, decayed n: f64, decayed sum: f64, as of: u64] |
//! | `C` uid `g` | the learned delay distribution: 64 bin counts, f64 |
//! | `C` uid `l` arm:u32 chunk:u16 | ridge statistics of a contextual arm, in chunks |
//! | `C` uid `d` run:u32 slot:u64 | a block of decisions, slots `slot`, `slot+1`, … |
//! | `C` uid `o` run:u32 seq:u64 | a block of outcomes, in the order they were learned |
//! | `C` uid `w` | forgotten below: run u32, slot u64 |
//!
//! A *run* is one process lifetime (numbered at start-up, made durable
//! before anything is served), so a server-generated decision id
//! (campaign uid, run, slot) is never handed out twice, even when a crash
//! lost the last decisions of the run before.
//!
//! No value is longer than [`MAX_VALUE_BYTES`]: larger records are split
//! into chunks (see the sled store's docs for why).

use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::policy::thompson::ArmCounts;
use std::sync::Arc;

/// The format this code writes; start-up migrates older ones.
pub const FORMAT_VERSION: u32 = 1;
/// Longest value written. sled leaves hold at most 17 entries, so a node
/// stays far below sled's 128 KiB blob threshold.
pub const MAX_VALUE_BYTES: usize = 6 * 1024;
/// A block is rewritten by later batches (appending to it) only while it is
/// shorter than this; then it is sealed and a new one begins.
pub const SEAL_BYTES: usize = 2 * 1024;

pub const VERSION_KEY: &[u8] = b"V";
pub const META_KEY: &[u8] = b"M";
const CAMPAIGN_TAG: u8 = b'C';

const SPEC: u8 = b'c';
const SEGMENT: u8 = b's';
const ROW: u8 = b'p';
const LINEAR: u8 = b'l';
const DECISIONS: u8 = b'd';
const OUTCOMES: u8 = b'o';
const WATERMARK: u8 = b'w';
const DELAY: u8 = b'g';
const COUNTERS: u8 = b'k';

/// A position in a campaign's decision log: (run, slot), ordered.
pub type Position = (u32, u64);

/// The start-up record: counters that must survive restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub next_uid: u64,
    pub run: u32,
}

/// One decision as persisted (the id is derived from its position, unless
/// the caller chose it).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionEntry {
    pub created_ms: u64,
    pub propensity: f64,
    pub segment: u32,
    pub arm: u16,
    pub caller_id: Option<Arc<str>>,
    pub context: Option<Arc<[f64]>>,
    /// P(chosen) for every arm where the policy has it: for the decision
    /// log only (the state's blocks do not keep it).
    pub probs: Option<Arc<[f64]>>,
    /// A holdout decision: chosen uniformly, never learned from.
    pub holdout: bool,
    /// Its slot in its slate (0: the first, or a single arm). The slots of
    /// a slate are consecutive positions, slot 0 first.
    pub slot: u8,
}

/// How a decision was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Its reward arrived.
    Rewarded,
    /// Its timeout passed and the default reward was learned.
    Expired,
}

/// One outcome as persisted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutcomeEntry {
    pub decision: Position,
    pub resolution: Resolution,
    pub reward: f64,
    pub at_ms: u64,
}

/// A contextual arm's persisted statistics: `A` (upper triangle: `A` is
/// symmetric bit for bit, see `policy::linucb`), `b`, and the plain tallies
/// (Σr² for the residual noise). `A⁻¹` is not stored; it is recomputed on
/// load.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearStats {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub pulls: u64,
    pub reward_sum: f64,
    pub reward_sq_sum: f64,
}

/// Forward-decayed sums of an arm's outcomes, read at `as_of_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecayedSums {
    pub n: f64,
    pub sum: f64,
    pub as_of_ms: u64,
}

/// One arm's persisted statistics in one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Row {
    pub counts: ArmCounts,
    /// Campaigns with a decay half-life.
    pub decayed: Option<DecayedSums>,
}

/// A decoded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Version,
    Meta,
    Spec { uid: u64, chunk: u16 },
    Segment { uid: u64, segment: u32 },
    Row { uid: u64, segment: u32, arm: u32 },
    Linear { uid: u64, arm: u32, chunk: u16 },
    Decisions { uid: u64, first: Position },
    Outcomes { uid: u64, run: u32, first_seq: u64 },
    Watermark { uid: u64 },
    Delay { uid: u64 },
    Counters { uid: u64, of: Counted },
}

/// What a counters row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counted {
    /// An arm's impressions and conversions against its caps.
    Budget { arm: u32 },
    /// A segment's policy and holdout outcomes (the uplift).
    Uplift { segment: u32 },
}

/// An arm's counts against its caps in the current cap period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetRow {
    pub impressions: u64,
    pub conversions: u64,
    /// The UTC day (ms since the epoch / 86,400,000) the counts are of;
    /// 0 for lifetime caps.
    pub day: u64,
}

/// Count, sum and sum of squares of some rewards.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sq: f64,
}

impl Moments {
    pub fn add(&mut self, r: f64) {
        self.n += 1;
        self.sum += r;
        self.sq += r * r;
    }

    pub fn plus(&self, o: &Moments) -> Moments {
        Moments {
            n: self.n + o.n,
            sum: self.sum + o.sum,
            sq: self.sq + o.sq,
        }
    }
}

/// A segment's resolved outcomes of the policy's decisions and of the holdout's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpliftRow {
    pub policy: Moments,
    pub holdout: Moments,
}

/// A counters row's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Counters {
    Budget(BudgetRow),
    Uplift(UpliftRow),
}

pub fn counters_key(uid: u64, of: Counted) -> Vec<u8> {
    match of {
        Counted::Budget { arm } => campaign_key(uid, COUNTERS, &[&[0], &arm.to_be_bytes()]),
        Counted::Uplift { segment } => campaign_key(uid, COUNTERS, &[&[1], &segment.to_be_bytes()]),
    }
}

pub fn encode_counters(c: &Counters) -> Vec<u8> {
    let mut v = Vec::with_capacity(48);
    match c {
        Counters::Budget(b) => {
            for x in [b.impressions, b.conversions, b.day] {
                v.extend_from_slice(&x.to_be_bytes());
            }
        }
        Counters::Uplift(u) => {
            for m in [u.policy, u.holdout] {
                v.extend_from_slice(&m.n.to_be_bytes());
                v.extend_from_slice(&m.sum.to_bits().to_be_bytes());
                v.extend_from_slice(&m.sq.to_bits().to_be_bytes());
            }
        }
    }
    v
}

pub fn decode_counters(key: &[u8], of: Counted, v: &[u8]) -> Result<Counters, StoreError> {
    let mut r = Reader::new(key, v);
    let c = match of {
        Counted::Budget { .. } => Counters::Budget(BudgetRow {
            impressions: r.u64()?,
            conversions: r.u64()?,
            day: r.u64()?,
        }),
        Counted::Uplift { .. } => {
            let mut m = [Moments::default(); 2];
            for x in &mut m {
                *x = Moments {
                    n: r.u64()?,
                    sum: r.f64()?,
                    sq: r.f64()?,
                };
                if !(x.sum.is_finite() && x.sq.is_finite()) {
                    return Err(corrupt(key, "non-finite reward sum"));
                }
            }
            Counters::Uplift(UpliftRow {
                policy: m[0],
                holdout: m[1],
            })
        }
    };
    r.end()?;
    Ok(c)
}

impl Key {
    /// The campaign the key belongs to, if any.
    pub fn uid(&self) -> Option<u64> {
        match *self {
            Key::Version | Key::Meta => None,
            Key::Spec { uid, .. }
            | Key::Segment { uid, .. }
            | Key::Row { uid, .. }
            | Key::Linear { uid, .. }
            | Key::Decisions { uid, .. }
            | Key::Outcomes { uid, .. }
            | Key::Watermark { uid }
            | Key::Delay { uid }
            | Key::Counters { uid, .. } => Some(uid),
        }
    }
}

/// Everything under one campaign.
pub fn campaign_prefix(uid: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(CAMPAIGN_TAG);
    k.extend_from_slice(&uid.to_be_bytes());
    k
}

fn campaign_key(uid: u64, tag: u8, rest: &[&[u8]]) -> Vec<u8> {
    let mut k = campaign_prefix(uid);
    k.push(tag);
    for part in rest {
        k.extend_from_slice(part);
    }
    k
}

pub fn spec_key(uid: u64, chunk: u16) -> Vec<u8> {
    campaign_key(uid, SPEC, &[&chunk.to_be_bytes()])
}

pub fn segment_key(uid: u64, segment: u32) -> Vec<u8> {
    campaign_key(uid, SEGMENT, &[&segment.to_be_bytes()])
}

pub fn row_key(uid: u64, segment: u32, arm: u32) -> Vec<u8> {
    campaign_key(uid, ROW, &[&segment.to_be_bytes(), &arm.to_be_bytes()])
}

pub fn linear_key(uid: u64, arm: u32, chunk: u16) -> Vec<u8> {
    campaign_key(uid, LINEAR, &[&arm.to_be_bytes(), &chunk.to_be_bytes()])
}

pub fn decisions_key(uid: u64, first: Position) -> Vec<u8> {
    campaign_key(
        uid,
        DECISIONS,
        &[&first.0.to_be_bytes(), &first.1.to_be_bytes()],
    )
}

pub fn outcomes_key(uid: u64, run: u32, first_seq: u64) -> Vec<u8> {
    campaign_key(
        uid,
        OUTCOMES,
        &[&run.to_be_bytes(), &first_seq.to_be_bytes()],
    )
}

pub fn watermark_key(uid: u64) -> Vec<u8> {
    campaign_key(uid, WATERMARK, &[])
}

pub fn delay_key(uid: u64) -> Vec<u8> {
    campaign_key(uid, DELAY, &[])
}

pub fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        why: why.to_string(),
    }
}

/// Reads fixed-width big-endian fields off a byte slice.
pub struct Reader<'a> {
    key: &'a [u8],
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(key: &'a [u8], buf: &'a [u8]) -> Self {
        Reader { key, buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let out = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| corrupt(self.key, "truncated"))?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let b = self.bytes(N)?;
        b.try_into().map_err(|_| corrupt(self.key, "truncated"))
    }

    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64, StoreError> {
        Ok(f64::from_bits(self.u64()?))
    }

    pub fn end(self) -> Result<(), StoreError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(corrupt(self.key, "trailing bytes"))
        }
    }
}

/// Parses a key of this format; `None` for keys of another format (v0).
pub fn decode_key(key: &[u8]) -> Result<Option<Key>, StoreError> {
    match key {
        b"V" => return Ok(Some(Key::Version)),
        b"M" => return Ok(Some(Key::Meta)),
        [CAMPAIGN_TAG, ..] => {}
        _ => return Ok(None),
    }
    let mut r = Reader::new(key, key);
    r.u8()?;
    let uid = r.u64()?;
    let k = match r.u8()? {
        SPEC => Key::Spec {
            uid,
            chunk: r.u16()?,
        },
        SEGMENT => Key::Segment {
            uid,
            segment: r.u32()?,
        },
        ROW => Key::Row {
            uid,
            segment: r.u32()?,
            arm: r.u32()?,
        },
        LINEAR => Key::Linear {
            uid,
            arm: r.u32()?,
            chunk: r.u16()?,
        },
        DECISIONS => Key::Decisions {
            uid,
            first: (r.u32()?, r.u64()?),
        },
        OUTCOMES => Key::Outcomes {
            uid,
            run: r.u32()?,
            first_seq: r.u64()?,
        },
        WATERMARK => Key::Watermark { uid },
        DELAY => Key::Delay { uid },
        COUNTERS => {
            let kind = r.u8()?;
            let index = r.u32()?;
            let of = match kind {
                0 => Counted::Budget { arm: index },
                1 => Counted::Uplift { segment: index },
                k => return Err(corrupt(key, format!("unknown counters kind {k}"))),
            };
            Key::Counters { uid, of }
        }
        other => return Err(corrupt(key, format!("unknown campaign key tag {other}"))),
    };
    r.end()?;
    Ok(Some(k))
}

pub fn encode_version() -> Vec<u8> {
    FORMAT_VERSION.to_be_bytes().to_vec()
}

pub fn decode_version(key: &[u8], v: &[u8]) -> Result<u32, StoreError> {
    let mut r = Reader::new(key, v);
    let version = r.u32()?;
    r.end()?;
    Ok(version)
}

pub fn encode_meta(m: &Meta) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&m.next_uid.to_be_bytes());
    v.extend_from_slice(&m.run.to_be_bytes());
    v
}

pub fn decode_meta(key: &[u8], v: &[u8]) -> Result<Meta, StoreError> {
    let mut r = Reader::new(key, v);
    let m = Meta {
        next_uid: r.u64()?,
        run: r.u32()?,
    };
    r.end()?;
    Ok(m)
}

/// The campaign record: its definition, in JSON (rare writes, readable).
pub fn encode_spec(spec: &CampaignSpec) -> Vec<u8> {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_vec(spec).unwrap_or_default()
}

pub fn decode_spec(key: &[u8], v: &[u8]) -> Result<CampaignSpec, StoreError> {
    let mut json: serde_json::Value = serde_json::from_slice(v).map_err(|e| corrupt(key, e))?;
    upgrade_spec_json(&mut json);
    serde_json::from_value(json).map_err(|e| corrupt(key, e))
}

/// Brings the JSON of a campaign written by banditd before empirical-Bayes
/// pooling up to date: its Thompson policy had `segment_prior_strength`
/// (10 by default, which pooled too little and becomes empirical Bayes;
/// 0 stays off; another value stays fixed) and no exploration floor (the
/// default floor applies).
pub fn upgrade_spec_json(json: &mut serde_json::Value) {
    let Some(policy) = json.get_mut("policy").and_then(|p| p.as_object_mut()) else {
        return;
    };
    if policy.get("kind").and_then(|k| k.as_str()) != Some("thompson") {
        return;
    }
    if let Some(strength) = policy.remove("segment_prior_strength") {
        let s = strength
            .as_f64()
            .unwrap_or(crate::policy::pooling::FALLBACK_STRENGTH);
        let pooling = if s == 0.0 {
            serde_json::json!({ "kind": "off" })
        } else if s == crate::policy::pooling::FALLBACK_STRENGTH {
            serde_json::json!({ "kind": "empirical_bayes" })
        } else {
            serde_json::json!({ "kind": "fixed", "strength": s })
        };
        policy.entry("pooling").or_insert(pooling);
    }
    policy
        .entry("pooling")
        .or_insert(serde_json::json!({ "kind": "empirical_bayes" }));
    // A campaign stored before the floor was a field was created when the
    // default was 0.001: it keeps it.
    policy
        .entry("exploration_floor")
        .or_insert(serde_json::json!(STORED_FLOOR_BEFORE_THE_FIELD));
}

/// The exploration floor of campaigns stored before it was a field.
const STORED_FLOOR_BEFORE_THE_FIELD: f64 = 0.001;

/// Splits `bytes` into chunks of at most [`MAX_VALUE_BYTES`] (at least one).
pub fn chunks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let n = bytes.len().div_ceil(MAX_VALUE_BYTES).max(1);
    (0..n).map(move |i| &bytes[i * MAX_VALUE_BYTES..((i + 1) * MAX_VALUE_BYTES).min(bytes.len())])
}

pub fn encode_row(r: &Row) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(&r.counts.n.to_be_bytes());
    v.extend_from_slice(&r.counts.sum.to_bits().to_be_bytes());
    if let Some(d) = r.decayed {
        v.extend_from_slice(&d.n.to_bits().to_be_bytes());
        v.extend_from_slice(&d.sum.to_bits().to_be_bytes());
        v.extend_from_slice(&d.as_of_ms.to_be_bytes());
    }
    v
}

pub fn decode_row(key: &[u8], v: &[u8]) -> Result<Row, StoreError> {
    let mut r = Reader::new(key, v);
    let counts = ArmCounts {
        n: r.u64()?,
        sum: r.f64()?,
    };
    let decayed = if r.at_end() {
        None
    } else {
        Some(DecayedSums {
            n: r.f64()?,
            sum: r.f64()?,
            as_of_ms: r.u64()?,
        })
    };
    r.end()?;
    let finite =
        counts.sum.is_finite() && decayed.is_none_or(|d| d.n.is_finite() && d.sum.is_finite());
    if !finite {
        return Err(corrupt(key, "non-finite reward sum"));
    }
    Ok(Row { counts, decayed })
}

/// The delay histogram's bin counts.
pub fn encode_delay(bins: &[f64]) -> Vec<u8> {
    bins.iter()
        .flat_map(|b| b.to_bits().to_be_bytes())
        .collect()
}

pub fn decode_delay(key: &[u8], v: &[u8]) -> Result<Vec<f64>, StoreError> {
    let mut r = Reader::new(key, v);
    let mut bins = Vec::with_capacity(v.len() / 8);
    while !r.at_end() {
        bins.push(r.f64()?);
    }
    Ok(bins)
}

/// `d`, tallies, the upper triangle of `A` row by row, then `b`.
pub fn encode_linear(s: &LinearStats) -> Vec<u8> {
    let d = s.b.len();
    let mut v = Vec::with_capacity(26 + 8 * (d * (d + 1) / 2 + d));
    v.extend_from_slice(&(d as u16).to_be_bytes());
    v.extend_from_slice(&s.pulls.to_be_bytes());
    v.extend_from_slice(&s.reward_sum.to_bits().to_be_bytes());
    v.extend_from_slice(&s.reward_sq_sum.to_bits().to_be_bytes());
    for i in 0..d {
        for j in i..d {
            v.extend_from_slice(&s.a[i * d + j].to_bits().to_be_bytes());
        }
    }
    for x in &s.b {
        v.extend_from_slice(&x.to_bits().to_be_bytes());
    }
    v
}

pub fn decode_linear(key: &[u8], v: &[u8]) -> Result<LinearStats, StoreError> {
    let mut r = Reader::new(key, v);
    let d = r.u16()? as usize;
    // Check the length before allocating d² entries from a number read off disk.
    if v.len() != 26 + 8 * (d * (d + 1) / 2 + d) {
        return Err(corrupt(key, "ridge statistics of the wrong length"));
    }
    let pulls = r.u64()?;
    let reward_sum = r.f64()?;
    let reward_sq_sum = r.f64()?;
    let mut a = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let x = r.f64()?;
            a[i * d + j] = x;
            a[j * d + i] = x;
        }
    }
    let b = (0..d).map(|_| r.f64()).collect::<Result<Vec<_>, _>>()?;
    r.end()?;
    if a.iter().chain(&b).any(|x| !x.is_finite()) {
        return Err(corrupt(key, "non-finite ridge statistics"));
    }
    if !(reward_sum.is_finite() && reward_sq_sum.is_finite()) {
        return Err(corrupt(key, "non-finite reward sums"));
    }
    Ok(LinearStats {
        a,
        b,
        pulls,
        reward_sum,
        reward_sq_sum,
    })
}

const HAS_CALLER_ID: u8 = 1;
const HAS_CONTEXT: u8 = 2;
const HOLDOUT: u8 = 4;
const SLOT: u8 = 8;

/// Appends one decision to a block: created u64, propensity f64, segment
/// u32, arm u16, flags u8, then the slot (u8, when not 0), the caller's id
/// (u8 length + bytes) and the context (u8 count + f64s) when present.
pub fn push_decision(buf: &mut Vec<u8>, d: &DecisionEntry) {
    buf.extend_from_slice(&d.created_ms.to_be_bytes());
    buf.extend_from_slice(&d.propensity.to_bits().to_be_bytes());
    buf.extend_from_slice(&d.segment.to_be_bytes());
    buf.extend_from_slice(&d.arm.to_be_bytes());
    let mut flags = 0;
    if d.caller_id.is_some() {
        flags |= HAS_CALLER_ID;
    }
    if d.context.is_some() {
        flags |= HAS_CONTEXT;
    }
    if d.holdout {
        flags |= HOLDOUT;
    }
    if d.slot != 0 {
        flags |= SLOT;
    }
    buf.push(flags);
    if d.slot != 0 {
        buf.push(d.slot);
    }
    if let Some(id) = &d.caller_id {
        debug_assert!(id.len() <= u8::MAX as usize);
        buf.push(id.len() as u8);
        buf.extend_from_slice(id.as_bytes());
    }
    if let Some(x) = &d.context {
        debug_assert!(x.len() <= u8::MAX as usize);
        buf.push(x.len() as u8);
        for v in x.iter() {
            buf.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }
}

/// Bytes [`push_decision`] writes for `d`.
pub fn decision_len(d: &DecisionEntry) -> usize {
    23 + usize::from(d.slot != 0)
        + d.caller_id.as_ref().map_or(0, |id| 1 + id.len())
        + d.context.as_ref().map_or(0, |x| 1 + 8 * x.len())
}

pub fn decode_decisions(key: &[u8], v: &[u8]) -> Result<Vec<DecisionEntry>, StoreError> {
    let mut r = Reader::new(key, v);
    let mut out = Vec::new();
    while !r.at_end() {
        let created_ms = r.u64()?;
        let propensity = r.f64()?;
        let segment = r.u32()?;
        let arm = r.u16()?;
        let flags = r.u8()?;
        if flags & !(HAS_CALLER_ID | HAS_CONTEXT | HOLDOUT | SLOT) != 0 {
            return Err(corrupt(key, format!("unknown decision flags {flags}")));
        }
        let slot = if flags & SLOT != 0 { r.u8()? } else { 0 };
        let caller_id = if flags & HAS_CALLER_ID != 0 {
            let n = r.u8()? as usize;
            let s = std::str::from_utf8(r.bytes(n)?).map_err(|e| corrupt(key, e))?;
            Some(Arc::from(s))
        } else {
            None
        };
        let context = if flags & HAS_CONTEXT != 0 {
            let n = r.u8()? as usize;
            let x = (0..n).map(|_| r.f64()).collect::<Result<Vec<_>, _>>()?;
            Some(Arc::from(x))
        } else {
            None
        };
        if !(propensity > 0.0 && propensity <= 1.0) {
            return Err(corrupt(
                key,
                format!("propensity {propensity} outside (0, 1]"),
            ));
        }
        out.push(DecisionEntry {
            created_ms,
            propensity,
            segment,
            arm,
            caller_id,
            context,
            probs: None,
            holdout: flags & HOLDOUT != 0,
            slot,
        });
    }
    Ok(out)
}

/// Bytes of one outcome entry.
pub const OUTCOME_LEN: usize = 29;

/// Appends one outcome: run u32, slot u64, resolution u8, reward f64, at u64.
pub fn push_outcome(buf: &mut Vec<u8>, o: &OutcomeEntry) {
    buf.extend_from_slice(&o.decision.0.to_be_bytes());
    buf.extend_from_slice(&o.decision.1.to_be_bytes());
    buf.push(match o.resolution {
        Resolution::Rewarded => 1,
        Resolution::Expired => 2,
    });
    buf.extend_from_slice(&o.reward.to_bits().to_be_bytes());
    buf.extend_from_slice(&o.at_ms.to_be_bytes());
}

pub fn decode_outcomes(key: &[u8], v: &[u8]) -> Result<Vec<OutcomeEntry>, StoreError> {
    let mut r = Reader::new(key, v);
    let mut out = Vec::with_capacity(v.len() / OUTCOME_LEN);
    while !r.at_end() {
        let decision = (r.u32()?, r.u64()?);
        let resolution = match r.u8()? {
            1 => Resolution::Rewarded,
            2 => Resolution::Expired,
            other => return Err(corrupt(key, format!("unknown resolution {other}"))),
        };
        let reward = r.f64()?;
        if !reward.is_finite() {
            return Err(corrupt(key, "non-finite reward"));
        }
        out.push(OutcomeEntry {
            decision,
            resolution,
            reward,
            at_ms: r.u64()?,
        });
    }
    Ok(out)
}

pub fn encode_position(p: Position) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&p.0.to_be_bytes());
    v.extend_from_slice(&p.1.to_be_bytes());
    v
}

pub fn decode_position(key: &[u8], v: &[u8]) -> Result<Position, StoreError> {
    let mut r = Reader::new(key, v);
    let p = (r.u32()?, r.u64()?);
    r.end()?;
    Ok(p)
}

/// Longest server-generated decision id: 16 + 1 + 8 + 1 + 12 hex digits and dashes.
pub const DECISION_ID_MAX: usize = 38;

/// The id banditd hands out for the decision at `at` of campaign `uid`:
/// `{uid:x}-{run:x}-{slot:012x}`, written into `buf` without allocating.
/// The fixed-width slot makes a run's ids sort in creation order.
pub fn write_decision_id(uid: u64, at: Position, buf: &mut [u8; DECISION_ID_MAX]) -> &str {
    fn hex(v: u64, min_digits: u32, buf: &mut [u8], n: &mut usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digits = (64 - v.leading_zeros()).div_ceil(4).max(min_digits);
        for i in (0..digits).rev() {
            buf[*n] = HEX[((v >> (4 * i)) & 0xf) as usize];
            *n += 1;
        }
    }
    let mut n = 0;
    hex(uid, 1, buf, &mut n);
    buf[n] = b'-';
    n += 1;
    hex(u64::from(at.0), 1, buf, &mut n);
    buf[n] = b'-';
    n += 1;
    hex(at.1 & 0xffff_ffff_ffff, 12, buf, &mut n);
    // Only ASCII hex digits and dashes were written.
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

/// The campaign uid and position of a server-generated id; `None` for any
/// other string (caller-chosen ids).
pub fn parse_decision_id(id: &str) -> Option<(u64, Position)> {
    let mut parts = id.split('-');
    let (uid, run, slot) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let hex = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(uid, 16) || !hex(run, 8) || slot.len() != 12 || !hex(slot, 12) {
        return None;
    }
    Some((
        u64::from_str_radix(uid, 16).ok()?,
        (
            u32::from_str_radix(run, 16).ok()?,
            u64::from_str_radix(slot, 16).ok()?,
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every key decodes back to what was encoded, and a campaign's keys all
    // share its prefix (one prefix delete removes them).
    #[test]
    fn keys_round_trip_under_their_campaign_prefix() {
        let uid = 0x0102_0304_0506_0708;
        let cases = [
            (spec_key(uid, 3), Key::Spec { uid, chunk: 3 }),
            (segment_key(uid, 7), Key::Segment { uid, segment: 7 }),
            (
                row_key(uid, 7, 2),
                Key::Row {
                    uid,
                    segment: 7,
                    arm: 2,
                },
            ),
            (
                linear_key(uid, 2, 1),
                Key::Linear {
                    uid,
                    arm: 2,
                    chunk: 1,
                },
            ),
            (
                decisions_key(uid, (4, 99)),
                Key::Decisions {
                    uid,
                    first: (4, 99),
                },
            ),
            (
                outcomes_key(uid, 4, 5),
                Key::Outcomes {
                    uid,
                    run: 4,
                    first_seq: 5,
                },
            ),
            (watermark_key(uid), Key::Watermark { uid }),
            (delay_key(uid), Key::Delay { uid }),
            (
                counters_key(uid, Counted::Budget { arm: 3 }),
                Key::Counters {
                    uid,
                    of: Counted::Budget { arm: 3 },
                },
            ),
            (
                counters_key(uid, Counted::Uplift { segment: 9 }),
                Key::Counters {
                    uid,
                    of: Counted::Uplift { segment: 9 },
                },
            ),
        ];
        for (bytes, key) in cases {
            assert!(bytes.starts_with(&campaign_prefix(uid)));
            assert_eq!(decode_key(&bytes).expect("decode"), Some(key));
        }
        assert_eq!(decode_key(b"V").expect("v"), Some(Key::Version));
        assert_eq!(decode_key(b"pold").expect("v0"), None);
        assert!(decode_key(&[b'C', 1, 2]).is_err());
    }

    // Decision and outcome blocks round-trip, optional parts included.
    #[test]
    fn blocks_round_trip() {
        let ds = [
            DecisionEntry {
                created_ms: 1_700_000_000_000,
                propensity: 0.25,
                segment: 3,
                arm: 9,
                caller_id: None,
                context: None,
                probs: None,
                holdout: false,
                slot: 0,
            },
            DecisionEntry {
                created_ms: 1_700_000_000_005,
                propensity: 1.0,
                segment: 0,
                arm: 0,
                caller_id: Some("imp-1".into()),
                context: Some(vec![1.0, -0.5, 3.25].into()),
                probs: None,
                holdout: true,
                slot: 2,
            },
        ];
        let mut buf = Vec::new();
        for d in &ds {
            let before = buf.len();
            push_decision(&mut buf, d);
            assert_eq!(buf.len() - before, decision_len(d));
        }
        assert_eq!(decode_decisions(b"k", &buf).expect("decode"), ds);
        let o = OutcomeEntry {
            decision: (2, 77),
            resolution: Resolution::Expired,
            reward: 0.5,
            at_ms: 42,
        };
        let mut buf = Vec::new();
        push_outcome(&mut buf, &o);
        assert_eq!(buf.len(), OUTCOME_LEN);
        assert_eq!(decode_outcomes(b"k", &buf).expect("decode"), [o]);
        assert!(decode_decisions(b"k", &buf[..10]).is_err());
    }

    // Server ids parse back to their campaign and position; other strings
    // (caller-chosen ids) do not.
    #[test]
    fn decision_ids_round_trip() {
        let mut buf = [0u8; DECISION_ID_MAX];
        for (uid, at) in [
            (1, (1, 0)),
            (0xffff_ffff_ffff_ffff, (u32::MAX, 0xffff_ffff_ffff)),
            (42, (7, 12345)),
        ] {
            let id = write_decision_id(uid, at, &mut buf).to_string();
            assert_eq!(parse_decision_id(&id), Some((uid, at)), "{id}");
        }
        assert_eq!(
            write_decision_id(0x2a, (3, 0x4f), &mut buf),
            "2a-3-00000000004f"
        );
        for other in [
            "imp-0001",
            "2a-3-4f",
            "2A-3-00000000004f",
            "2a-3-00000000004f-1",
            "",
            "--",
        ] {
            assert_eq!(parse_decision_id(other), None, "{other}");
        }
    }

    // The ridge statistics survive the upper-triangle encoding bit for bit.
    #[test]
    fn linear_stats_round_trip() {
        let d = 3;
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = if i == j { 2.5 } else { 0.1 * (i + j) as f64 };
            }
        }
        let s = LinearStats {
            a,
            b: vec![1.0, 2.0, -3.0],
            pulls: 12,
            reward_sum: 4.5,
            reward_sq_sum: 9.25,
        };
        assert_eq!(decode_linear(b"k", &encode_linear(&s)).expect("decode"), s);
        // A dimension that does not match the value's length is refused
        // before anything is allocated from it.
        let mut bogus = encode_linear(&s);
        bogus[..2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(decode_linear(b"k", &bogus).is_err());
        let long = vec![7u8; 2 * MAX_VALUE_BYTES + 1];
        let parts: Vec<&[u8]> = chunks(&long).collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= MAX_VALUE_BYTES));
        assert_eq!(chunks(&[]).count(), 1);
    }
}
