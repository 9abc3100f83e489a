//! The sled-backed [`Store`]: one tree, compact big-endian keys, values
//! overwritten in place.
//!
//! Key layout (one tree):
//!
//! | key | value |
//! |---|---|
//! | `c` campaign-id | campaign definition (JSON; rare writes, readable) |
//! | `p` len campaign len segment arm:u32be | n:u64be, reward_sum:f64be, through:u64be (24 bytes) |
//! | `d` decision-id | status:u8 arm:u32 propensity:f64 created:u64 deadline:u64 outcome_seq:u64 reward:f64 len campaign len segment n:u16 context:f64×n |
//! | `l` len campaign arm:u32be | d:u16 updates:u32 pulls:u64 reward_sum:f64 through:u64 A:f64×d² b:f64×d A⁻¹:f64×d² |
//!
//! Lengths are one byte (ids are at most 128 bytes, see `campaign::limits`).
//!
//! Durability: sled writes go to its in-process log and are made stable by
//! its background flusher every `flush_every_ms`. [`Store::flush`] calls
//! `sled::Db::flush` *and then* `fdatasync` on sled's data file: on Linux
//! sled's flush uses `sync_file_range`, which survives a killed process but
//! not a power cut.

use super::{
    DecisionRecord, DecisionStatus, LinearRow, PosteriorKey, PosteriorRow, Snapshot, Store,
};
use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::policy::linucb::LinearArm;
use crate::policy::thompson::ArmCounts;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to open the database.
#[derive(Debug, Clone)]
pub struct SledOptions {
    pub path: PathBuf,
    /// Background fsync interval in milliseconds.
    pub flush_every_ms: u64,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
}

/// A sled database holding one banditd state.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// sled's data file, kept open to `fdatasync` it after each flush.
    data_file: File,
}

impl SledStore {
    pub fn open(opts: &SledOptions) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(&opts.path)
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(Some(opts.flush_every_ms))
            .open()?;
        let data_file = File::open(data_file_path(&opts.path))?;
        Ok(SledStore { db, data_file })
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

fn data_file_path(dir: &Path) -> PathBuf {
    dir.join("db")
}

impl Store for SledStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        for item in self.db.iter() {
            let (k, v) = item?;
            match k.first() {
                Some(b'c') => snap
                    .campaigns
                    .push(serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?),
                Some(b'p') => snap
                    .posteriors
                    .push((decode_posterior_key(&k)?, decode_row(&k, &v)?)),
                Some(b'd') => snap.decisions.push(decode_decision(&k, &v)?),
                Some(b'l') => {
                    let (campaign, arm) = decode_linear_key(&k)?;
                    snap.linear.push((campaign, arm, decode_linear(&k, &v)?));
                }
                _ => return Err(corrupt(&k, "unknown key prefix")),
            }
        }
        Ok(snap)
    }

    fn put_campaign(&self, spec: &CampaignSpec) -> Result<(), StoreError> {
        let v = serde_json::to_vec(spec).map_err(|e| corrupt(spec.id.as_bytes(), e))?;
        self.db.insert(prefixed(b'c', &spec.id), v)?;
        Ok(())
    }

    fn delete_campaign(&self, id: &str, decisions: &[String]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.remove(prefixed(b'c', id));
        let mut prefix = vec![b'p'];
        push_str(&mut prefix, id);
        for k in self.db.scan_prefix(&prefix).keys() {
            batch.remove(k?);
        }
        prefix[0] = b'l';
        for k in self.db.scan_prefix(&prefix).keys() {
            batch.remove(k?);
        }
        for d in decisions {
            batch.remove(prefixed(b'd', d));
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn put_decision(&self, d: &DecisionRecord) -> Result<(), StoreError> {
        self.db.insert(prefixed(b'd', &d.id), encode_decision(d))?;
        Ok(())
    }

    fn record_outcome(
        &self,
        key: &PosteriorKey,
        row: &PosteriorRow,
        linear: Option<&LinearRow>,
        decision: &DecisionRecord,
    ) -> Result<(), StoreError> {
        // Order matters: decision first, then the rows (see `store` docs).
        self.db
            .insert(prefixed(b'd', &decision.id), encode_decision(decision))?;
        self.put_posterior(key, row)?;
        if let Some(l) = linear {
            self.put_linear(&key.campaign, key.arm, l)?;
        }
        Ok(())
    }

    fn put_linear(&self, campaign: &str, arm: u32, row: &LinearRow) -> Result<(), StoreError> {
        let mut k = vec![b'l'];
        push_str(&mut k, campaign);
        k.extend_from_slice(&arm.to_be_bytes());
        self.db.insert(k, encode_linear(row))?;
        Ok(())
    }

    fn put_posterior(&self, key: &PosteriorKey, row: &PosteriorRow) -> Result<(), StoreError> {
        self.db
            .insert(encode_posterior_key(key), &encode_row(row)[..])?;
        Ok(())
    }

    fn remove_decision(&self, id: &Arc<str>) -> Result<(), StoreError> {
        self.db.remove(prefixed(b'd', id))?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.data_file.sync_data()?;
        Ok(())
    }
}

fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why: why.to_string(),
    }
}

fn prefixed(tag: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(tag);
    k.extend_from_slice(id.as_bytes());
    k
}

fn push_str(buf: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= u8::MAX as usize);
    buf.push(s.len() as u8);
    buf.extend_from_slice(s.as_bytes());
}

/// Reads a length-prefixed string at `*pos`, advancing it.
fn read_str(key: &[u8], buf: &[u8], pos: &mut usize) -> Result<Arc<str>, StoreError> {
    let len = *buf
        .get(*pos)
        .ok_or_else(|| corrupt(key, "truncated length"))? as usize;
    let bytes = buf
        .get(*pos + 1..*pos + 1 + len)
        .ok_or_else(|| corrupt(key, "truncated string"))?;
    *pos += 1 + len;
    std::str::from_utf8(bytes)
        .map(Arc::from)
        .map_err(|e| corrupt(key, e))
}

fn read_array<const N: usize>(
    key: &[u8],
    buf: &[u8],
    pos: &mut usize,
) -> Result<[u8; N], StoreError> {
    let bytes = buf
        .get(*pos..*pos + N)
        .ok_or_else(|| corrupt(key, "truncated field"))?;
    *pos += N;
    bytes
        .try_into()
        .map_err(|_| corrupt(key, "truncated field"))
}

fn encode_posterior_key(k: &PosteriorKey) -> Vec<u8> {
    let mut buf = Vec::with_capacity(3 + k.campaign.len() + k.segment.len() + 4);
    buf.push(b'p');
    push_str(&mut buf, &k.campaign);
    push_str(&mut buf, &k.segment);
    buf.extend_from_slice(&k.arm.to_be_bytes());
    buf
}

fn decode_posterior_key(key: &[u8]) -> Result<PosteriorKey, StoreError> {
    let mut pos = 1;
    let campaign = read_str(key, key, &mut pos)?;
    let segment = read_str(key, key, &mut pos)?;
    let arm = u32::from_be_bytes(read_array(key, key, &mut pos)?);
    if pos != key.len() {
        return Err(corrupt(key, "trailing bytes in posterior key"));
    }
    Ok(PosteriorKey {
        campaign,
        segment,
        arm,
    })
}

fn encode_row(r: &PosteriorRow) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&r.counts.n.to_be_bytes());
    v[8..16].copy_from_slice(&r.counts.sum.to_bits().to_be_bytes());
    v[16..].copy_from_slice(&r.through.to_be_bytes());
    v
}

fn decode_row(key: &[u8], v: &[u8]) -> Result<PosteriorRow, StoreError> {
    let mut pos = 0;
    let n = u64::from_be_bytes(read_array(key, v, &mut pos)?);
    let sum = f64::from_bits(u64::from_be_bytes(read_array(key, v, &mut pos)?));
    let through = u64::from_be_bytes(read_array(key, v, &mut pos)?);
    Ok(PosteriorRow {
        counts: ArmCounts { n, sum },
        through,
    })
}

fn encode_decision(d: &DecisionRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(48 + 2 + d.campaign.len() + d.segment.len());
    v.push(match d.status {
        DecisionStatus::Pending => 0,
        DecisionStatus::Rewarded => 1,
        DecisionStatus::Expired => 2,
    });
    v.extend_from_slice(&d.arm.to_be_bytes());
    v.extend_from_slice(&d.propensity.to_bits().to_be_bytes());
    v.extend_from_slice(&d.created_ms.to_be_bytes());
    v.extend_from_slice(&d.deadline_ms.to_be_bytes());
    v.extend_from_slice(&d.outcome_seq.to_be_bytes());
    v.extend_from_slice(&d.reward.to_bits().to_be_bytes());
    push_str(&mut v, &d.campaign);
    push_str(&mut v, &d.segment);
    let context = d.context.as_deref().unwrap_or_default();
    v.extend_from_slice(&(context.len() as u16).to_be_bytes());
    for x in context {
        v.extend_from_slice(&x.to_bits().to_be_bytes());
    }
    v
}

fn read_f64(key: &[u8], buf: &[u8], pos: &mut usize) -> Result<f64, StoreError> {
    Ok(f64::from_bits(u64::from_be_bytes(read_array(
        key, buf, pos,
    )?)))
}

fn read_f64s(key: &[u8], buf: &[u8], pos: &mut usize, n: usize) -> Result<Vec<f64>, StoreError> {
    (0..n).map(|_| read_f64(key, buf, pos)).collect()
}

fn decode_linear_key(key: &[u8]) -> Result<(Arc<str>, u32), StoreError> {
    let mut pos = 1;
    let campaign = read_str(key, key, &mut pos)?;
    let arm = u32::from_be_bytes(read_array(key, key, &mut pos)?);
    Ok((campaign, arm))
}

fn encode_linear(r: &LinearRow) -> Vec<u8> {
    let a = &r.arm;
    let mut v = Vec::with_capacity(34 + 8 * (a.a.len() + a.b.len() + a.a_inv.len()));
    v.extend_from_slice(&(a.dim() as u16).to_be_bytes());
    v.extend_from_slice(&a.updates_since_refactor.to_be_bytes());
    v.extend_from_slice(&a.pulls.to_be_bytes());
    v.extend_from_slice(&a.reward_sum.to_bits().to_be_bytes());
    v.extend_from_slice(&r.through.to_be_bytes());
    for x in a.a.iter().chain(&a.b).chain(&a.a_inv) {
        v.extend_from_slice(&x.to_bits().to_be_bytes());
    }
    v
}

fn decode_linear(key: &[u8], v: &[u8]) -> Result<LinearRow, StoreError> {
    let mut pos = 0;
    let d = u16::from_be_bytes(read_array(key, v, &mut pos)?) as usize;
    let updates_since_refactor = u32::from_be_bytes(read_array(key, v, &mut pos)?);
    let pulls = u64::from_be_bytes(read_array(key, v, &mut pos)?);
    let reward_sum = read_f64(key, v, &mut pos)?;
    let through = u64::from_be_bytes(read_array(key, v, &mut pos)?);
    let arm = LinearArm {
        a: read_f64s(key, v, &mut pos, d * d)?,
        b: read_f64s(key, v, &mut pos, d)?,
        a_inv: read_f64s(key, v, &mut pos, d * d)?,
        updates_since_refactor,
        pulls,
        reward_sum,
    };
    if !arm.is_well_formed() || pos != v.len() {
        return Err(corrupt(key, "malformed linear statistics"));
    }
    Ok(LinearRow { arm, through })
}

fn decode_decision(key: &[u8], v: &[u8]) -> Result<DecisionRecord, StoreError> {
    let id: Arc<str> = std::str::from_utf8(&key[1..])
        .map(Arc::from)
        .map_err(|e| corrupt(key, e))?;
    let mut pos = 0;
    let [status] = read_array::<1>(key, v, &mut pos)?;
    let status = match status {
        0 => DecisionStatus::Pending,
        1 => DecisionStatus::Rewarded,
        2 => DecisionStatus::Expired,
        other => return Err(corrupt(key, format!("unknown decision status {other}"))),
    };
    let arm = u32::from_be_bytes(read_array(key, v, &mut pos)?);
    let propensity = f64::from_bits(u64::from_be_bytes(read_array(key, v, &mut pos)?));
    let created_ms = u64::from_be_bytes(read_array(key, v, &mut pos)?);
    let deadline_ms = u64::from_be_bytes(read_array(key, v, &mut pos)?);
    let outcome_seq = u64::from_be_bytes(read_array(key, v, &mut pos)?);
    let reward = f64::from_bits(u64::from_be_bytes(read_array(key, v, &mut pos)?));
    let campaign = read_str(key, v, &mut pos)?;
    let segment = read_str(key, v, &mut pos)?;
    let n = u16::from_be_bytes(read_array(key, v, &mut pos)?) as usize;
    let context = (n > 0)
        .then(|| read_f64s(key, v, &mut pos, n).map(Arc::from))
        .transpose()?;
    Ok(DecisionRecord {
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
    })
}
