//! Per-segment reports a marketer can read: pulls, reward sum, posterior
//! mean, 95% credible interval and probability of being the best arm.
//!
//! The posteriors are the ones the policy decides with (pending decisions
//! as fractional trials, decay, pooled priors), copied under the campaign
//! lock; the intervals and the probability-best (by quadrature, accurate
//! well below the printed 0.1%) are computed after it is released.

use super::Engine;
use crate::campaign::{validate_segment, PolicySpec, INTERCEPT};
use crate::error::Result;
use crate::journal::format::{Moments, UpliftRow};
use crate::policy::beta::credible_interval_95;
use crate::policy::exposure::{BucketWeights, PendingBuckets};
use crate::policy::linucb::LinearArm;
use crate::policy::prob_best::prob_best;
use crate::policy::thompson::{values_matter, BetaParams};

/// Named segments in a report without a segment filter: the busiest ones.
pub const MAX_REPORTED_SEGMENTS: usize = 1_000;

/// One arm's line in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmReport {
    pub arm_id: String,
    pub pulls: u64,
    pub pending: u64,
    pub reward_sum: f64,
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub prob_best: f64,
    pub retired: bool,
    /// Contextual campaigns: θ per feature ("intercept" first).
    pub theta: Vec<(String, f64)>,
    /// Contextual campaigns: sqrt(x̄ᵀA⁻¹x̄) at the average context seen.
    pub exploration_bonus: f64,
    /// Contextual campaigns: the residual standard deviation of the rewards.
    pub residual_sd: f64,
    /// Resolved outcomes plus pending decisions as fractional trials.
    pub effective_trials: f64,
    /// The arm's value per conversion.
    pub value: f64,
    /// Expected value per decision: mean × value.
    pub expected_value: f64,
    /// Held back by a cap now (campaign-wide line only).
    pub capped: bool,
    /// Impressions and conversions in the current cap period (arms with caps).
    pub period_impressions: u64,
    pub period_conversions: u64,
}

/// All arms of one segment; segment "" is the campaign-wide aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentReport {
    pub segment: String,
    pub arms: Vec<ArmReport>,
    /// Campaigns with a holdout: the policy against the holdout.
    pub uplift: Option<UpliftReport>,
}

/// The policy's mean reward against the holdout's, with a 95% interval for
/// the difference (Welch's unequal-variance normal approximation: the
/// difference of means ± 1.96·sqrt(s²ₚ/nₚ + s²ₕ/nₕ)).
///
/// A side's decisions that are still pending count as the engine's
/// posteriors count them: each with weight G(age), the share of
/// conversions that arrive by that age (learned delay distribution), so
/// `n = resolved + Σ_pending G(age)`, the mean is `Σ reward / n` and the
/// second moment `Σ reward² / n`. Counting resolved decisions only would
/// read both sides high while their non-conversions wait for the timeout
/// (conversions resolve early); the correction follows the delayed-feedback
/// model of Chapelle (KDD 2014) as the posteriors do. The interval is
/// infinite until each side's n reaches 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpliftReport {
    pub policy_decisions: u64,
    pub policy_mean: f64,
    pub holdout_decisions: u64,
    pub holdout_mean: f64,
    pub uplift: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// uplift / holdout_mean (0 when the holdout's mean is 0).
    pub relative_uplift: f64,
}

impl UpliftReport {
    /// From each side's resolved moments and its pending exposure
    /// `Σ_pending G(age)` (0: every decision resolved).
    pub fn from_moments(policy: &Moments, holdout: &Moments, pending: [f64; 2]) -> Self {
        let n_of = |m: &Moments, w: f64| m.n as f64 + w.max(0.0);
        let mean = |m: &Moments, w: f64| {
            let n = n_of(m, w);
            if n > 0.0 {
                m.sum / n
            } else {
                0.0
            }
        };
        // The unbiased variance of the mean, or ∞ below n = 2.
        let var_of_mean = |m: &Moments, w: f64| {
            let n = n_of(m, w);
            if n < 2.0 {
                return f64::INFINITY;
            }
            let mu = m.sum / n;
            ((m.sq - n * mu * mu).max(0.0) / (n - 1.0)) / n
        };
        let (mp, mh) = (mean(policy, pending[0]), mean(holdout, pending[1]));
        let (vp, vh) = (
            var_of_mean(policy, pending[0]),
            var_of_mean(holdout, pending[1]),
        );
        let uplift = mp - mh;
        let half = 1.96 * (vp + vh).sqrt();
        UpliftReport {
            policy_decisions: policy.n,
            policy_mean: mp,
            holdout_decisions: holdout.n,
            holdout_mean: mh,
            uplift,
            ci_low: uplift - half,
            ci_high: uplift + half,
            relative_uplift: if mh != 0.0 { uplift / mh } else { 0.0 },
        }
    }
}

struct Row {
    segment: String,
    posteriors: Vec<BetaParams>,
    tallies: Vec<(u64, u64, f64)>,
    effective: Vec<f64>,
    uplift: Option<UpliftReport>,
}

impl Engine {
    /// Statistics of a campaign: the campaign-wide aggregate first, then each
    /// segment by name (the [`MAX_REPORTED_SEGMENTS`] busiest, if there are
    /// more); or only `segment` when it is not empty.
    pub fn stats(&self, campaign_id: &str, segment: &str) -> Result<Vec<SegmentReport>> {
        validate_segment(segment)?;
        let cell = self.campaign(campaign_id)?;
        let now = self.clock.now_ms();
        let (rows, arms, linear, caps) = {
            let mut st = cell.state.lock();
            st.check_caps(now);
            let w = st.learning.weights(now).clone();
            let st = &*st;
            let holdout = st.spec.holdout_fraction > 0.0;
            // Pending decisions by G(age) alone: the moments are not decayed.
            let g = BucketWeights::at(now, &st.learning.delay, None);
            let exposure = |p: &[PendingBuckets; 2]| [p[0].exposure(&g), p[1].exposure(&g)];
            let uplift_of = |seg: Option<&super::state::Segment>| {
                if !holdout {
                    return None;
                }
                let u = &st.budgets.uplift;
                let p = &st.budgets.uplift_pending;
                let (row, pending) = match seg {
                    None => (
                        u.iter().fold(UpliftRow::default(), |acc, r| UpliftRow {
                            policy: acc.policy.plus(&r.policy),
                            holdout: acc.holdout.plus(&r.holdout),
                        }),
                        p.iter()
                            .map(exposure)
                            .fold([0.0; 2], |a, e| [a[0] + e[0], a[1] + e[1]]),
                    ),
                    Some(s) => {
                        let no = st.segment_index.get(&s.name).map(|&no| no as usize);
                        (
                            no.and_then(|i| u.get(i)).copied().unwrap_or_default(),
                            no.and_then(|i| p.get(i)).map_or([0.0; 2], exposure),
                        )
                    }
                };
                Some(UpliftReport::from_moments(
                    &row.policy,
                    &row.holdout,
                    pending,
                ))
            };
            let caps: Vec<(bool, u64, u64)> = (0..st.spec.arms.len())
                .map(|a| {
                    let c = st.budgets.counts.get(a).copied().unwrap_or_default();
                    (st.is_blocked(a), c.impressions, c.conversions)
                })
                .collect();
            let pools = st.current_pools(&w, now);
            let mut rows = Vec::new();
            let mut push = |name: &str, seg: Option<&super::state::Segment>| {
                let n = st.spec.arms.len();
                let tallies = (0..n)
                    .map(|a| {
                        let t = match seg {
                            None => st.aggregate[a],
                            Some(s) => s.arms.get(a).copied().unwrap_or_default(),
                        };
                        (t.total_n(), t.total_pending(), t.total_sum())
                    })
                    .collect();
                // Contextual campaigns learn any finite reward: no Beta
                // posterior there (their lines are the ridge statistics').
                let contextual = !st.spec.policy.features().is_empty();
                let flat = BetaParams {
                    alpha: 1.0,
                    beta: 1.0,
                };
                let posteriors = (0..n)
                    .map(|a| {
                        if contextual {
                            flat
                        } else {
                            st.posterior_for(seg, a, &w, now, Some(&pools))
                        }
                    })
                    .collect();
                let effective = (0..n).map(|a| st.evidence_for(seg, a, &w, now).n).collect();
                rows.push(Row {
                    segment: name.to_string(),
                    posteriors,
                    tallies,
                    effective,
                    uplift: uplift_of(seg),
                });
            };
            if segment.is_empty() {
                push("", None);
                let mut named: Vec<&super::state::Segment> = st
                    .segments
                    .iter()
                    .filter(|s| !s.name.is_empty() && !s.name.starts_with('\u{1}'))
                    .collect();
                if named.len() > MAX_REPORTED_SEGMENTS {
                    // Keep the busiest segments; a filter reaches any other.
                    let pulls = |g: &super::state::Segment| {
                        g.arms
                            .iter()
                            .map(|a| a.total_n() + a.total_pending())
                            .sum::<u64>()
                    };
                    named.sort_by_cached_key(|g| std::cmp::Reverse(pulls(g)));
                    named.truncate(MAX_REPORTED_SEGMENTS);
                }
                named.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                for seg in named {
                    push(&seg.name, Some(seg));
                }
            } else if let Some(&no) = st.segment_index.get(segment) {
                push(segment, Some(&st.segments[no as usize]));
            } else {
                push(segment, Some(&super::state::Segment::empty(segment.into())));
            }
            let linear = match &st.spec.policy {
                PolicySpec::LinUcb {
                    lambda, features, ..
                }
                | PolicySpec::LinTs {
                    lambda, features, ..
                } => Some(LinearSnapshot {
                    arms: st.linear.clone(),
                    lambda: *lambda,
                    names: std::iter::once(INTERCEPT.to_string())
                        .chain(features.iter().cloned())
                        .collect(),
                }),
                _ => None,
            };
            (rows, st.spec.arms.clone(), linear, caps)
        };
        let linear = linear.map(|l| l.report());
        let active: Vec<usize> = (0..arms.len()).filter(|&a| !arms[a].retired).collect();
        Ok(rows
            .into_iter()
            .map(|row| {
                let active_posts: Vec<BetaParams> =
                    active.iter().map(|&a| row.posteriors[a]).collect();
                let values: Vec<f64> = active.iter().map(|&a| arms[a].value).collect();
                let pb = prob_best(
                    &active_posts,
                    values_matter(&values).then_some(values.as_slice()),
                );
                let campaign_wide = row.segment.is_empty();
                let mut best = vec![0.0; arms.len()];
                for (&a, p) in active.iter().zip(pb) {
                    best[a] = p;
                }
                let arms = arms
                    .iter()
                    .enumerate()
                    .map(|(a, spec)| {
                        let (n, pending, sum) = row.tallies[a];
                        let post = row.posteriors[a];
                        let (ci_low, ci_high) = credible_interval_95(post.alpha, post.beta);
                        let mut report = ArmReport {
                            arm_id: spec.id.clone(),
                            pulls: n + pending,
                            pending,
                            reward_sum: sum,
                            mean: post.mean(),
                            ci_low,
                            ci_high,
                            prob_best: best[a],
                            retired: spec.retired,
                            theta: Vec::new(),
                            exploration_bonus: 0.0,
                            residual_sd: 0.0,
                            effective_trials: row.effective[a],
                            value: spec.value,
                            expected_value: post.mean() * spec.value,
                            capped: campaign_wide && caps[a].0,
                            period_impressions: if spec.budget.is_none() { 0 } else { caps[a].1 },
                            period_conversions: if spec.budget.is_none() { 0 } else { caps[a].2 },
                        };
                        if let Some(lin) = linear.as_ref().and_then(|l| l.get(a)) {
                            report.mean = lin.prediction;
                            let half = 1.96 * lin.residual_sd * lin.bonus;
                            report.ci_low = lin.prediction - half;
                            report.ci_high = lin.prediction + half;
                            report.residual_sd = lin.residual_sd;
                            report.prob_best = 0.0;
                            report.theta = lin.theta.clone();
                            report.exploration_bonus = lin.bonus;
                            report.expected_value = lin.prediction;
                        }
                        report
                    })
                    .collect();
                SegmentReport {
                    segment: row.segment,
                    arms,
                    uplift: row.uplift,
                }
            })
            .collect())
    }
}

/// A copy of a contextual campaign's ridge statistics, taken under the lock.
struct LinearSnapshot {
    arms: Vec<LinearArm>,
    lambda: f64,
    names: Vec<String>,
}

/// What a report says about one contextual arm.
struct LinearLine {
    theta: Vec<(String, f64)>,
    prediction: f64,
    bonus: f64,
    residual_sd: f64,
}

impl LinearSnapshot {
    /// θ per arm, and the prediction and bonus at the average context. The
    /// average is read off the statistics themselves: with the intercept
    /// first, row 0 of `A − λI` summed over arms is `(n, Σx₁, …, Σx_d)`.
    fn report(self) -> Vec<LinearLine> {
        let d = self.names.len();
        let mut sums = vec![0.0; d];
        for arm in &self.arms {
            for (j, s) in sums.iter_mut().enumerate() {
                let a = arm.a.get(j).copied().unwrap_or(0.0);
                *s += if j == 0 { a - self.lambda } else { a };
            }
        }
        let n = sums[0];
        let mean: Vec<f64> = if n > 0.5 {
            sums.iter().map(|s| s / n).collect()
        } else {
            std::iter::once(1.0)
                .chain(std::iter::repeat_n(0.0, d - 1))
                .collect()
        };
        self.arms
            .iter()
            .map(|arm| LinearLine {
                theta: self.names.iter().cloned().zip(arm.theta()).collect(),
                prediction: arm.predict(&mean),
                bonus: arm.bonus(&mean),
                residual_sd: arm.residual_sd(),
            })
            .collect()
    }
}
