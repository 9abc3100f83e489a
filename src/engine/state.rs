//! One campaign's in-memory state: its definition, its per-segment arm
//! statistics, its log of decisions by deadline, its RNG, its learning
//! rules ([`Learning`]) and its cached Thompson probability vectors.
//!
//! Everything here is guarded by the campaign's own mutex
//! ([`CampaignCell::state`]); no method does I/O. The engine decides which
//! journal changes follow from what these methods compute.

use super::decisions::DecisionLog;
pub use super::learning::ArmTally;
use super::learning::Learning;
use super::vectors::{Events, SegmentVector, Vector, VectorMode, VectorWork, Wanted};
use crate::campaign::{CampaignSpec, PolicySpec, Pooling};
use crate::journal::format::Row;
use crate::policy::exposure::BucketWeights;
use crate::policy::linucb::{self, LinUcbParams, LinearArm};
use crate::policy::pooling::{self, Evidence, PoolSums, PooledPrior};
use crate::policy::slate::{self, Base};
use crate::policy::thompson::{self, BetaParams, ThompsonPrior};
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

#[derive(Debug)]
pub struct Segment {
    pub name: Arc<str>,
    pub arms: Vec<ArmTally>,
    /// Its Thompson vector and last check (see `engine::vectors`).
    pub(super) vector: Option<SegmentVector>,
    /// Decisions and outcomes learned here since start-up (what a vector
    /// check compares; see `engine::vectors`).
    pub(super) events: Events,
    /// Its evidence per arm as last added to the campaign's pools.
    pub(super) pooled: Vec<Evidence>,
}

impl Segment {
    /// A segment with no data (reports of a segment never seen).
    pub fn empty(name: Arc<str>) -> Self {
        Segment {
            name,
            arms: Vec::new(),
            vector: None,
            events: Events::default(),
            pooled: Vec::new(),
        }
    }

    /// Whether it takes part in pooling (the segment "" is the
    /// campaign-wide view, and names starting with U+0001 are placeholders).
    pub fn is_named(&self) -> bool {
        crate::campaign::is_named_segment(&self.name)
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
    /// Bumped when arms are added or retired (invalidates probability caches).
    pub arms_version: u32,
    /// Contextual campaigns: per arm, the ridge statistics (campaign-wide),
    /// the other replicas' part included.
    pub linear: Vec<LinearArm>,
    /// Per contextual arm, the other replicas' part merged into `linear`.
    pub linear_remote: Vec<super::replicated::LinearRemote>,
    /// The other replicas' delay-distribution bins merged into `learning`.
    pub delay_remote: Vec<f64>,
    /// Delay distribution, decay, pools.
    pub learning: Learning,
    /// Set under this lock when the campaign is deleted: whoever still
    /// holds the cell must not change it any more.
    pub dead: bool,
    /// Counts against the arms' caps, and the holdout's uplift moments.
    pub budgets: super::budgets::Budgets,
    /// Thompson sampling: the vector of a named segment with no evidence
    /// of its own, shared by such segments (see `engine::vectors`).
    pub(super) fresh: Option<Arc<Vector>>,
    pub(super) vector_work: VectorWork,
    /// Every segment's [`Events`] together (the campaign-wide view's).
    pub(super) events: Events,
    /// Who computes Thompson vectors, and those asked for (deferred mode).
    pub(super) mode: VectorMode,
    pub(super) wanted: Wanted,
    /// Reused buffers for one decision (no allocation on the hot path).
    /// `scratch_arms`: the arms that may be shown now.
    pub(super) scratch_arms: Vec<usize>,
    scratch_means: Vec<Option<f64>>,
    scratch_leaders: Vec<usize>,
    /// The uniform policy's vector, for the arms of `arms_version` .0.
    uniform_probs: Option<(u32, Arc<[f64]>)>,
}

/// What `choose` decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub arm: usize,
    pub propensity: f64,
    /// P(chosen) for every arm by index, where the policy has it (for the
    /// decision log).
    pub probs: Option<Arc<[f64]>>,
    /// A holdout decision (uniform among the arms that may be shown).
    pub holdout: bool,
}

impl CampaignState {
    pub fn new(spec: CampaignSpec, rng: SmallRng, now_ms: u64) -> Self {
        let arms = spec.arms.len();
        let learning = Learning::new(&spec, now_ms);
        let mut st = CampaignState {
            spec,
            rng,
            aggregate: vec![ArmTally::default(); arms],
            segments: Vec::new(),
            segment_index: FastMap::default(),
            log: DecisionLog::default(),
            arms_version: 0,
            linear: Vec::new(),
            linear_remote: Vec::new(),
            delay_remote: Vec::new(),
            learning,
            dead: false,
            budgets: Default::default(),
            fresh: None,
            vector_work: VectorWork::default(),
            events: Events::default(),
            mode: VectorMode::Inline,
            wanted: Wanted::default(),
            scratch_arms: Vec::new(),
            scratch_means: Vec::new(),
            scratch_leaders: Vec::new(),
            uniform_probs: None,
        };
        st.widen_linear();
        st.budgets_changed();
        st
    }

    /// Contextual campaigns: ridge statistics for every arm (new arms start at λI).
    pub fn widen_linear(&mut self) {
        let (PolicySpec::LinUcb {
            lambda,
            ref features,
            ..
        }
        | PolicySpec::LinTs {
            lambda,
            ref features,
            ..
        }) = self.spec.policy
        else {
            return;
        };
        let d = features.len() + 1;
        while self.linear.len() < self.spec.arms.len() {
            self.linear.push(LinearArm::new(d, lambda));
        }
    }

    /// The campaign prior (Beta(1, 1) for policies without one).
    pub fn prior(&self) -> ThompsonPrior {
        match self.spec.policy {
            PolicySpec::Thompson {
                prior_alpha,
                prior_beta,
                ..
            } => ThompsonPrior {
                alpha: prior_alpha,
                beta: prior_beta,
            },
            _ => ThompsonPrior {
                alpha: 1.0,
                beta: 1.0,
            },
        }
    }

    fn pooling(&self) -> Pooling {
        match self.spec.policy {
            PolicySpec::Thompson { pooling, .. } => pooling,
            _ => Pooling::Off,
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
            vector: None,
            events: Events::default(),
            pooled: Vec::new(),
        });
        no
    }

    /// The pooled prior of `arm` for segment `seg` from `pools`, with
    /// `own` (the segment's contribution to them) left out.
    pub(super) fn pooled_prior(
        &self,
        pools: &[PoolSums],
        own: Evidence,
        arm: usize,
    ) -> Option<PooledPrior> {
        let prior = self.prior();
        let others = pools.get(arm)?.without(own);
        pooling::pooled_prior(self.pooling(), prior.alpha, prior.beta, &others)
    }

    /// Pools of every named segment's evidence at `now_ms` (reports: the
    /// hot path's pools lag, holding each segment as of its last refresh).
    pub fn current_pools(&self, w: &BucketWeights, now_ms: u64) -> Vec<PoolSums> {
        let arms = self.spec.arms.len();
        let mut pools = vec![PoolSums::default(); arms];
        for s in self.segments.iter().filter(|s| s.is_named()) {
            for (a, p) in pools.iter_mut().enumerate() {
                p.add(self.evidence_for(Some(s), a, w, now_ms));
            }
        }
        pools
    }

    pub(super) fn posterior_with(
        &self,
        segment: Option<u32>,
        arm: usize,
        w: &BucketWeights,
        now_ms: u64,
    ) -> BetaParams {
        let seg = segment.and_then(|s| self.segments.get(s as usize));
        self.posterior_for(seg, arm, w, now_ms, None)
    }

    /// The posterior of `arm` seen from `seg` (`None`, the segment "" or a
    /// placeholder: campaign-wide), with weights from `learning.weights`,
    /// pooling from the decisions' pools, or from `pools` (reports, see
    /// [`Self::current_pools`]).
    pub fn posterior_for(
        &self,
        seg: Option<&Segment>,
        arm: usize,
        w: &BucketWeights,
        now_ms: u64,
        pools: Option<&[PoolSums]>,
    ) -> BetaParams {
        let prior = self.prior();
        match seg.filter(|s| s.is_named()) {
            None => prior.posterior(self.evidence_for(None, arm, w, now_ms), None),
            Some(s) => {
                let ev = self.evidence_for(Some(s), arm, w, now_ms);
                let pooled = match pools {
                    Some(p) => self.pooled_prior(p, ev, arm),
                    None => {
                        let own = s.pooled.get(arm).copied().unwrap_or_default();
                        self.pooled_prior(&self.learning.pools, own, arm)
                    }
                };
                prior.posterior(ev, pooled)
            }
        }
    }

    /// The evidence of `arm` seen from `seg` (as [`Self::posterior_for`]).
    pub fn evidence_for(
        &self,
        seg: Option<&Segment>,
        arm: usize,
        w: &BucketWeights,
        now_ms: u64,
    ) -> Evidence {
        let t = match seg.filter(|s| s.is_named()) {
            Some(s) => s.arms.get(arm),
            None => self.aggregate.get(arm),
        };
        t.map_or_else(Evidence::default, |t| self.learning.evidence(t, w, now_ms))
    }

    /// Picks an arm for segment number `segment` (see
    /// [`Self::intern_segment`]) at `now_ms`; `x` is the context vector of
    /// a contextual campaign (intercept first, validated by the engine).
    /// Arms held back by a cap are left out (the caller has checked
    /// [`Self::showable_arms`]); with a holdout, a share of the decisions is
    /// uniform among the others ([`Self::hold_out`]).
    pub fn choose(&mut self, segment: u32, x: Option<&[f64]>, now_ms: u64) -> Pick {
        self.gather_showable();
        let mut pick = self.choose_policy(segment, x, now_ms);
        if self.spec.holdout_fraction > 0.0 {
            self.hold_out(&mut pick);
        }
        pick
    }

    /// The arms that may be shown, into `scratch_arms` (active, and not
    /// held back by a cap at the last check).
    pub(super) fn gather_showable(&mut self) {
        self.scratch_arms.clear();
        self.scratch_arms.extend(self.spec.active_arms());
        if self.budgets.any {
            let blocked = &self.budgets.blocked;
            self.scratch_arms
                .retain(|&a| !blocked.get(a).copied().unwrap_or(false));
        }
        debug_assert!(
            !self.scratch_arms.is_empty(),
            "validation keeps one active arm, showable_arms one that may be shown"
        );
        if self.scratch_arms.is_empty() {
            self.scratch_arms.extend(self.spec.active_arms());
        }
    }

    /// How many arms may be shown at `now_ms` (active, not held back by a
    /// cap); brings the caps to `now_ms` first.
    pub fn showable_arms(&mut self, now_ms: u64) -> usize {
        self.check_caps(now_ms);
        self.spec
            .active_arms()
            .filter(|&a| !self.is_blocked(a))
            .count()
    }

    /// A ranked slate of `k` distinct arms for segment number `segment`
    /// (`2 ≤ k ≤` [`Self::showable_arms`], checked by the engine; `k = 1` is
    /// [`Self::choose`]), one [`Pick`] per slot in slot order, each with its
    /// position-wise propensity and its slot's vector over every arm.
    ///
    /// Thompson sampling takes one joint posterior draw and ranks the arms
    /// by sampled rate × value (the draw is one of the segment's cached
    /// joint draws, so the marginals are exact); ε-greedy ranks by mean ×
    /// value and LinUCB by upper bound (ties in random order); linear
    /// Thompson takes one joint score draw; the uniform split a uniformly
    /// random ordered subset. The exploration (floor, ε) is a uniform slate,
    /// and so is the holdout (see [`crate::policy::slate`]).
    pub fn choose_slate(
        &mut self,
        segment: u32,
        x: Option<&[f64]>,
        now_ms: u64,
        k: usize,
    ) -> Vec<Pick> {
        if k <= 1 {
            return vec![self.choose(segment, x, now_ms)];
        }
        self.gather_showable();
        let n = self.scratch_arms.len();
        let k = k.min(n);
        let mut drawn = self.slate_policy(segment, x, now_ms, k);
        let h = self.spec.holdout_fraction;
        let mut holdout = false;
        if h > 0.0 {
            slate::mix_uniform(&mut drawn.marginals, n, h);
            if rand::Rng::random::<f64>(&mut self.rng) < h {
                drawn.positions = slate::uniform_slate(n, k, &mut self.rng);
                holdout = true;
            }
        }
        let arms = self.spec.arms.len();
        drawn
            .positions
            .iter()
            .zip(&drawn.marginals)
            .map(|(&pos, row)| {
                let mut probs = vec![0.0; arms];
                for (&a, &q) in self.scratch_arms.iter().zip(row) {
                    probs[a] += q;
                }
                Pick {
                    arm: self.scratch_arms[pos],
                    propensity: row[pos],
                    probs: Some(probs.into()),
                    holdout,
                }
            })
            .collect()
    }

    /// The policy's slate of `k` of the arms in `scratch_arms`.
    fn slate_policy(
        &mut self,
        segment: u32,
        x: Option<&[f64]>,
        now_ms: u64,
        k: usize,
    ) -> slate::Slate {
        let n = self.scratch_arms.len();
        match self.spec.policy {
            PolicySpec::Thompson {
                exploration_floor, ..
            } => {
                let vector = self.thompson_vector(segment, exploration_floor, now_ms);
                let led = vector.slates(k, &mut self.rng);
                // The floor as `with_floor` has it: each arm at least `floor`.
                let u = n as f64 * exploration_floor.clamp(0.0, 1.0 / n as f64);
                slate::draw(Base::Led(&led), n, k, u, &mut self.rng)
            }
            PolicySpec::Uniform => slate::draw(Base::Uniform, n, k, 1.0, &mut self.rng),
            PolicySpec::EpsilonGreedy { epsilon } => {
                let w = self.learning.weights(now_ms).clone();
                let seg = self.segments.get(segment as usize).filter(|s| s.is_named());
                let scores: Vec<f64> = self
                    .scratch_arms
                    .iter()
                    .map(|&a| {
                        let t = match seg {
                            Some(s) => s.arms.get(a).copied().unwrap_or_default(),
                            None => self.aggregate[a],
                        };
                        // An untried arm ranks first, as in `epsilon_greedy`.
                        if t.total_n() == 0 && t.total_pending() == 0 {
                            return f64::INFINITY;
                        }
                        let ev = self.learning.evidence(&t, &w, now_ms);
                        let value = self.spec.arms[a].value;
                        if ev.n > 0.0 {
                            value * ev.y / ev.n
                        } else {
                            0.0
                        }
                    })
                    .collect();
                slate::draw(Base::Scores(&scores), n, k, epsilon, &mut self.rng)
            }
            PolicySpec::LinUcb { alpha, epsilon, .. } => {
                self.reweigh_linear(now_ms);
                let scores =
                    x.and_then(|x| linucb::ucb_scores(&self.linear, &self.scratch_arms, x, alpha));
                match scores {
                    Some(s) => slate::draw(Base::Scores(&s), n, k, epsilon, &mut self.rng),
                    None => slate::draw(Base::Uniform, n, k, 1.0, &mut self.rng),
                }
            }
            PolicySpec::LinTs { scale, epsilon, .. } => {
                self.reweigh_linear(now_ms);
                let draws = x.and_then(|x| {
                    linucb::lints_draws(
                        &self.linear,
                        &self.scratch_arms,
                        x,
                        scale,
                        k,
                        &mut self.rng,
                    )
                });
                match draws {
                    Some(d) => slate::draw(Base::Draws(&d), n, k, epsilon, &mut self.rng),
                    None => slate::draw(Base::Uniform, n, k, 1.0, &mut self.rng),
                }
            }
        }
    }

    /// The holdout: with probability h the arm is drawn uniformly from the
    /// K arms that may be shown instead of from the policy. The logged
    /// vector and propensity are the mixture `h/K + (1−h)·p`, the exact
    /// probability of each arm; the flag says which branch was taken.
    fn hold_out(&mut self, pick: &mut Pick) {
        let Some(policy) = pick.probs.clone() else {
            debug_assert!(false, "every validated request has a vector");
            return;
        };
        let h = self.spec.holdout_fraction;
        let k = self.scratch_arms.len();
        let mut mixed: Vec<f64> = policy.iter().map(|p| (1.0 - h) * p).collect();
        for &a in &self.scratch_arms {
            if let Some(m) = mixed.get_mut(a) {
                *m += h / k as f64;
            }
        }
        if rand::Rng::random::<f64>(&mut self.rng) < h {
            pick.arm = self.scratch_arms[rand::Rng::random_range(&mut self.rng, 0..k)];
            pick.holdout = true;
        }
        pick.propensity = mixed.get(pick.arm).copied().unwrap_or(pick.propensity);
        pick.probs = Some(mixed.into());
    }

    fn choose_policy(&mut self, segment: u32, x: Option<&[f64]>, now_ms: u64) -> Pick {
        match self.spec.policy {
            PolicySpec::Thompson {
                exploration_floor, ..
            } => self.choose_thompson(segment, exploration_floor, now_ms),
            PolicySpec::Uniform => {
                let (i, propensity) = uniform_choice(self.scratch_arms.len(), &mut self.rng);
                let version = self.arms_version;
                let probs = match &self.uniform_probs {
                    Some((v, p)) if *v == version => p.clone(),
                    _ => {
                        let mut p = vec![0.0; self.spec.arms.len()];
                        for &a in &self.scratch_arms {
                            p[a] = propensity;
                        }
                        let p: Arc<[f64]> = p.into();
                        self.uniform_probs = Some((version, p.clone()));
                        p
                    }
                };
                Pick {
                    arm: self.scratch_arms[i],
                    propensity,
                    probs: Some(probs),
                    holdout: false,
                }
            }
            PolicySpec::EpsilonGreedy { epsilon } => {
                let w = self.learning.weights(now_ms).clone();
                let named = self
                    .segments
                    .get(segment as usize)
                    .filter(|s| s.is_named())
                    .is_some();
                let mut means = std::mem::take(&mut self.scratch_means);
                means.clear();
                for &a in &self.scratch_arms {
                    let t = if named {
                        self.segments[segment as usize]
                            .arms
                            .get(a)
                            .copied()
                            .unwrap_or_default()
                    } else {
                        self.aggregate[a]
                    };
                    let tried = t.total_n() > 0 || t.total_pending() > 0;
                    let ev = self.learning.evidence(&t, &w, now_ms);
                    let value = self.spec.arms[a].value;
                    means.push(tried.then(|| if ev.n > 0.0 { value * ev.y / ev.n } else { 0.0 }));
                }
                let mut leaders = std::mem::take(&mut self.scratch_leaders);
                let (i, propensity) = epsilon_greedy(&means, epsilon, &mut leaders, &mut self.rng);
                let mut probs = vec![0.0; self.spec.arms.len()];
                for (&a, q) in self
                    .scratch_arms
                    .iter()
                    .zip(crate::policy::epsilon_greedy_probs(&means, epsilon))
                {
                    probs[a] += q;
                }
                self.scratch_means = means;
                self.scratch_leaders = leaders;
                Pick {
                    arm: self.scratch_arms[i],
                    propensity,
                    probs: Some(probs.into()),
                    holdout: false,
                }
            }
            PolicySpec::LinUcb {
                alpha,
                lambda,
                epsilon,
                ..
            } => {
                self.reweigh_linear(now_ms);
                let params = LinUcbParams {
                    alpha,
                    lambda,
                    epsilon,
                };
                let choice = x.and_then(|x| {
                    linucb::choose_ucb(&self.linear, &self.scratch_arms, x, &params, &mut self.rng)
                });
                self.linear_pick(choice)
            }
            PolicySpec::LinTs { scale, epsilon, .. } => {
                self.reweigh_linear(now_ms);
                let choice = x.and_then(|x| {
                    linucb::choose_lints_exact(
                        &self.linear,
                        &self.scratch_arms,
                        x,
                        scale,
                        epsilon,
                        &mut self.rng,
                    )
                });
                self.linear_pick(choice)
            }
        }
    }

    /// Moves the contextual arms' pending decisions to their weights at
    /// `now_ms`, when due (see `Learning::linear_weights_due`).
    fn reweigh_linear(&mut self, now_ms: u64) {
        if let Some(w) = self.learning.linear_weights_due(now_ms) {
            for arm in &mut self.linear {
                if !arm.pending.is_empty() {
                    arm.reweigh(|id| w.weight(id));
                }
            }
        }
    }

    /// Counts a pending contextual decision in its arm's ridge statistics.
    pub fn add_pending_linear(&mut self, arm: usize, x: &[f64], created_ms: u64) {
        let bucket = self.learning.linear_bucket(created_ms);
        if let Some(l) = self.linear.get_mut(arm) {
            l.add_pending(x, bucket);
        }
    }

    /// Learns a contextual outcome in the arm's ridge statistics.
    pub fn resolve_linear(&mut self, arm: usize, x: &[f64], created_ms: u64, reward: f64) {
        let bucket = self.learning.linear_bucket(created_ms);
        if let Some(l) = self.linear.get_mut(arm) {
            l.resolve_pending(x, bucket, reward);
        }
    }

    fn linear_pick(&mut self, choice: Option<linucb::LinearChoice>) -> Pick {
        debug_assert!(choice.is_some(), "the engine validates the context");
        match choice {
            Some(c) => {
                // The policy's vector is over the active arms; the log's is
                // over every arm by index.
                let probs = (!c.probs.is_empty()).then(|| {
                    let mut v = vec![0.0; self.spec.arms.len()];
                    for (&arm, &q) in self.scratch_arms.iter().zip(&c.probs) {
                        if let Some(slot) = v.get_mut(arm) {
                            *slot += q;
                        }
                    }
                    v.into()
                });
                Pick {
                    arm: c.arm,
                    propensity: c.propensity,
                    probs,
                    holdout: false,
                }
            }
            None => {
                let (i, propensity) = uniform_choice(self.scratch_arms.len(), &mut self.rng);
                Pick {
                    arm: self.scratch_arms[i],
                    propensity,
                    probs: None,
                    holdout: false,
                }
            }
        }
    }

    /// Thompson sampling: the arm is drawn from the segment's cached
    /// probability vector (P(best) under the posterior it was made from,
    /// with the floor), remade when the posterior has moved (see
    /// `engine::vectors`).
    fn choose_thompson(&mut self, segment: u32, floor: f64, now_ms: u64) -> Pick {
        let vector = self.thompson_vector(segment, floor, now_ms);
        let probs = vector.probs.clone();
        let arm = thompson::sample_index(&probs, &mut self.rng);
        Pick {
            arm,
            propensity: probs[arm],
            probs: Some(probs),
            holdout: false,
        }
    }

    /// Replaces segment `segment`'s contribution to the pools by its
    /// current evidence (and recomputes the sums from scratch now and then,
    /// so rounding cannot accumulate).
    pub(super) fn repool(&mut self, segment: u32, w: &BucketWeights, now_ms: u64) {
        let arms = self.spec.arms.len();
        self.learning.widen(arms);
        let tallies = &self.segments[segment as usize].arms;
        let current: Vec<Evidence> = (0..arms)
            .map(|a| {
                tallies
                    .get(a)
                    .map_or_else(Evidence::default, |t| self.learning.evidence(t, w, now_ms))
            })
            .collect();
        let seg = &mut self.segments[segment as usize];
        seg.pooled.resize(arms, Evidence::default());
        for (a, ev) in current.into_iter().enumerate() {
            self.learning.replace_pooled(a, seg.pooled[a], ev);
            seg.pooled[a] = ev;
        }
        self.learning.pool_updates += 1;
        if self.learning.pool_updates > 8 * self.segments.len() + 1024 {
            let mut pools = vec![PoolSums::default(); arms];
            for s in self.segments.iter().filter(|s| s.is_named()) {
                for (p, ev) in pools.iter_mut().zip(&s.pooled) {
                    p.add(*ev);
                }
            }
            self.learning.set_pools(pools);
            self.learning.pool_updates = 0;
        }
    }

    /// Learns one outcome of the pending decision of `arm` in segment
    /// number `segment` created at `created_ms`, and returns the arm's new
    /// row there. `rewarded`: the reward arrived (its delay is learned).
    pub fn learn(
        &mut self,
        segment: u32,
        arm: usize,
        reward: f64,
        created_ms: u64,
        now_ms: u64,
        rewarded: bool,
    ) -> Row {
        self.maybe_move_landmark(now_ms);
        if rewarded {
            let contextual = !self.spec.policy.features().is_empty();
            let weight = if contextual {
                f64::from(u8::from(reward > 0.0))
            } else {
                reward
            };
            self.learning.observe_delay(created_ms, now_ms, weight);
        }
        let learning = &self.learning;
        let seg = &mut self.segments[segment as usize];
        let arms = self.spec.arms.len();
        if seg.arms.len() < arms {
            seg.arms.resize(arms, ArmTally::default());
        }
        learning.resolve(&mut seg.arms[arm], created_ms, reward);
        seg.events.learned(reward);
        let row = learning.row(&seg.arms[arm], now_ms);
        learning.resolve(&mut self.aggregate[arm], created_ms, reward);
        self.events.learned(reward);
        // Keep the pools current: this segment's evidence for the arm just
        // changed (O(buckets); the other arms' move with their outcomes).
        if self.pooling() != Pooling::Off && self.segments[segment as usize].is_named() {
            let w = self.learning.weights(now_ms).clone();
            self.repool_arm(segment, arm, &w, now_ms);
        }
        row
    }

    /// Replaces one arm's contribution of segment `segment` to the pools.
    fn repool_arm(&mut self, segment: u32, arm: usize, w: &BucketWeights, now_ms: u64) {
        let arms = self.spec.arms.len();
        self.learning.widen(arms);
        let ev = self.segments[segment as usize]
            .arms
            .get(arm)
            .map_or_else(Evidence::default, |t| self.learning.evidence(t, w, now_ms));
        let seg = &mut self.segments[segment as usize];
        seg.pooled.resize(arms, Evidence::default());
        self.learning.replace_pooled(arm, seg.pooled[arm], ev);
        seg.pooled[arm] = ev;
        self.learning.pool_updates += 1;
    }

    fn maybe_move_landmark(&mut self, now_ms: u64) {
        let tallies = self
            .segments
            .iter_mut()
            .flat_map(|s| s.arms.iter_mut())
            .chain(self.aggregate.iter_mut());
        self.learning.maybe_move_landmark(now_ms, tallies);
    }

    /// After the other replicas' statistics changed: every named segment's
    /// evidence goes to the pools again and every Thompson vector is
    /// checked at its next use.
    pub fn remote_changed(&mut self, now_ms: u64) {
        let w = self.learning.weights(now_ms).clone();
        for no in 0..self.segments.len() as u32 {
            if self.segments[no as usize].is_named() {
                self.repool(no, &w, now_ms);
            }
        }
        self.recheck_vectors();
    }

    /// Counts one more pending decision created at `created_ms`.
    pub fn add_pending(&mut self, segment: u32, arm: usize, created_ms: u64) {
        let learning = &self.learning;
        let arms = self.spec.arms.len();
        let seg = &mut self.segments[segment as usize];
        if seg.arms.len() < arms {
            seg.arms.resize(arms, ArmTally::default());
        }
        learning.add_pending(&mut seg.arms[arm], created_ms);
        seg.events.decisions += 1;
        learning.add_pending(&mut self.aggregate[arm], created_ms);
        self.events.decisions += 1;
    }

    /// Widens the statistics after arms were added to the spec.
    pub fn arms_changed(&mut self) {
        self.aggregate
            .resize(self.spec.arms.len(), ArmTally::default());
        self.learning.widen(self.spec.arms.len());
        self.widen_linear();
        self.budgets_changed();
        self.arms_version = self.arms_version.wrapping_add(1);
    }

    /// Rebuilds the campaign-wide tallies and the pools from the segments
    /// (start-up, after rows and pending decisions are loaded).
    pub fn rebuild_aggregate(&mut self, now_ms: u64) {
        let arms = self.spec.arms.len();
        self.aggregate.resize(arms, ArmTally::default());
        // Pending decisions were counted in the aggregate as they were
        // loaded (`add_pending`); the resolved sums are summed here.
        for agg in &mut self.aggregate {
            agg.counts = Default::default();
            agg.decayed = Evidence::default();
        }
        for seg in &self.segments {
            for (a, t) in seg.arms.iter().enumerate().take(arms) {
                let agg = &mut self.aggregate[a];
                agg.counts.n += t.counts.n;
                agg.counts.sum += t.counts.sum;
                agg.decayed.n += t.decayed.n;
                agg.decayed.y += t.decayed.y;
            }
        }
        let w = self.learning.weights(now_ms).clone();
        self.learning.widen(arms);
        self.learning.set_pools(vec![PoolSums::default(); arms]);
        for no in 0..self.segments.len() as u32 {
            if self.segments[no as usize].is_named() {
                self.repool(no, &w, now_ms);
            }
        }
    }

    /// How long a decision waits for its reward, in ms.
    pub fn timeout_ms(&self) -> u64 {
        u64::from(self.spec.reward_timeout_seconds) * 1000
    }
}
