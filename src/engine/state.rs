//! One campaign's in-memory state: its definition, its per-segment arm
//! statistics, its log of decisions by deadline, its RNG and its cached
//! propensity estimates.
//!
//! Everything here is guarded by the campaign's own mutex
//! ([`CampaignCell::state`]); no method does I/O. The engine decides which
//! journal changes follow from what these methods compute.

use super::decisions::DecisionLog;
use crate::campaign::{CampaignSpec, PolicySpec};
use crate::policy::linucb::{self, LinUcbParams, LinearArm};
use crate::policy::thompson::{self, ArmCounts, BetaParams, ThompsonPrior, PROPENSITY_DRAWS};
use crate::policy::{epsilon_greedy, uniform_choice};
use crate::FastMap;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use std::sync::Arc;

/// A campaign shared between the engine's maps, the decision index and
/// in-flight requests.
#[derive(Debug)]
pub struct CampaignCell {
    pub id: Arc<str>,
    /// Never reused, so rows and decision ids of a deleted campaign can
    /// never be mistaken for those of a new one with the same id.
    pub uid: u64,
    /// Guards all of the campaign's mutable state. Held only for in-memory
    /// work and the journal appends that must be ordered with it; never
    /// across an `.await`.
    pub state: Mutex<CampaignState>,
}

/// Statistics of one arm in one segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArmTally {
    /// Resolved outcomes (persisted).
    pub counts: ArmCounts,
    /// Decisions waiting for their reward (rebuilt from pending decisions).
    pub pending: u64,
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

#[derive(Debug)]
pub struct Segment {
    pub name: Arc<str>,
    pub arms: Vec<ArmTally>,
    cache: Option<PropensityCache>,
}

impl Segment {
    /// A segment with no data (reports of a segment never seen).
    pub fn empty(name: Arc<str>) -> Self {
        Segment {
            name,
            arms: Vec::new(),
            cache: None,
        }
    }

    fn total_n(&self) -> u64 {
        self.arms.iter().map(|a| a.counts.n).sum()
    }
}

#[derive(Debug)]
pub struct CampaignState {
    pub spec: CampaignSpec,
    pub rng: SmallRng,
    /// Per arm: the sum over all segments (the campaign-wide posterior).
    pub aggregate: Vec<ArmTally>,
    /// Segments by number (the number decisions and rows refer to); the
    /// segment "" holds segment-less decisions.
    pub segments: Vec<Segment>,
    /// Segment name → number.
    pub segment_index: FastMap<Arc<str>, u32>,
    /// Decisions (pending, and resolved ones still remembered) in deadline order.
    pub log: DecisionLog,
    /// Bumped when arms are added or retired (invalidates propensity caches).
    pub arms_version: u32,
    /// Contextual campaigns: per arm, the ridge statistics (campaign-wide).
    pub linear: Vec<LinearArm>,
    /// Set under this lock when the campaign is deleted: whoever still
    /// holds the cell must not change it any more.
    pub dead: bool,
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
            spec,
            rng,
            aggregate: vec![ArmTally::default(); arms],
            segments: Vec::new(),
            segment_index: FastMap::default(),
            log: DecisionLog::default(),
            arms_version: 0,
            linear: Vec::new(),
            dead: false,
            scratch_posteriors: Vec::new(),
            scratch_arms: Vec::new(),
            scratch_means: Vec::new(),
            scratch_leaders: Vec::new(),
        };
        st.widen_linear();
        st
    }

    /// Contextual campaigns: ridge statistics for every arm (new arms start at λI).
    pub fn widen_linear(&mut self) {
        if let PolicySpec::LinUcb {
            lambda,
            ref features,
            ..
        } = self.spec.policy
        {
            let d = features.len() + 1;
            while self.linear.len() < self.spec.arms.len() {
                self.linear.push(LinearArm::new(d, lambda));
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

    /// The segment with this number, widened to all arms.
    pub fn segment_mut(&mut self, no: u32) -> &mut Segment {
        let arms = self.spec.arms.len();
        let seg = &mut self.segments[no as usize];
        if seg.arms.len() < arms {
            seg.arms.resize(arms, ArmTally::default());
        }
        seg
    }

    /// The number of the segment called `name`, creating it if it is new
    /// (`true` then); `None` if it is new and the campaign already has
    /// `limit` segments.
    pub fn intern_segment(&mut self, name: &str, limit: usize) -> Option<(u32, bool)> {
        if let Some(&no) = self.segment_index.get(name) {
            return Some((no, false));
        }
        if self.segments.len() >= limit {
            return None;
        }
        let no = self.add_segment(name.into());
        Some((no, true))
    }

    /// Appends a segment (start-up, or a new one).
    pub fn add_segment(&mut self, name: Arc<str>) -> u32 {
        let no = self.segments.len() as u32;
        self.segment_index.insert(name.clone(), no);
        self.segments.push(Segment {
            name,
            arms: vec![ArmTally::default(); self.spec.arms.len()],
            cache: None,
        });
        no
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

    /// Picks an arm for segment number `segment` (see
    /// [`Self::intern_segment`]); `x` is the context vector of a contextual
    /// campaign (intercept first, validated by the engine).
    pub fn choose(&mut self, segment: u32, x: Option<&[f64]>) -> Pick {
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
                let seg = pooled_segment(&self.segments, segment);
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
        let seg = pooled_segment(&self.segments, segment);
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
    fn propensity(&mut self, segment: u32, posts: &[BetaParams], arm: usize) -> f64 {
        let total: u64 = self.aggregate.iter().map(|a| a.counts.n).sum();
        let version = self.arms_version;
        let seg = self.segment_mut(segment);
        let own_n = if seg.name.is_empty() {
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

    /// Learns one outcome of `arm` in segment number `segment` (which had
    /// a pending decision) and returns the arm's new counts there.
    pub fn learn(&mut self, segment: u32, arm: usize, reward: f64) -> ArmCounts {
        let seg = self.segment_mut(segment);
        let tally = &mut seg.arms[arm];
        tally.counts.add(reward);
        tally.pending = tally.pending.saturating_sub(1);
        let counts = tally.counts;
        self.aggregate[arm].counts.add(reward);
        self.aggregate[arm].pending = self.aggregate[arm].pending.saturating_sub(1);
        counts
    }

    /// Counts one more pending decision.
    pub fn add_pending(&mut self, segment: u32, arm: usize) {
        self.segment_mut(segment).arms[arm].pending += 1;
        self.aggregate[arm].pending += 1;
    }

    /// Widens the statistics after arms were added to the spec.
    pub fn arms_changed(&mut self) {
        self.aggregate
            .resize(self.spec.arms.len(), ArmTally::default());
        self.widen_linear();
        self.arms_version = self.arms_version.wrapping_add(1);
    }

    /// Rebuilds the campaign-wide tallies from the segments' (start-up).
    pub fn rebuild_aggregate(&mut self) {
        let arms = self.spec.arms.len();
        let mut aggregate = vec![ArmTally::default(); arms];
        for seg in &self.segments {
            for (a, t) in seg.arms.iter().enumerate().take(arms) {
                aggregate[a].counts.n += t.counts.n;
                aggregate[a].counts.sum += t.counts.sum;
                aggregate[a].pending += t.pending;
            }
        }
        self.aggregate = aggregate;
    }

    /// How long a decision waits for its reward, in ms.
    pub fn timeout_ms(&self) -> u64 {
        u64::from(self.spec.reward_timeout_seconds) * 1000
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

/// The segment numbered `no` for pooling: `None` for the segment "" (the
/// campaign-wide view).
fn pooled_segment(segments: &[Segment], no: u32) -> Option<&Segment> {
    segments.get(no as usize).filter(|s| !s.name.is_empty())
}
