//! What an arm's statistics are worth as evidence right now: resolved
//! outcomes, pending decisions as fractional trials by the learned delay
//! distribution, older evidence discounted under decay.
//!
//! The rules, in one place (the policies only see the resulting
//! [`Evidence`]):
//! - a resolved outcome of reward r is one trial and r successes;
//! - a pending decision of age e is G(e) of a trial and no success, G the
//!   campaign's learned conversion-delay distribution (`policy::delay`);
//! - with a half-life h, everything a decision created at t contributes is
//!   weighted 2^(−(now − t)/h). Resolved sums are kept as forward-decayed
//!   sums, Σ w·2^((t − L)/h) for a landmark L, and read as that times
//!   2^(−(now − L)/h) (Cormode, Shkapenyuk, Srivastava & Xu 2009, "Forward
//!   Decay: A Practical Time Decay Model for Streaming Systems"): additive,
//!   so replicas can merge them, and O(1) to read.
//!
//! Guarded by the campaign's lock, like the rest of its state.

use crate::campaign::CampaignSpec;
use crate::journal::format::{DecayedSums, Row};
use crate::policy::delay::DelayModel;
use crate::policy::exposure::{bucket_ms, bucket_of, BucketWeights, PendingBuckets};
use crate::policy::pooling::{Evidence, PoolSums};
use crate::policy::thompson::ArmCounts;

/// Exponents of the forward-decay weights stay below this many half-lives
/// (2^512 is far inside f64's range) before the landmark moves.
const LANDMARK_SPAN_HALF_LIVES: f64 = 256.0;

/// Statistics of one arm in one segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArmTally {
    /// Resolved outcomes, undecayed (persisted; what `pulls` reports).
    pub counts: ArmCounts,
    /// Decisions waiting for their reward.
    pub pending: u64,
    /// The pending decisions by creation bucket.
    pub buckets: PendingBuckets,
    /// Forward-decayed resolved sums, relative to the landmark (decaying
    /// campaigns only).
    pub decayed: Evidence,
    /// What the other replicas learned, as last pulled (zero on one node).
    pub remote: RemoteTally,
}

/// The other replicas' statistics of one arm in one segment (see
/// `engine::replicated`): the same sums as an [`ArmTally`]'s own, read
/// from the merged totals less this replica's part. Not persisted: a
/// restarted replica pulls them again.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteTally {
    pub n: u64,
    pub sum: f64,
    /// Forward-decayed, relative to this campaign's landmark.
    pub decayed: Evidence,
    pub pending: u64,
    pub buckets: PendingBuckets,
}

impl ArmTally {
    /// Resolved outcomes, this replica's and the others'.
    pub fn total_n(&self) -> u64 {
        self.counts.n.saturating_add(self.remote.n)
    }

    /// Pending decisions, this replica's and the others'.
    pub fn total_pending(&self) -> u64 {
        self.pending.saturating_add(self.remote.pending)
    }

    /// Reward sum, this replica's and the others'.
    pub fn total_sum(&self) -> f64 {
        self.counts.sum + self.remote.sum
    }
}

/// A campaign's evidence rules and the state they need.
#[derive(Debug, Clone)]
pub struct Learning {
    pub delay: DelayModel,
    delay_dirty: bool,
    half_life_ms: Option<f64>,
    /// Forward-decay landmark, ms since the epoch.
    landmark_ms: u64,
    bucket_ms: u64,
    weights: Option<(u64, BucketWeights)>,
    /// When the contextual arms' pending weights were last recomputed.
    linear_weighed_ms: u64,
    /// Per arm, the named segments' evidence as of their last refresh
    /// (change it through [`Self::replace_pooled`] and [`Self::set_pools`],
    /// which keep [`Self::pooled_n`]).
    pub pools: Vec<PoolSums>,
    /// Σ over arms of the pools' trials.
    pooled_n: f64,
    /// Pool updates since the sums were last recomputed from scratch.
    pub pool_updates: usize,
}

impl Learning {
    pub fn new(spec: &CampaignSpec, now_ms: u64) -> Self {
        let window = u64::from(spec.reward_timeout_seconds) * 1000;
        let half_life_ms = spec.decay_half_life_seconds.map(|h| f64::from(h) * 1000.0);
        let mut l = Learning {
            delay: DelayModel::new(window),
            delay_dirty: false,
            half_life_ms,
            landmark_ms: 0,
            bucket_ms: bucket_ms(window),
            weights: None,
            linear_weighed_ms: 0,
            pools: vec![PoolSums::default(); spec.arms.len()],
            pooled_n: 0.0,
            pool_updates: 0,
        };
        l.landmark_ms = l.landmark_for(now_ms);
        l
    }

    pub fn decays(&self) -> bool {
        self.half_life_ms.is_some()
    }

    pub fn half_life_ms(&self) -> Option<f64> {
        self.half_life_ms
    }

    pub fn widen(&mut self, arms: usize) {
        self.pools.resize(arms, PoolSums::default());
    }

    /// Replaces a segment's evidence `old` for `arm` in the pools by `new`.
    pub fn replace_pooled(&mut self, arm: usize, old: Evidence, new: Evidence) {
        let pool = &mut self.pools[arm];
        let before = pool.n;
        pool.replace(old, new);
        self.pooled_n += pool.n - before;
    }

    /// Sets the pools (recomputed from scratch).
    pub fn set_pools(&mut self, pools: Vec<PoolSums>) {
        self.pooled_n = pools.iter().map(|p| p.n).sum();
        self.pools = pools;
    }

    /// Σ over arms of the pooled trials.
    pub fn pooled_n(&self) -> f64 {
        self.pooled_n
    }

    fn landmark_for(&self, now_ms: u64) -> u64 {
        match self.half_life_ms {
            Some(h) => {
                let span = (h * LANDMARK_SPAN_HALF_LIVES) as u64;
                now_ms / span.max(1) * span.max(1)
            }
            None => 0,
        }
    }

    /// The creation bucket of a decision.
    pub fn bucket(&self, created_ms: u64) -> u64 {
        bucket_of(created_ms, self.bucket_ms)
    }

    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    /// Forward-decay weight of an event at `t_ms`.
    fn weight_at(&self, t_ms: u64) -> f64 {
        match self.half_life_ms {
            Some(h) => ((t_ms as f64 - self.landmark_ms as f64) / h).exp2(),
            None => 1.0,
        }
    }

    /// The factor that turns forward-decayed sums into their value at `now_ms`.
    pub fn read_factor(&self, now_ms: u64) -> f64 {
        match self.half_life_ms {
            Some(h) => (-(now_ms as f64 - self.landmark_ms as f64) / h).exp2(),
            None => 1.0,
        }
    }

    /// Moves the landmark when the weights would grow too large, rescaling
    /// every forward-decayed sum (`tallies` are all of the campaign's).
    pub fn maybe_move_landmark<'a>(
        &mut self,
        now_ms: u64,
        tallies: impl Iterator<Item = &'a mut ArmTally>,
    ) {
        let Some(h) = self.half_life_ms else {
            return;
        };
        if (now_ms as f64 - self.landmark_ms as f64) < 2.0 * h * LANDMARK_SPAN_HALF_LIVES {
            return;
        }
        let next = self.landmark_for(now_ms);
        let factor = (-(next as f64 - self.landmark_ms as f64) / h).exp2();
        for t in tallies {
            t.decayed.n *= factor;
            t.decayed.y *= factor;
            t.remote.decayed.n *= factor;
            t.remote.decayed.y *= factor;
        }
        self.landmark_ms = next;
    }

    /// What a pending decision of each recent bucket is worth at `now_ms`
    /// (cached; recomputed when time moved by 1/64 of a bucket).
    pub fn weights(&mut self, now_ms: u64) -> &BucketWeights {
        if self.delay_dirty {
            self.delay.rebuild();
            self.delay_dirty = false;
            self.weights = None;
        }
        let fresh = self
            .weights
            .as_ref()
            .is_some_and(|(at, _)| now_ms >= *at && now_ms - *at < (self.bucket_ms / 64).max(1));
        if !fresh {
            self.weights = Some((
                now_ms,
                BucketWeights::at(now_ms, &self.delay, self.half_life_ms),
            ));
        }
        match &self.weights {
            Some((_, w)) => w,
            None => unreachable!("set above"),
        }
    }

    /// Contextual campaigns split the window into this many buckets (each
    /// arm keeps a d×d matrix per bucket).
    pub const LINEAR_BUCKETS: usize = 4;

    /// The contextual bucket of a decision.
    pub fn linear_bucket(&self, created_ms: u64) -> u64 {
        bucket_of(
            created_ms,
            (self.delay.window_ms() / Self::LINEAR_BUCKETS as u64).max(1),
        )
    }

    /// The contextual arms' pending weights at `now_ms`, when it is time to
    /// recompute them (every 1/16 of the window), else `None`.
    pub fn linear_weights_due(&mut self, now_ms: u64) -> Option<BucketWeights> {
        let every = (self.delay.window_ms() / 16).max(1);
        if now_ms < self.linear_weighed_ms + every && self.linear_weighed_ms != 0 {
            return None;
        }
        self.linear_weighed_ms = now_ms.max(1);
        if self.delay_dirty {
            self.delay.rebuild();
            self.delay_dirty = false;
            self.weights = None;
        }
        Some(BucketWeights::at_with(
            now_ms,
            &self.delay,
            self.half_life_ms,
            Self::LINEAR_BUCKETS,
        ))
    }

    /// The evidence of one tally at `now_ms` (weights from [`Self::weights`]).
    /// Includes what the other replicas learned ([`ArmTally::remote`]).
    pub fn evidence(&self, t: &ArmTally, w: &BucketWeights, now_ms: u64) -> Evidence {
        let mut pending = t.buckets.exposure(w);
        if t.remote.pending > 0 {
            pending += t.remote.buckets.exposure(w);
        }
        if self.decays() {
            let f = self.read_factor(now_ms);
            Evidence {
                n: (t.decayed.n + t.remote.decayed.n) * f + pending,
                y: (t.decayed.y + t.remote.decayed.y) * f,
            }
        } else {
            Evidence {
                n: t.total_n() as f64 + pending,
                y: t.total_sum(),
            }
        }
    }

    /// The landmark forward-decayed sums are relative to, ms since the epoch.
    pub fn landmark_ms(&self) -> u64 {
        self.landmark_ms
    }

    /// Rescales forward-decayed sums relative to `from_ms` to this
    /// campaign's landmark.
    pub fn rebase(&self, e: Evidence, from_ms: u64) -> Evidence {
        match self.half_life_ms {
            Some(h) => {
                let f = ((from_ms as f64 - self.landmark_ms as f64) / h).exp2();
                Evidence {
                    n: e.n * f,
                    y: e.y * f,
                }
            }
            None => e,
        }
    }

    /// Counts a new pending decision.
    pub fn add_pending(&self, t: &mut ArmTally, created_ms: u64) {
        t.pending += 1;
        t.buckets.add(self.bucket(created_ms));
    }

    /// Resolves a pending decision with `reward`.
    pub fn resolve(&self, t: &mut ArmTally, created_ms: u64, reward: f64) {
        t.pending = t.pending.saturating_sub(1);
        t.buckets.remove(self.bucket(created_ms));
        t.counts.add(reward);
        if self.decays() {
            let w = self.weight_at(created_ms);
            t.decayed.n += w;
            t.decayed.y += w * reward;
        }
    }

    /// Replaces the other replicas' part of the delay distribution
    /// (`remote`: their bin counts; `applied`: the part merged so far,
    /// which becomes `remote`).
    pub fn merge_remote_delay(&mut self, applied: &mut Vec<f64>, remote: Vec<f64>) {
        let mut bins = self.delay.bins().to_vec();
        if remote.len() != bins.len() || remote.iter().any(|b| !(b.is_finite() && *b >= 0.0)) {
            return;
        }
        applied.resize(bins.len(), 0.0);
        for ((b, old), new) in bins.iter_mut().zip(applied.iter()).zip(&remote) {
            *b = (*b - old + new).max(0.0);
        }
        self.delay = DelayModel::from_bins(self.delay.window_ms(), bins);
        self.weights = None;
        *applied = remote;
    }

    /// Learns the delay of a reward that arrived.
    pub fn observe_delay(&mut self, created_ms: u64, now_ms: u64, reward: f64) {
        if reward > 0.0 {
            self.delay
                .observe(now_ms.saturating_sub(created_ms), reward);
            self.delay_dirty = true;
        }
    }

    /// What the journal persists of a tally at `now_ms`.
    pub fn row(&self, t: &ArmTally, now_ms: u64) -> Row {
        Row {
            counts: t.counts,
            decayed: self.decays().then(|| {
                let f = self.read_factor(now_ms);
                DecayedSums {
                    n: t.decayed.n * f,
                    sum: t.decayed.y * f,
                    as_of_ms: now_ms,
                }
            }),
        }
    }

    /// A tally's resolved sums from a persisted row.
    pub fn load_row(&self, t: &mut ArmTally, row: &Row) {
        t.counts = row.counts;
        let stored = row.decayed.filter(|_| self.decays()).and_then(|d| {
            let back = self.weight_at(d.as_of_ms);
            let e = Evidence {
                n: d.n * back,
                y: d.sum * back,
            };
            // A corrupt file (a time far in the future) must not turn
            // into NaN or infinite evidence: fall back to the counts.
            (e.n.is_finite() && e.y.is_finite() && e.n >= 0.0).then_some(e)
        });
        if let Some(e) = stored {
            t.decayed = e;
        } else if self.decays() {
            // No decayed sums stored (decay switched on later, or data of
            // an older version): the undecayed counts, as of the landmark.
            t.decayed = Evidence {
                n: row.counts.n as f64,
                y: row.counts.sum,
            };
        }
    }
}
