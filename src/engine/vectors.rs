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
//! strength α + β by more than [`MOVE_STRENGTH`] (relative), or its mean
//! by more than [`MOVE_MEAN_SD`] of its standard deviation then. Nothing
//! else (not time, not traffic) recomputes it: a busy segment with a
//! settled posterior and a 1-minute window keeps its vector.
//!
//! **When that is checked.** A check reads every arm's posterior (one
//! evidence read each, O(arms), no quadrature). It is due when enough could
//! have happened since the last one for an arm to move: each decision or
//! outcome in the segment changes one arm's strength by at most one trial
//! and its mean by at most (reward + mean)/(α + β + 1), so after a check
//! the segment may take as many events, and as much reward, as the
//! smallest arm's slack ([`Slack`]); pending decisions age (their weight G(age) grows)
//! and the pools move (other segments learn), so a check is also due after
//! half a time bucket of the window when the pending decisions alone could
//! use the slack, after 1/32 of a decay half-life, and when the pooled
//! evidence grew by [`POOL_MOVE`].
//!
//! **Sparse segments share one vector.** A named segment's posterior is
//! the campaign prior plus the pooled prior plus its own evidence; with
//! little evidence of its own it is within the rule of the campaign's
//! "no evidence of its own" vector ([`CampaignState::fresh`]) and draws
//! from that: ten thousand sparse segments cost one vector, not ten
//! thousand.
//!
//! Guarded by the campaign's lock, like the rest of its state.

use super::state::CampaignState;
use crate::policy::exposure::BucketWeights;
use crate::policy::pooling::Evidence;
use crate::policy::prob_best::prob_best;
use crate::policy::slate::{Draws, Led};
use crate::policy::thompson::{self, values_matter, BetaParams};
use parking_lot::Mutex;
use std::sync::Arc;

/// A vector is recomputed when an arm's strength α + β moved by this much
/// (relative) since it was made...
pub const MOVE_STRENGTH: f64 = 0.05;
/// ...or its mean by this many of its standard deviations then.
pub const MOVE_MEAN_SD: f64 = 0.1;
/// A check is due when the pooled evidence grew by this much (relative).
pub const POOL_MOVE: f64 = 0.02;

/// Joint posterior draws a Thompson slate's later slots come from, at most
/// (fewer for many arms, so that draws × arms stays below
/// [`SLATE_DRAW_WORK`]).
const SLATE_DRAWS: usize = 1024;
const SLATE_DRAW_WORK: usize = 1 << 18;

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
}

/// What a segment looked like at its last check, and how much may happen
/// before the next.
#[derive(Debug, Clone, Copy)]
struct Check {
    ms: u64,
    at: Counters,
    slack: Slack,
}

/// A segment's running totals (campaign-wide for the unnamed segment).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Decisions made (resolved + pending), outcomes, pending decisions.
    decisions: u64,
    outcomes: u64,
    pending: u64,
    /// Rewards learned.
    reward_sum: f64,
    /// The pooled evidence (named segments).
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
            if sv.vector.arms_version == version && !self.check_due(&sv.check, &counters, now_ms) {
                return sv.vector.clone();
            }
        }
        self.check_vector(segment, floor, now_ms, counters)
    }

    fn counters(&self, segment: u32) -> Counters {
        let seg = &self.segments[segment as usize];
        let tallies = if seg.is_named() {
            &seg.arms
        } else {
            &self.aggregate
        };
        let mut c = Counters::default();
        for t in tallies {
            c.outcomes += t.total_n();
            c.pending += t.total_pending();
            c.reward_sum += t.total_sum();
        }
        c.decisions = c.outcomes + c.pending;
        if seg.is_named() {
            c.pooled_n = self.learning.pools.iter().map(|p| p.n).sum();
        }
        c
    }

    fn check_due(&self, c: &Check, now: &Counters, now_ms: u64) -> bool {
        let events = (now.decisions.saturating_sub(c.at.decisions)
            + now.outcomes.saturating_sub(c.at.outcomes)) as f64;
        let rewards = (now.reward_sum - c.at.reward_sum).abs();
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
        let aging = (self.learning.bucket_ms() / 2).max(1);
        let could_age = c.at.pending as f64 + events;
        if (could_age >= c.slack.events || c.slack.rate * could_age >= c.slack.mean)
            && now_ms >= c.ms + aging
        {
            return true;
        }
        self.learning
            .half_life_ms()
            .is_some_and(|h| now_ms as f64 >= c.ms as f64 + h / 32.0)
    }

    /// Reads segment `segment`'s posteriors and keeps, shares or remakes
    /// its vector.
    fn check_vector(
        &mut self,
        segment: u32,
        floor: f64,
        now_ms: u64,
        counters: Counters,
    ) -> Arc<Vector> {
        self.vector_work.checks += 1;
        let w = self.learning.weights(now_ms).clone();
        let named = self.segments[segment as usize].is_named();
        if named {
            self.repool(segment, &w, now_ms);
        }
        let key = named.then_some(segment);
        let arms = std::mem::take(&mut self.scratch_arms);
        let posts: Vec<BetaParams> = arms
            .iter()
            .map(|&a| self.posterior_with(key, a, &w, now_ms))
            .collect();
        let version = self.arms_version;
        let current = |v: &Vector| v.arms_version == version && v.arms == arms;
        let mut chosen: Option<(Arc<Vector>, Slack)> = None;
        if let Some(sv) = &self.segments[segment as usize].vector {
            if current(&sv.vector) {
                chosen = slack(&sv.vector.made_from, &posts).map(|s| (sv.vector.clone(), s));
            }
        }
        if chosen.is_none() && named {
            let fresh = self.fresh_vector(&arms, &w, floor, now_ms);
            chosen = slack(&fresh.made_from, &posts).map(|s| (fresh, s));
        }
        let (vector, slack) = match chosen {
            Some(found) => found,
            None => {
                let v = self.make_vector(&arms, posts, floor);
                let s = slack(&v.made_from, &v.made_from).unwrap_or(Slack::NONE);
                (v, s)
            }
        };
        self.scratch_arms = arms;
        self.segment_mut(segment).vector = Some(SegmentVector {
            vector: vector.clone(),
            check: Check {
                ms: now_ms,
                at: counters,
                slack,
            },
        });
        vector
    }

    /// The vector of a named segment with no evidence of its own (campaign
    /// prior + pooled prior), remade when that moved.
    fn fresh_vector(
        &mut self,
        arms: &[usize],
        w: &BucketWeights,
        floor: f64,
        now_ms: u64,
    ) -> Arc<Vector> {
        let _ = (w, now_ms);
        let prior = self.prior();
        let posts: Vec<BetaParams> = arms
            .iter()
            .map(|&a| {
                let pooled = self.pooled_prior(&self.learning.pools, Evidence::default(), a);
                prior.posterior(Evidence::default(), pooled)
            })
            .collect();
        let version = self.arms_version;
        if let Some(f) = &self.fresh {
            if f.arms_version == version && f.arms == arms && slack(&f.made_from, &posts).is_some()
            {
                return f.clone();
            }
        }
        let v = self.make_vector(arms, posts, floor);
        self.fresh = Some(v.clone());
        v
    }

    /// Computes P(best) over `arms` from `posts` (the one function), with
    /// the floor.
    fn make_vector(&mut self, arms: &[usize], posts: Vec<BetaParams>, floor: f64) -> Arc<Vector> {
        self.vector_work.made += 1;
        let values: Vec<f64> = arms.iter().map(|&a| self.spec.arms[a].value).collect();
        let best = prob_best(&posts, values_matter(&values).then_some(values.as_slice()));
        let mut probs = best.clone();
        thompson::with_floor(&mut probs, floor);
        let mut by_arm = vec![0.0; self.spec.arms.len()];
        for (&a, p) in arms.iter().zip(probs) {
            by_arm[a] = p;
        }
        Arc::new(Vector {
            probs: by_arm.into(),
            best,
            arms: arms.to_vec(),
            made_from: posts,
            values,
            arms_version: self.arms_version,
            slates: Mutex::new(None),
        })
    }

    /// After the other replicas' statistics changed: every segment checks
    /// its vector at its next decision.
    pub(super) fn recheck_vectors(&mut self) {
        for seg in &mut self.segments {
            if let Some(sv) = &mut seg.vector {
                sv.check.slack = Slack::NONE;
            }
        }
        self.fresh = None;
    }
}

impl super::Engine {
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

    // The rule: a posterior within 5% of its strength and 0.1 sd of its
    // mean keeps the vector, with room for the events that could not move
    // it further; beyond either, it does not.
    #[test]
    fn slack_follows_the_rule() {
        let p = |a: f64, b: f64| BetaParams { alpha: a, beta: b };
        let then = [p(50.0, 950.0), p(5.0, 95.0)];
        let room = slack(&then, &then).unwrap();
        assert!((room.events - 5.0).abs() < 1e-9 && (room.rate - 0.05).abs() < 1e-12);
        // 0.1 sd of Beta(5, 95) is 0.00217; times 101.
        assert!((room.mean - 0.2193).abs() < 1e-3, "{room:?}");
        assert!(slack(&then, &[p(50.0, 950.0), p(5.0, 101.0)]).is_none());
        assert!(slack(&then, &[p(54.0, 950.0), p(5.0, 95.0)]).is_none());
        assert!(slack(&then, &[p(50.0, 951.0), p(5.0, 96.0)]).is_some());
    }
}
