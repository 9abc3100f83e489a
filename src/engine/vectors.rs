//! Thompson sampling's cached probability vectors, and the rule for when a
//! posterior has moved enough to recompute one.
//!
//! The arm is drawn from a segment's cached vector (P(best) under the
//! posteriors it was made from, `policy::prob_best`, with the floor), so the
//! logged propensity is exact whatever the vector's age; its age decides
//! only how closely the draws follow the current posterior.
//!
//! **When a vector is recomputed.** It records the posteriors it was made
//! from. It is recomputed when some arm's posterior has since moved: its
//! strength α + β by more than [`MOVE_STRENGTH`] (half), or its mean by
//! more than [`MOVE_MEAN_SD`] (half) of its standard deviation then — less
//! than a Thompson draw varies by itself. Nothing else (not time, not
//! traffic) recomputes it: a busy segment with a settled posterior and a
//! 1-minute window keeps its vector. Measured (`tests/regret.rs`): on
//! stationary streams the engine's regret is within a few percent of a
//! plain Thompson sampler that updates after every reward; tighter rules
//! (5% and 0.1 sd, 20% and 0.5 sd) measured the same within the seeds'
//! noise and cost up to four times as many vectors with 500 segments.
//!
//! **When that is checked.** A check reads every arm's posterior (one
//! evidence read each, O(arms), no quadrature). It is due when enough could
//! have happened since the last one for an arm to move: each decision or
//! outcome in the segment changes one arm's strength by at most one trial
//! and its mean by at most (reward + mean)/(α + β + 1), so after a check
//! the segment may take as many events, and as much reward, as the
//! smallest arm's slack ([`Slack`]). Pending decisions age (their weight
//! G(age) grows) and the pools move (other segments learn), so a check is
//! also due when the pending decisions alone could use the slack and time
//! has passed (half a time bucket of the window after a remade vector,
//! doubling with every check that finds nothing moved, at most the
//! window), after 1/32 of a decay half-life, and when the pooled evidence
//! grew by [`POOL_MOVE`]. Deciding that a check is due is O(1): the
//! segments count their decisions and outcomes as they happen
//! ([`Events`]).
//!
//! **Sparse segments share one vector.** A named segment's posterior is
//! the campaign prior plus the pooled prior plus its own evidence; with
//! little evidence of its own it is within the rule of the campaign's
//! "no evidence of its own" vector ([`CampaignState::fresh`]) and draws
//! from that: ten thousand sparse segments cost one vector, not ten
//! thousand.
//!
//! **Who computes a vector.** In the simulator and in-process users the
//! decision that finds its posterior moved computes the new vector at once
//! (deterministic, [`VectorMode::Inline`]). In the daemon
//! ([`VectorMode::Deferred`]) no decision does: it keeps drawing from the
//! vector it has (its probabilities, not today's posterior, are what it
//! logs, so the propensity stays exact), the segment is queued, and a
//! background task ([`super::Engine::make_wanted_vectors`]) computes the
//! vector from the posterior as it is then and installs it. A segment
//! whose arms changed (added, retired, capped) draws meanwhile from its old
//! vector restricted to the arms that may be shown, with the floor (or the
//! uniform split if it has none): still exact.
//!
//! Guarded by the campaign's lock, like the rest of its state.

use super::state::{CampaignCell, CampaignState};
use crate::campaign::PolicySpec;
use crate::policy::pooling::Evidence;
use crate::policy::prob_best::prob_best;
use crate::policy::slate::{Draws, Led};
use crate::policy::thompson::{self, values_matter, BetaParams};
use parking_lot::Mutex;
use std::sync::Arc;

/// A vector is recomputed when an arm's strength α + β moved by this much
/// (relative) since it was made...
pub const MOVE_STRENGTH: f64 = 0.5;
/// ...or its mean by this many of its standard deviations then (a
/// Thompson draw itself varies by one).
pub const MOVE_MEAN_SD: f64 = 0.5;
/// A check is due when the pooled evidence grew by this much (relative).
pub const POOL_MOVE: f64 = 0.1;

/// Joint posterior draws a Thompson slate's later slots come from, at most
/// (fewer for many arms, so that draws × arms stays below
/// [`SLATE_DRAW_WORK`]).
const SLATE_DRAWS: usize = 1024;
const SLATE_DRAW_WORK: usize = 1 << 18;

/// Who computes a vector when a check finds a posterior moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VectorMode {
    /// The deciding call, at once (deterministic: the simulator, tests).
    #[default]
    Inline,
    /// A background task; no decision waits for one (the daemon).
    Deferred,
}

/// What a deferred vector is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Segment(u32),
    /// The campaign's vector for segments with no evidence of their own.
    Fresh,
}

/// A vector to make off the decision path: the posteriors as they were
/// read, and where it goes.
#[derive(Debug)]
pub(super) struct Order {
    target: Target,
    arms: Vec<usize>,
    posts: Vec<BetaParams>,
    values: Vec<f64>,
    floor: f64,
    all_arms: usize,
    arms_version: u32,
    counters: Counters,
    now_ms: u64,
}

/// The deferred vectors a campaign's decisions asked for.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    segments: Vec<u32>,
    fresh: bool,
    /// Set when something was added since the engine last looked.
    pub(super) news: bool,
}

/// P(best) under one set of posteriors, and what it was made from.
#[derive(Debug)]
pub struct Vector {
    /// P(chosen) per arm index, floor included; 0 for arms it was not made
    /// over. The arm is drawn from this, so it is the exact propensity.
    pub probs: Arc<[f64]>,
    /// P(best) per position in `arms`, without the floor (a slate's first slot).
    best: Vec<f64>,
    /// The arms that could be shown when it was made (positions → indices).
    arms: Vec<usize>,
    /// Their posteriors and values then.
    made_from: Vec<BetaParams>,
    values: Vec<f64>,
    arms_version: u32,
    /// The slates drawn from it (made at the first slate request).
    slates: Mutex<Option<Arc<Led>>>,
}

/// A segment's vector (its own or the campaign's shared one) and its
/// last check.
#[derive(Debug, Clone)]
pub struct SegmentVector {
    vector: Arc<Vector>,
    check: Check,
    /// Deferred mode: a new vector is asked for; no check until it comes.
    wanted: bool,
}

/// What a segment looked like at its last check, and how much may happen
/// before the next.
#[derive(Debug, Clone, Copy)]
struct Check {
    ms: u64,
    at: Counters,
    slack: Slack,
    /// How long the pending decisions may age before the next check: half
    /// a time bucket after a remade vector, doubled by every check that
    /// finds nothing moved (at most the window).
    aging_ms: u64,
}

/// Decisions made and outcomes learned in a segment (or campaign-wide),
/// kept as they happen so that deciding whether a check is due is O(1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Events {
    pub decisions: u64,
    pub outcomes: u64,
    pub reward_sum: f64,
}

impl Events {
    pub fn learned(&mut self, reward: f64) {
        self.outcomes += 1;
        self.reward_sum += reward;
    }
}

/// A segment's events, and the pooled evidence (named segments), at one
/// moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    events: Events,
    pooled_n: f64,
}

/// How much may happen before some arm could have moved by the rule: an
/// event changes an arm's strength by at most 1 and its mean by at most
/// (reward + mean)/(α + β + 1).
#[derive(Debug, Clone, Copy)]
struct Slack {
    /// Events (decisions + outcomes) the smallest strength room absorbs.
    events: f64,
    /// Rewards + `rate` × events the smallest mean room absorbs (in units
    /// of 1/(α + β + 1)).
    mean: f64,
    /// The largest posterior mean.
    rate: f64,
}

/// Vectors made and checks taken (a campaign's, for tests and benches).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VectorWork {
    pub made: u64,
    pub checks: u64,
}

impl CampaignState {
    /// The vector segment `segment`'s Thompson draw comes from, checked
    /// (and recomputed if its posterior moved) when due.
    pub(super) fn thompson_vector(&mut self, segment: u32, floor: f64, now_ms: u64) -> Arc<Vector> {
        let version = self.arms_version;
        let counters = self.counters(segment);
        if let Some(sv) = &self.segments[segment as usize].vector {
            if sv.vector.arms_version == version
                && (sv.wanted || !self.check_due(&sv.check, &counters, now_ms))
            {
                return sv.vector.clone();
            }
        }
        self.check_vector(segment, floor, now_ms, counters)
    }

    fn counters(&self, segment: u32) -> Counters {
        let seg = &self.segments[segment as usize];
        if seg.is_named() {
            Counters {
                events: seg.events,
                pooled_n: self.learning.pooled_n(),
            }
        } else {
            Counters {
                events: self.events,
                pooled_n: 0.0,
            }
        }
    }

    fn check_due(&self, c: &Check, now: &Counters, now_ms: u64) -> bool {
        let (e, then) = (&now.events, &c.at.events);
        let events = (e.decisions.saturating_sub(then.decisions)
            + e.outcomes.saturating_sub(then.outcomes)) as f64;
        let rewards = (e.reward_sum - then.reward_sum).abs();
        if events >= c.slack.events
            || rewards + c.slack.rate * events >= c.slack.mean
            || now_ms < c.ms
        {
            return true;
        }
        if now.pooled_n > c.at.pooled_n * (1.0 + POOL_MOVE) + 1.0 {
            return true;
        }
        // The pending decisions at the check age: each can gain up to one
        // trial of weight, no reward.
        let pending = then.decisions.saturating_sub(then.outcomes);
        let could_age = pending as f64 + events;
        if (could_age >= c.slack.events || c.slack.rate * could_age >= c.slack.mean)
            && now_ms >= c.ms + c.aging_ms
        {
            return true;
        }
        self.learning
            .half_life_ms()
            .is_some_and(|h| now_ms as f64 >= c.ms as f64 + h / 32.0)
    }

    /// Segment `segment`'s posteriors over `arms` at `now_ms` (a named
    /// segment's evidence goes to the pools first; its posterior is the
    /// prior, the pools without it, and it).
    fn current_posteriors(&mut self, segment: u32, arms: &[usize], now_ms: u64) -> Vec<BetaParams> {
        let w = self.learning.weights(now_ms).clone();
        if self.segments[segment as usize].is_named() {
            self.repool(segment, &w, now_ms);
            let prior = self.prior();
            let own = &self.segments[segment as usize].pooled;
            arms.iter()
                .map(|&a| {
                    let ev = own.get(a).copied().unwrap_or_default();
                    prior.posterior(ev, self.pooled_prior(&self.learning.pools, ev, a))
                })
                .collect()
        } else {
            arms.iter()
                .map(|&a| self.posterior_with(None, a, &w, now_ms))
                .collect()
        }
    }

    /// The posteriors of a named segment with no evidence of its own.
    fn fresh_posteriors(&self, arms: &[usize]) -> Vec<BetaParams> {
        let prior = self.prior();
        arms.iter()
            .map(|&a| {
                let pooled = self.pooled_prior(&self.learning.pools, Evidence::default(), a);
                prior.posterior(Evidence::default(), pooled)
            })
            .collect()
    }

    /// Reads segment `segment`'s posteriors and keeps, shares or remakes
    /// (or, deferred, asks for) its vector.
    fn check_vector(
        &mut self,
        segment: u32,
        floor: f64,
        now_ms: u64,
        counters: Counters,
    ) -> Arc<Vector> {
        self.vector_work.checks += 1;
        let named = self.segments[segment as usize].is_named();
        let arms = std::mem::take(&mut self.scratch_arms);
        let posts = self.current_posteriors(segment, &arms, now_ms);
        let version = self.arms_version;
        let current = |v: &Vector| v.arms_version == version && v.arms == arms;
        let mut chosen: Option<(Arc<Vector>, Slack)> = None;
        if let Some(sv) = &self.segments[segment as usize].vector {
            if current(&sv.vector) {
                chosen = slack(&sv.vector.made_from, &posts).map(|s| (sv.vector.clone(), s));
            }
        }
        if chosen.is_none() && named {
            if let Some(fresh) = self.fresh_vector(&arms, floor) {
                chosen = slack(&fresh.made_from, &posts).map(|s| (fresh, s));
            }
        }
        let fresh_aging = (self.learning.bucket_ms() / 2).max(1);
        let window = self
            .learning
            .bucket_ms()
            .saturating_mul(16)
            .max(fresh_aging);
        let quiet = |c: &Check| (c.aging_ms.saturating_mul(2)).min(window);
        let previous = self.segments[segment as usize].vector.clone();
        let (vector, slack, aging_ms, wanted) = match chosen {
            Some((v, s)) => (
                v,
                s,
                previous.map_or(fresh_aging, |p| quiet(&p.check)),
                false,
            ),
            None if self.mode == VectorMode::Deferred => {
                // Keep drawing from what the segment has (or the shared
                // vector), restricted to the arms that may be shown now.
                self.want(Target::Segment(segment));
                let old = previous.map(|p| p.vector).or_else(|| self.fresh.clone());
                let v = match old {
                    Some(v) if current(&v) => v,
                    other => Arc::new(self.stand_in(other.as_deref(), &arms, posts, floor)),
                };
                (v, Slack::NONE, fresh_aging, true)
            }
            None => {
                let v = self.make_vector(&arms, posts, floor);
                let s = slack(&v.made_from, &v.made_from).unwrap_or(Slack::NONE);
                (v, s, fresh_aging, false)
            }
        };
        self.scratch_arms = arms;
        self.segment_mut(segment).vector = Some(SegmentVector {
            vector: vector.clone(),
            check: Check {
                ms: now_ms,
                at: counters,
                slack,
                aging_ms,
            },
            wanted,
        });
        vector
    }

    /// The vector of a named segment with no evidence of its own (campaign
    /// prior + pooled prior), remade when that moved (deferred: asked for,
    /// and the one it has until then, if still over these arms).
    fn fresh_vector(&mut self, arms: &[usize], floor: f64) -> Option<Arc<Vector>> {
        let posts = self.fresh_posteriors(arms);
        let version = self.arms_version;
        let usable = |f: &Vector| f.arms_version == version && f.arms == arms;
        match &self.fresh {
            Some(f) if usable(f) && slack(&f.made_from, &posts).is_some() => {
                return Some(f.clone());
            }
            _ => {}
        }
        if self.mode == VectorMode::Deferred {
            self.want(Target::Fresh);
            return self.fresh.clone().filter(|f| usable(f));
        }
        let v = self.make_vector(arms, posts, floor);
        self.fresh = Some(v.clone());
        Some(v)
    }

    fn want(&mut self, target: Target) {
        match target {
            Target::Fresh if !self.wanted.fresh => {
                self.wanted.fresh = true;
                self.wanted.news = true;
            }
            Target::Segment(no) if !self.wanted.segments.contains(&no) => {
                self.wanted.segments.push(no);
                self.wanted.news = true;
            }
            _ => {}
        }
    }

    /// Deferred mode: a vector over `arms` from `old`'s P(best) (0 for arms
    /// it did not have), renormalised, with the floor; the uniform split if
    /// there is none. Exact for what it draws; replaced when the wanted
    /// vector is made.
    fn stand_in(
        &self,
        old: Option<&Vector>,
        arms: &[usize],
        posts: Vec<BetaParams>,
        floor: f64,
    ) -> Vector {
        let mut best: Vec<f64> = arms
            .iter()
            .map(|&a| {
                old.and_then(|v| v.arms.iter().position(|&b| b == a).map(|i| v.best[i]))
                    .unwrap_or(0.0)
            })
            .collect();
        let total: f64 = best.iter().sum();
        if total > 0.0 && total.is_finite() {
            best.iter_mut().for_each(|p| *p /= total);
        } else {
            best.fill(1.0 / arms.len().max(1) as f64);
        }
        let values = arms.iter().map(|&a| self.spec.arms[a].value).collect();
        build(
            arms,
            posts,
            values,
            best,
            floor,
            self.spec.arms.len(),
            self.arms_version,
        )
    }

    /// Deferred mode: the vectors asked for, with the posteriors as they
    /// are now (the segments keep drawing from theirs until they arrive).
    pub(super) fn take_orders(&mut self, now_ms: u64) -> Vec<Order> {
        let PolicySpec::Thompson {
            exploration_floor, ..
        } = self.spec.policy
        else {
            self.wanted = Wanted::default();
            return Vec::new();
        };
        self.wanted.news = false;
        self.gather_showable();
        let arms = std::mem::take(&mut self.scratch_arms);
        let mut orders = Vec::new();
        if std::mem::take(&mut self.wanted.fresh) {
            let posts = self.fresh_posteriors(&arms);
            orders.push(self.order(Target::Fresh, &arms, posts, exploration_floor, now_ms));
        }
        for no in std::mem::take(&mut self.wanted.segments) {
            if (no as usize) < self.segments.len() {
                let posts = self.current_posteriors(no, &arms, now_ms);
                orders.push(self.order(
                    Target::Segment(no),
                    &arms,
                    posts,
                    exploration_floor,
                    now_ms,
                ));
            }
        }
        self.scratch_arms = arms;
        orders
    }

    fn order(
        &self,
        target: Target,
        arms: &[usize],
        posts: Vec<BetaParams>,
        floor: f64,
        now_ms: u64,
    ) -> Order {
        Order {
            target,
            arms: arms.to_vec(),
            values: arms.iter().map(|&a| self.spec.arms[a].value).collect(),
            posts,
            floor,
            all_arms: self.spec.arms.len(),
            arms_version: self.arms_version,
            counters: match target {
                Target::Segment(no) => self.counters(no),
                Target::Fresh => Counters::default(),
            },
            now_ms,
        }
    }

    /// Deferred mode: puts a made vector where it was asked for, unless the
    /// arms changed since (the next decision asks again).
    pub(super) fn install(&mut self, order: &Order, vector: Arc<Vector>) {
        self.vector_work.made += 1;
        if self.dead || order.arms_version != self.arms_version {
            if let Target::Segment(no) = order.target {
                if let Some(sv) = self
                    .segments
                    .get_mut(no as usize)
                    .and_then(|s| s.vector.as_mut())
                {
                    sv.wanted = false;
                }
            }
            return;
        }
        match order.target {
            Target::Fresh => self.fresh = Some(vector),
            Target::Segment(no) => {
                let aging_ms = (self.learning.bucket_ms() / 2).max(1);
                let slack = slack(&order.posts, &order.posts).unwrap_or(Slack::NONE);
                if let Some(seg) = self.segments.get_mut(no as usize) {
                    seg.vector = Some(SegmentVector {
                        vector,
                        check: Check {
                            ms: order.now_ms,
                            at: order.counters,
                            slack,
                            aging_ms,
                        },
                        wanted: false,
                    });
                }
            }
        }
    }

    /// Computes P(best) over `arms` from `posts` (the one function), with
    /// the floor.
    fn make_vector(&mut self, arms: &[usize], posts: Vec<BetaParams>, floor: f64) -> Arc<Vector> {
        self.vector_work.made += 1;
        let values: Vec<f64> = arms.iter().map(|&a| self.spec.arms[a].value).collect();
        let best = prob_best(&posts, values_matter(&values).then_some(values.as_slice()));
        Arc::new(build(
            arms,
            posts,
            values,
            best,
            floor,
            self.spec.arms.len(),
            self.arms_version,
        ))
    }

    /// After the other replicas' statistics changed: every segment checks
    /// its vector at its next decision.
    pub(super) fn recheck_vectors(&mut self) {
        for seg in &mut self.segments {
            if let Some(sv) = &mut seg.vector {
                sv.check.slack = Slack::NONE;
                sv.wanted = false;
            }
        }
        if self.mode == VectorMode::Inline {
            self.fresh = None;
        } else {
            self.want(Target::Fresh);
        }
    }
}

/// The vector of `best` (P(best) over `arms`) with the floor, by arm index.
fn build(
    arms: &[usize],
    posts: Vec<BetaParams>,
    values: Vec<f64>,
    best: Vec<f64>,
    floor: f64,
    all_arms: usize,
    arms_version: u32,
) -> Vector {
    let mut probs = best.clone();
    thompson::with_floor(&mut probs, floor);
    let mut by_arm = vec![0.0; all_arms];
    for (&a, p) in arms.iter().zip(probs) {
        by_arm[a] = p;
    }
    Vector {
        probs: by_arm.into(),
        best,
        arms: arms.to_vec(),
        made_from: posts,
        values,
        arms_version,
        slates: Mutex::new(None),
    }
}

impl Order {
    /// Computes the vector (no lock held).
    pub(super) fn make(&self) -> Arc<Vector> {
        let values = values_matter(&self.values).then_some(self.values.as_slice());
        let best = prob_best(&self.posts, values);
        Arc::new(build(
            &self.arms,
            self.posts.clone(),
            self.values.clone(),
            best,
            self.floor,
            self.all_arms,
            self.arms_version,
        ))
    }
}

/// The engine's queue of campaigns with wanted vectors (deferred mode).
#[derive(Debug, Default)]
pub(super) struct VectorQueue {
    cells: parking_lot::Mutex<Vec<Arc<CampaignCell>>>,
    ready: tokio::sync::Notify,
}

impl super::Engine {
    /// Deferred mode: notes that `cell`'s decisions asked for vectors
    /// (called with its state locked, after a decision).
    pub(super) fn note_wanted_vectors(&self, cell: &Arc<CampaignCell>, st: &mut CampaignState) {
        if st.wanted.news {
            st.wanted.news = false;
            let mut cells = self.vectors.cells.lock();
            if !cells.iter().any(|c| Arc::ptr_eq(c, cell)) {
                cells.push(cell.clone());
            }
            drop(cells);
            self.vectors.ready.notify_one();
        }
    }

    /// Deferred mode: makes every vector decisions asked for, each from its
    /// segment's posterior as it is now, with no campaign lock held while
    /// computing. Returns how many were made. The daemon runs it whenever
    /// [`Self::vectors_wanted`] fires.
    pub fn make_wanted_vectors(&self) -> usize {
        let cells = std::mem::take(&mut *self.vectors.cells.lock());
        let mut made = 0;
        for cell in cells {
            let now = self.clock.now_ms();
            let orders = {
                let mut st = cell.state.lock();
                if st.dead {
                    continue;
                }
                st.take_orders(now)
            };
            let vectors: Vec<Arc<Vector>> = orders.iter().map(Order::make).collect();
            made += vectors.len();
            let mut st = cell.state.lock();
            for (order, vector) in orders.iter().zip(vectors) {
                st.install(order, vector);
            }
        }
        made
    }

    /// Resolves when decisions have asked for vectors (deferred mode).
    pub async fn vectors_wanted(&self) {
        self.vectors.ready.notified().await;
    }

    /// How many Thompson vectors campaign `id` has made, and checks taken
    /// (what the refresh rule costs; tests and benches read it).
    pub fn vector_work(&self, id: &str) -> crate::Result<VectorWork> {
        let cell = self.campaign(id)?;
        let work = cell.state.lock().vector_work;
        Ok(work)
    }
}

impl Vector {
    /// The slates of `k` slots drawn from this vector's posteriors: the
    /// first slot by P(best), the rest from joint posterior draws led by
    /// that arm (see `policy::slate`). Made once per vector, deeper when a
    /// deeper slate is asked for.
    pub(super) fn slates(&self, k: usize, rng: &mut impl rand::Rng) -> Arc<Led> {
        let mut cached = self.slates.lock();
        if let Some(led) = cached.as_ref().filter(|l| l.depth() >= k) {
            return led.clone();
        }
        let n = self.made_from.len();
        let rounds = (SLATE_DRAW_WORK / n.max(1)).clamp(64, SLATE_DRAWS);
        let draws = Draws::collect(n, k, rounds, |s| {
            for ((out, p), v) in s.iter_mut().zip(&self.made_from).zip(&self.values) {
                *out = v * thompson::sample_beta(p, rng);
            }
        });
        let led = Arc::new(Led::new(self.best.clone(), draws));
        *cached = Some(led.clone());
        led
    }
}

impl Slack {
    /// Check at the next decision.
    const NONE: Slack = Slack {
        events: 0.0,
        mean: 0.0,
        rate: 0.0,
    };
}

/// How much `now` can still take before some arm has moved from `then`
/// by the rule; `None` if one already has.
fn slack(then: &[BetaParams], now: &[BetaParams]) -> Option<Slack> {
    if then.len() != now.len() {
        return None;
    }
    let mut out = Slack {
        events: f64::INFINITY,
        mean: f64::INFINITY,
        rate: 0.0,
    };
    for (p0, p1) in then.iter().zip(now) {
        let (s0, s1) = (p0.alpha + p0.beta, p1.alpha + p1.beta);
        let sd0 = (p0.alpha * p0.beta / (s0 * s0 * (s0 + 1.0))).sqrt();
        let strength_room = MOVE_STRENGTH * s0 - (s1 - s0).abs();
        let mean_room = MOVE_MEAN_SD * sd0 - (p1.mean() - p0.mean()).abs();
        if strength_room < 0.0 || mean_room < 0.0 {
            return None;
        }
        out.events = out.events.min(strength_room);
        out.mean = out.mean.min(mean_room * (s1 + 1.0));
        out.rate = out.rate.max(p1.mean());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The rule: a posterior within half its strength and half a standard
    // deviation of its mean keeps the vector, with room for the events that
    // could not move it further; beyond either, it does not.
    #[test]
    fn slack_follows_the_rule() {
        let p = |a: f64, b: f64| BetaParams { alpha: a, beta: b };
        let then = [p(50.0, 950.0), p(5.0, 95.0)];
        let room = slack(&then, &then).unwrap();
        assert!((room.events - 50.0).abs() < 1e-9 && (room.rate - 0.05).abs() < 1e-12);
        // Half a sd of Beta(5, 95) is 0.01084; times 101.
        assert!((room.mean - 1.095).abs() < 1e-3, "{room:?}");
        assert!(slack(&then, &[p(50.0, 950.0), p(5.0, 160.0)]).is_none());
        assert!(slack(&then, &[p(50.0, 950.0), p(7.0, 95.0)]).is_none());
        assert!(slack(&then, &[p(52.0, 951.0), p(5.0, 96.0)]).is_some());
    }
}
