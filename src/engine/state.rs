//! One campaign's in-memory state: its definition, its per-segment arm
//! statistics, its queues of decisions by deadline, its RNG and its cached
//! propensity estimates.
//!
//! Everything here is guarded by the campaign's own mutex
//! ([`CampaignCell::state`]); no method does I/O. The engine (`mod.rs`)
//! decides when to persist what these methods compute.

use super::decisions::DecisionLog;
use crate::campaign::{CampaignSpec, PolicySpec};
use crate::policy::linucb::{self, LinUcbParams, LinearArm};
use crate::policy::thompson::{self, ArmCounts, BetaParams, ThompsonPrior, PROPENSITY_DRAWS};
use crate::policy::{epsilon_greedy, uniform_choice};
use crate::FastMap;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use std::sync::Arc;

/// A campaign shared between the engine's map, the decision index and
/// in-flight requests.
#[derive(Debug)]
pub struct CampaignCell {
    pub id: Arc<str>,
    /// This process's number for the campaign (in its server-generated decision ids).
    pub no: u32,
    /// Guards all of the campaign's mutable state. Held only for in-memory
    /// work and the store write that must be ordered with it; never across
    /// an `.await`.
    pub state: Mutex<CampaignState>,
}

/// Statistics of one arm in one segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArmTally {
    /// Resolved outcomes (persisted).
    pub counts: ArmCounts,
    /// Decisions waiting for their reward (rebuilt from pending decisions).
    pub pending: u64,
    /// Highest outcome sequence number counted in `counts` (persisted with it).
    pub through: u64,
}

/// A cached propensity estimate for one segment and when it was made.
#[derive(Debug, Clone)]
struct PropensityCache {
    /// P(best) per arm index; 0 for retired arms.
    probs: Vec<f64>,
    own_n: u64,
    others_n: u64,
    arms_version: u32,
    /// Decisions answered from this estimate.
    uses: u32,
}

/// A moved posterior is re-estimated only after this many decisions used
/// the previous estimate (bounds the cost in sparse, fast-moving segments).
const MIN_USES_BEFORE_REFRESH: u32 = 8;

#[derive(Debug, Default)]
pub struct Segment {
    pub arms: Vec<ArmTally>,
    cache: Option<PropensityCache>,
}

impl Segment {
    fn total_n(&self) -> u64 {
        self.arms.iter().map(|a| a.counts.n).sum()
    }
}

#[derive(Debug)]
pub struct CampaignState {
    /// `spec.id`, shared with the records written for this campaign.
    pub id: Arc<str>,
    pub spec: CampaignSpec,
    pub rng: SmallRng,
    /// Per arm: the sum over all segments (the campaign-wide posterior).
    pub aggregate: Vec<ArmTally>,
    /// Segment name → its own statistics; "" holds segment-less decisions.
    pub segments: FastMap<Arc<str>, Segment>,
    /// Decisions (pending, and resolved ones still remembered) in deadline order.
    pub log: DecisionLog,
    /// Bumped when arms are added or retired (invalidates propensity caches).
    pub arms_version: u32,
    /// Sequence number of the last outcome learned (see `store` docs).
    pub outcome_seq: u64,
    /// Contextual campaigns: per arm, the ridge statistics (campaign-wide)
    /// and the highest outcome sequence number counted in them.
    pub linear: Vec<LinearArm>,
    pub linear_through: Vec<u64>,
    /// Reused buffers for one decision (no allocation on the hot path).
    scratch_posteriors: Vec<BetaParams>,
    scratch_arms: Vec<usize>,
    scratch_means: Vec<Option<f64>>,
    scratch_leaders: Vec<usize>,
}

/// What `choose` decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub arm: usize,
    pub propensity: f64,
}

impl CampaignState {
    pub fn new(spec: CampaignSpec, rng: SmallRng) -> Self {
        let arms = spec.arms.len();
        let mut st = CampaignState {
            id: spec.id.as_str().into(),
            spec,
            rng,
            aggregate: vec![ArmTally::default(); arms],
            segments: FastMap::default(),
            log: DecisionLog::default(),
            arms_version: 0,
            outcome_seq: 0,
            linear: Vec::new(),
            linear_through: Vec::new(),
            scratch_posteriors: Vec::new(),
            scratch_arms: Vec::new(),
            scratch_means: Vec::new(),
            scratch_leaders: Vec::new(),
        };
        st.widen_linear();
        st
    }

    /// Contextual campaigns: ridge statistics for every arm (new arms start at λI).
    fn widen_linear(&mut self) {
        if let PolicySpec::LinUcb {
            lambda,
            ref features,
            ..
        } = self.spec.policy
        {
            let d = features.len() + 1;
            while self.linear.len() < self.spec.arms.len() {
                self.linear.push(LinearArm::new(d, lambda));
                self.linear_through.push(0);
            }
        }
    }

    fn prior(&self) -> Option<ThompsonPrior> {
        match self.spec.policy {
            PolicySpec::Thompson {
                prior_alpha,
                prior_beta,
                segment_prior_strength,
            } => Some(ThompsonPrior {
                alpha: prior_alpha,
                beta: prior_beta,
                pooling: segment_prior_strength,
            }),
            PolicySpec::Uniform | PolicySpec::EpsilonGreedy { .. } | PolicySpec::LinUcb { .. } => {
                None
            }
        }
    }

    /// The segment's statistics, created (and widened to all arms) on demand.
    pub fn segment_mut(&mut self, name: &str) -> &mut Segment {
        let arms = self.spec.arms.len();
        if !self.segments.contains_key(name) {
            self.segments.insert(name.into(), Segment::default());
        }
        let seg = self
            .segments
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("inserted above"));
        if seg.arms.len() < arms {
            seg.arms.resize(arms, ArmTally::default());
        }
        seg
    }

    /// The segment's name as kept in the map (shared by its decisions, so a
    /// decision does not allocate its own copy), creating the segment if it
    /// is new; `None` if it is new and the campaign already has `limit`.
    pub fn intern_segment(&mut self, name: &str, limit: usize) -> Option<Arc<str>> {
        if let Some((k, _)) = self.segments.get_key_value(name) {
            return Some(k.clone());
        }
        if self.segments.len() >= limit {
            return None;
        }
        let key: Arc<str> = name.into();
        let seg = Segment {
            arms: vec![ArmTally::default(); self.spec.arms.len()],
            cache: None,
        };
        self.segments.insert(key.clone(), seg);
        Some(key)
    }

    /// The posterior of `arm` as seen from `segment` ("" = campaign-wide).
    pub fn posterior(
        &self,
        prior: &ThompsonPrior,
        segment: Option<&Segment>,
        arm: usize,
    ) -> BetaParams {
        let all = self.aggregate[arm].counts;
        match segment {
            None => prior.posterior(&all, None),
            Some(seg) => {
                let own = seg.arms.get(arm).map(|a| a.counts).unwrap_or_default();
                prior.posterior(&own, Some(&all.minus(&own)))
            }
        }
    }

    /// Picks an arm for `segment` (which must exist, see
    /// [`Self::segment_mut`]); `x` is the context vector of a contextual
    /// campaign (intercept first, validated by the engine).
    pub fn choose(&mut self, segment: &str, x: Option<&[f64]>) -> Pick {
        self.scratch_arms.clear();
        self.scratch_arms.extend(self.spec.active_arms());
        debug_assert!(
            !self.scratch_arms.is_empty(),
            "validation keeps one active arm"
        );
        let prior = match self.spec.policy {
            PolicySpec::Thompson { .. } => self.prior(),
            PolicySpec::Uniform => None,
            PolicySpec::EpsilonGreedy { epsilon } => {
                let seg = if segment.is_empty() {
                    None
                } else {
                    self.segments.get(segment)
                };
                let mut means = std::mem::take(&mut self.scratch_means);
                means.clear();
                means.extend(self.scratch_arms.iter().map(|&a| {
                    let t = match seg {
                        None => self.aggregate[a],
                        Some(s) => s.arms.get(a).copied().unwrap_or_default(),
                    };
                    (t.counts.n > 0).then(|| t.counts.sum / t.counts.n as f64)
                }));
                let mut leaders = std::mem::take(&mut self.scratch_leaders);
                let (i, propensity) = epsilon_greedy(&means, epsilon, &mut leaders, &mut self.rng);
                self.scratch_means = means;
                self.scratch_leaders = leaders;
                return Pick {
                    arm: self.scratch_arms[i],
                    propensity,
                };
            }
            PolicySpec::LinUcb {
                alpha,
                lambda,
                epsilon,
                ..
            } => {
                let params = LinUcbParams {
                    alpha,
                    lambda,
                    epsilon,
                };
                let choice = x.and_then(|x| {
                    linucb::choose_ucb(&self.linear, &self.scratch_arms, x, &params, &mut self.rng)
                });
                debug_assert!(choice.is_some(), "the engine validates the context");
                if let Some(c) = choice {
                    return Pick {
                        arm: c.arm,
                        propensity: c.propensity,
                    };
                }
                None
            }
        };
        let Some(prior) = prior else {
            let (i, propensity) = uniform_choice(self.scratch_arms.len(), &mut self.rng);
            return Pick {
                arm: self.scratch_arms[i],
                propensity,
            };
        };
        let mut posts = std::mem::take(&mut self.scratch_posteriors);
        posts.clear();
        let seg = if segment.is_empty() {
            None
        } else {
            self.segments.get(segment)
        };
        posts.extend(
            self.scratch_arms
                .iter()
                .map(|&a| self.posterior(&prior, seg, a)),
        );
        let i = thompson::sample_argmax(&posts, &mut self.rng);
        let arm = self.scratch_arms[i];
        let propensity = self.propensity(segment, &posts, arm);
        self.scratch_posteriors = posts;
        Pick { arm, propensity }
    }

    /// The cached P(best) of `arm` in `segment`, refreshed when the posterior
    /// has moved (the segment's own outcomes grew by 5%, at least one; the
    /// other segments' by 10%) and the estimate has served at least
    /// [`MIN_USES_BEFORE_REFRESH`] decisions, or at once when arms changed.
    /// A refresh costs `PROPENSITY_DRAWS` joint draws (about 100 µs for 10
    /// arms), so its amortised cost per decision is at most 1/8 of that in
    /// a sparse segment and falls towards zero as data accumulates.
    fn propensity(&mut self, segment: &str, posts: &[BetaParams], arm: usize) -> f64 {
        let total: u64 = self.aggregate.iter().map(|a| a.counts.n).sum();
        let version = self.arms_version;
        let seg = self.segment_mut(segment);
        let own_n = if segment.is_empty() {
            total
        } else {
            seg.total_n()
        };
        let others_n = total - own_n.min(total);
        if let Some(c) = seg.cache.as_mut() {
            let moved = own_n >= c.own_n + (c.own_n / 20).max(1)
                || others_n >= c.others_n + (c.others_n / 10).max(1);
            if c.arms_version == version && (!moved || c.uses < MIN_USES_BEFORE_REFRESH) {
                c.uses = c.uses.saturating_add(1);
                return c.probs.get(arm).copied().unwrap_or(1.0);
            }
        }
        let probs = thompson::prob_best(posts, PROPENSITY_DRAWS, &mut self.rng);
        let mut by_arm = vec![0.0; self.spec.arms.len()];
        for (&a, p) in self.scratch_arms.iter().zip(probs) {
            by_arm[a] = p;
        }
        let p = by_arm.get(arm).copied().unwrap_or(1.0);
        self.segment_mut(segment).cache = Some(PropensityCache {
            probs: by_arm,
            own_n,
            others_n,
            arms_version: version,
            uses: 1,
        });
        p
    }

    /// The counts `arm` in `segment` would have after learning `reward`.
    pub fn counts_after(&mut self, segment: &str, arm: usize, reward: f64) -> ArmCounts {
        let mut c = self.segment_mut(segment).arms[arm].counts;
        c.add(reward);
        c
    }

    /// Commits outcome number `seq`, computed by [`Self::counts_after`],
    /// after the store accepted it.
    pub fn learn(&mut self, segment: &str, arm: usize, counts: ArmCounts, reward: f64, seq: u64) {
        debug_assert!(seq > self.outcome_seq);
        self.outcome_seq = seq;
        let seg = self.segment_mut(segment);
        seg.arms[arm].counts = counts;
        seg.arms[arm].through = seq;
        seg.arms[arm].pending = seg.arms[arm].pending.saturating_sub(1);
        self.aggregate[arm].counts.add(reward);
        self.aggregate[arm].pending = self.aggregate[arm].pending.saturating_sub(1);
    }

    /// Counts one more pending decision.
    pub fn add_pending(&mut self, segment: &str, arm: usize) {
        self.segment_mut(segment).arms[arm].pending += 1;
        self.aggregate[arm].pending += 1;
    }

    /// Widens the statistics after arms were added to the spec.
    pub fn arms_changed(&mut self) {
        self.aggregate
            .resize(self.spec.arms.len(), ArmTally::default());
        self.arms_version = self.arms_version.wrapping_add(1);
    }

    /// Thompson prior used for stats (uniform campaigns report a Beta(1,1) posterior).
    pub fn stats_prior(&self) -> ThompsonPrior {
        self.prior().unwrap_or(ThompsonPrior {
            alpha: 1.0,
            beta: 1.0,
            pooling: 0.0,
        })
    }
}
