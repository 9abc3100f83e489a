//! What a replica ships and what it merges: the engine's statistics as
//! named additive totals.
//!
//! Every statistic the policies learn from is a sum, so a campaign's
//! learning on several replicas is the field-wise sum of what each learned.
//! [`Engine::replica_totals`] reads this replica's own sums as a map from a
//! field name to a number; `replica` ships them to Redis, which keeps the
//! merged totals; [`Engine::apply_remote`] takes the merged totals less this
//! replica's part (the other replicas' contribution) and keeps it beside
//! the own statistics, which stay what is persisted. The merge step is
//! this module alone: the policies see one [`Evidence`] per arm.
//!
//! Fields (segments by name and arms by id, since numbers are local; `␟`
//! is U+001F, which neither may contain):
//!
//! | field | value |
//! |---|---|
//! | `t␟seg␟arm␟n` | resolved outcomes |
//! | `t␟seg␟arm␟y` | their reward sum |
//! | `t␟seg␟arm␟dn@L`, `…␟dy@L` | forward-decayed sums relative to landmark `L` (decaying campaigns) |
//! | `t␟seg␟arm␟p@B`, `…␟p@old` | pending decisions created in bucket `B` (older than the ring) |
//! | `l␟arm␟a@i.j` (i ≤ j), `l␟arm␟b@i` | a contextual arm's `A − λI` (resolved part) and `b` |
//! | `l␟arm␟n`, `…␟y`, `…␟yy` | its pulls, Σr, Σr² |
//! | `l␟arm␟p@B␟c`, `l␟arm␟p@B␟a@i.j` | its pending decisions of bucket `B`: count and Σ x xᵀ |
//! | `g␟i` | bin i of the conversion-delay histogram (reward-weighted counts) |
//!
//! What does not simply add up:
//! - decay: forward-decayed sums are additive once they share a landmark;
//!   each is shipped with its own and rebased to the reader's
//!   ([`super::learning::Learning::rebase`]);
//! - pending decisions are counts per creation bucket, weighted when read by
//!   the reader's delay distribution, like its own;
//! - LinUCB's `A⁻¹`: recomputed locally from the merged `A` (the other
//!   replicas' pending decisions enter it with their current weights);
//! - the pooled prior: computed from the merged evidence of every segment;
//! - the conversion-delay distribution is a histogram of reward-weighted
//!   delays (`g␟i`, bin i): additive, merged like the rest, so every
//!   replica weighs pending decisions alike.

use super::learning::RemoteTally;
use super::Engine;
use crate::campaign::PolicySpec;
use crate::error::{Error, Result};
use crate::policy::exposure::BucketWeights;
use crate::policy::pooling::Evidence;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A campaign's statistics as named sums.
pub type Totals = BTreeMap<String, f64>;

const SEP: char = '\u{1f}';

/// The other replicas' part of a contextual arm, as merged into it.
#[derive(Debug, Clone, Default)]
pub struct LinearRemote {
    /// `d*d`: what was added to the arm's `A` (resolved, plus pending
    /// decisions with their weight when it was added).
    pub applied_a: Vec<f64>,
    pub applied_b: Vec<f64>,
    pub pulls: u64,
    pub reward_sum: f64,
}

fn tally_field(seg: &str, arm: &str, comp: &str) -> String {
    format!("t{SEP}{seg}{SEP}{arm}{SEP}{comp}")
}

fn linear_field(arm: &str, comp: &str) -> String {
    format!("l{SEP}{arm}{SEP}{comp}")
}

fn put(out: &mut Totals, field: String, v: f64) {
    if v != 0.0 && v.is_finite() {
        out.insert(field, v);
    }
}

/// A parsed field name.
enum Field<'a> {
    Tally {
        seg: &'a str,
        arm: &'a str,
        comp: &'a str,
    },
    Linear {
        arm: &'a str,
        comp: &'a str,
    },
    /// A bin of the conversion-delay distribution.
    Delay(usize),
}

fn parse_field(f: &str) -> Option<Field<'_>> {
    let (kind, rest) = f.split_once(SEP)?;
    match kind {
        "t" => {
            let mut parts = rest.splitn(3, SEP);
            Some(Field::Tally {
                seg: parts.next()?,
                arm: parts.next()?,
                comp: parts.next()?,
            })
        }
        "l" => {
            let (arm, comp) = rest.split_once(SEP)?;
            Some(Field::Linear { arm, comp })
        }
        "g" => Some(Field::Delay(rest.parse().ok()?)),
        _ => None,
    }
}

/// `"i.j"` → (i, j).
fn pair(s: &str) -> Option<(usize, usize)> {
    let (i, j) = s.split_once('.')?;
    Some((i.parse().ok()?, j.parse().ok()?))
}

impl Engine {
    /// Every campaign's own statistics as named sums (see the module doc),
    /// in id order.
    pub fn replica_totals(&self) -> Vec<(Arc<str>, Totals)> {
        let mut cells: Vec<_> = self.campaigns.read().by_id.values().cloned().collect();
        cells.sort_by(|a, b| a.id.cmp(&b.id));
        cells
            .into_iter()
            .filter_map(|cell| {
                let st = cell.state.lock();
                if st.dead {
                    return None;
                }
                let mut out = Totals::new();
                let decays = st.learning.decays();
                let landmark = st.learning.landmark_ms();
                for seg in &st.segments {
                    for (a, t) in seg.arms.iter().enumerate() {
                        let Some(arm) = st.spec.arms.get(a) else {
                            continue;
                        };
                        let f = |c: &str| tally_field(&seg.name, &arm.id, c);
                        put(&mut out, f("n"), t.counts.n as f64);
                        put(&mut out, f("y"), t.counts.sum);
                        if decays {
                            put(&mut out, f(&format!("dn@{landmark}")), t.decayed.n);
                            put(&mut out, f(&format!("dy@{landmark}")), t.decayed.y);
                        }
                        for (bucket, n) in t.buckets.entries() {
                            let c = match bucket {
                                Some(b) => format!("p@{b}"),
                                None => "p@old".to_string(),
                            };
                            put(&mut out, f(&c), f64::from(n));
                        }
                    }
                }
                let remote_delay = &st.delay_remote;
                for (i, b) in st.learning.delay.bins().iter().enumerate() {
                    let own = b - remote_delay.get(i).copied().unwrap_or(0.0);
                    put(&mut out, format!("g{SEP}{i}"), own);
                }
                let lambda = match st.spec.policy {
                    PolicySpec::LinUcb { lambda, .. } | PolicySpec::LinTs { lambda, .. } => {
                        Some(lambda)
                    }
                    _ => None,
                };
                if let Some(lambda) = lambda {
                    for (a, arm) in st.linear.iter().enumerate() {
                        let Some(spec) = st.spec.arms.get(a) else {
                            continue;
                        };
                        let d = arm.dim();
                        let mut own = arm.a_minus_lambda_i(lambda);
                        let mut b = arm.b.clone();
                        if let Some(r) = st.linear_remote.get(a) {
                            for (x, y) in own.iter_mut().zip(&r.applied_a) {
                                *x -= y;
                            }
                            for (x, y) in b.iter_mut().zip(&r.applied_b) {
                                *x -= y;
                            }
                        }
                        let f = |c: &str| linear_field(&spec.id, c);
                        for i in 0..d {
                            for j in i..d {
                                put(&mut out, f(&format!("a@{i}.{j}")), own[i * d + j]);
                            }
                            put(&mut out, f(&format!("b@{i}")), b[i]);
                        }
                        put(&mut out, f("n"), arm.pulls as f64);
                        put(&mut out, f("y"), arm.reward_sum);
                        put(&mut out, f("yy"), arm.reward_sq_sum);
                        for (bucket, p) in &arm.pending {
                            put(
                                &mut out,
                                f(&format!("p@{bucket}{SEP}c")),
                                f64::from(p.count),
                            );
                            for i in 0..d {
                                for j in i..d {
                                    put(
                                        &mut out,
                                        f(&format!("p@{bucket}{SEP}a@{i}.{j}")),
                                        p.xx[i * d + j],
                                    );
                                }
                            }
                        }
                    }
                }
                Some((cell.id.clone(), out))
            })
            .collect()
    }

    /// Replaces what campaign `id` knows of the other replicas by `others`
    /// (merged totals less this replica's own, as shipped). Fields of
    /// segments this replica has not met create them (within the segment
    /// limit); fields of arms it does not know yet are skipped (the
    /// definition follows within a sync).
    pub fn apply_remote(&self, id: &str, others: &Totals) -> Result<()> {
        let cell = self.campaign(id)?;
        let now = self.clock.now_ms();
        let mut st = cell.state.lock();
        if st.dead {
            return Err(Error::NotFound(format!("campaign {id:?}")));
        }
        let st = &mut *st;
        let arm_index: BTreeMap<&str, usize> = st
            .spec
            .arms
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let arms = st.spec.arms.len();
        // Per segment name, per arm: the remote tally and its buckets (in
        // bucket order, so the ring keeps the newest).
        let mut tallies: BTreeMap<&str, Vec<(RemoteTally, Buckets)>> = BTreeMap::new();
        let mut linear: BTreeMap<usize, LinearParts> = BTreeMap::new();
        let mut delay = vec![0.0; st.learning.delay.bins().len()];
        for (field, &v) in others {
            if !v.is_finite() {
                continue;
            }
            match parse_field(field) {
                Some(Field::Tally { seg, arm, comp }) => {
                    let Some(&a) = arm_index.get(arm) else {
                        continue;
                    };
                    let slot = &mut tallies
                        .entry(seg)
                        .or_insert_with(|| vec![Default::default(); arms])[a];
                    let r = &mut slot.0;
                    if comp == "n" {
                        r.n = v.round().max(0.0) as u64;
                    } else if comp == "y" {
                        r.sum = v;
                    } else if let Some(l) = comp.strip_prefix("dn@") {
                        if let Ok(l) = l.parse::<u64>() {
                            r.decayed.n += st.learning.rebase(Evidence { n: v, y: 0.0 }, l).n;
                        }
                    } else if let Some(l) = comp.strip_prefix("dy@") {
                        if let Ok(l) = l.parse::<u64>() {
                            r.decayed.y += st.learning.rebase(Evidence { n: v, y: 0.0 }, l).n;
                        }
                    } else if let Some(b) = comp.strip_prefix("p@") {
                        let n = v.round().clamp(0.0, f64::from(u32::MAX)) as u32;
                        let bucket = if b == "old" {
                            None
                        } else {
                            match b.parse::<u64>() {
                                Ok(b) => Some(b),
                                Err(_) => continue,
                            }
                        };
                        slot.1.push((bucket, n));
                    }
                }
                Some(Field::Delay(i)) => {
                    if let Some(slot) = delay.get_mut(i) {
                        *slot = v.max(0.0);
                    }
                }
                Some(Field::Linear { arm, comp }) => {
                    let Some(&a) = arm_index.get(arm) else {
                        continue;
                    };
                    linear.entry(a).or_default().add(comp, v);
                }
                None => {}
            }
        }
        // Segments this replica has not met.
        for name in tallies.keys() {
            if !st.segment_index.contains_key(*name) {
                if crate::campaign::validate_segment(name).is_err() {
                    continue;
                }
                if let Some((no, true)) =
                    st.intern_segment(name, crate::campaign::limits::MAX_SEGMENTS)
                {
                    let uid = cell.uid;
                    let name: Arc<str> = st.segments[no as usize].name.clone();
                    self.append(|| crate::journal::Change::Segment {
                        uid,
                        segment: no,
                        name,
                    });
                }
            }
        }
        let mut aggregate = vec![RemoteTally::default(); arms];
        let mut agg_buckets: Vec<Vec<(Option<u64>, u32)>> = vec![Vec::new(); arms];
        for seg in st.segments.iter_mut() {
            if seg.arms.len() < arms {
                seg.arms.resize(arms, Default::default());
            }
            let incoming = tallies.remove(&*seg.name);
            for a in 0..arms {
                let (mut r, mut buckets) =
                    incoming.as_ref().map(|v| v[a].clone()).unwrap_or_default();
                buckets.sort_by_key(|(b, _)| b.map_or(0, |b| b + 1));
                for &(b, n) in &buckets {
                    r.buckets.add_n(b, n);
                    r.pending += u64::from(n);
                }
                let g = &mut aggregate[a];
                g.n += r.n;
                g.sum += r.sum;
                g.decayed.n += r.decayed.n;
                g.decayed.y += r.decayed.y;
                g.pending += r.pending;
                agg_buckets[a].extend(buckets);
                seg.arms[a].remote = r;
            }
        }
        for (a, g) in aggregate.iter_mut().enumerate() {
            agg_buckets[a].sort_by_key(|(b, _)| b.map_or(0, |b| b + 1));
            for &(b, n) in &agg_buckets[a] {
                g.buckets.add_n(b, n);
            }
            if let Some(t) = st.aggregate.get_mut(a) {
                t.remote = *g;
            }
        }
        // Contextual arms: move A and b to the new remote part.
        if !st.linear.is_empty() {
            let weights = BucketWeights::at_with(
                now,
                &st.learning.delay,
                st.learning.half_life_ms(),
                super::learning::Learning::LINEAR_BUCKETS,
            );
            st.linear_remote
                .resize(st.linear.len(), LinearRemote::default());
            for a in 0..st.linear.len() {
                let d = st.linear[a].dim();
                let parts = linear.remove(&a).unwrap_or_default();
                let (new_a, new_b) = parts.effective(d, |b| weights.weight(b));
                let r = &mut st.linear_remote[a];
                if r.applied_a.len() != d * d {
                    r.applied_a = vec![0.0; d * d];
                    r.applied_b = vec![0.0; d];
                }
                let da: Vec<f64> = new_a.iter().zip(&r.applied_a).map(|(x, y)| x - y).collect();
                let db: Vec<f64> = new_b.iter().zip(&r.applied_b).map(|(x, y)| x - y).collect();
                if da.iter().chain(&db).any(|v| *v != 0.0)
                    && st.linear[a].merge_delta(&da, &db).is_ok()
                {
                    r.applied_a = new_a;
                    r.applied_b = new_b;
                }
                r.pulls = parts.pulls.round().max(0.0) as u64;
                r.reward_sum = parts.reward_sum;
            }
        }
        let mut applied = std::mem::take(&mut st.delay_remote);
        st.learning.merge_remote_delay(&mut applied, delay);
        st.delay_remote = applied;
        st.remote_changed(now);
        Ok(())
    }
}

/// Pending counts by creation bucket (`None`: older than the ring).
type Buckets = Vec<(Option<u64>, u32)>;
/// The upper triangle of a symmetric matrix, by (i, j) with i ≤ j.
type Upper = BTreeMap<(usize, usize), f64>;

/// The other replicas' fields of one contextual arm.
#[derive(Debug, Default)]
struct LinearParts {
    a: BTreeMap<(usize, usize), f64>,
    b: BTreeMap<usize, f64>,
    pulls: f64,
    reward_sum: f64,
    /// bucket → (count, upper triangle of Σ x xᵀ).
    pending: BTreeMap<u64, (f64, Upper)>,
}

impl LinearParts {
    fn add(&mut self, comp: &str, v: f64) {
        if let Some(ij) = comp.strip_prefix("a@").and_then(pair) {
            self.a.insert(ij, v);
        } else if let Some(i) = comp.strip_prefix("b@").and_then(|s| s.parse().ok()) {
            self.b.insert(i, v);
        } else if comp == "n" {
            self.pulls = v;
        } else if comp == "y" {
            self.reward_sum = v;
        } else if let Some(rest) = comp.strip_prefix("p@") {
            let Some((bucket, what)) = rest.split_once(SEP) else {
                return;
            };
            let Ok(bucket) = bucket.parse::<u64>() else {
                return;
            };
            let entry = self.pending.entry(bucket).or_default();
            if what == "c" {
                entry.0 = v;
            } else if let Some(ij) = what.strip_prefix("a@").and_then(pair) {
                entry.1.insert(ij, v);
            }
        }
    }

    /// The `A` part (symmetric, `d*d`) and `b` these fields add now, the
    /// pending buckets weighted by `weight`.
    fn effective(&self, d: usize, weight: impl Fn(u64) -> f64) -> (Vec<f64>, Vec<f64>) {
        let mut a = vec![0.0; d * d];
        let set = |m: &BTreeMap<(usize, usize), f64>, w: f64, a: &mut Vec<f64>| {
            for (&(i, j), &v) in m {
                if i < d && j < d && i <= j {
                    a[i * d + j] += w * v;
                    if i != j {
                        a[j * d + i] += w * v;
                    }
                }
            }
        };
        set(&self.a, 1.0, &mut a);
        for (&bucket, (count, xx)) in &self.pending {
            if *count > 0.0 {
                set(xx, weight(bucket).clamp(0.0, 1.0), &mut a);
            }
        }
        let mut b = vec![0.0; d];
        for (&i, &v) in &self.b {
            if let Some(slot) = b.get_mut(i) {
                *slot = v;
            }
        }
        (a, b)
    }
}
