//! The estimators: IPS, SNIPS, the direct method (DM) and doubly robust (DR),
//! each with a normal 95% interval, and the cross-fitted ridge direct model.
//!
//! Everything here is plain arithmetic on slices, so the formulas can be
//! tested on hand-computed logs; [`super::evaluate`] wires them to a log and a
//! policy. No clipping: w_t = π(a_t | x_t, k_t) / pscore_t as logged.
//!
//! The direct model q̂(x, a, k) is ridge regression of reward on
//! [1, one-hot(action), one-hot(position), standardised context], the
//! intercept unpenalised, solved by Cholesky. It is cross-fitted over two
//! folds (events with even 0-based index, and odd): each fold is predicted by
//! the model fitted on the other, so no prediction has seen its own reward.

use super::{Estimate, EvalPolicy, Log, OpeError};

/// The normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.96;

/// Σ xs with Neumaier's compensated summation: the rounding error of the
/// running sum is carried along, so the result does not depend on the
/// order of 10⁴ terms the way a naive sum does.
pub fn accurate_sum<I: IntoIterator<Item = f64>>(xs: I) -> f64 {
    let (mut sum, mut compensation) = (0.0f64, 0.0f64);
    for x in xs {
        let t = sum + x;
        compensation += if sum.abs() >= x.abs() {
            (sum - t) + x
        } else {
            (x - t) + sum
        };
        sum = t;
    }
    sum + compensation
}

/// Mean of `terms` ± 1.96 · sample sd / √n. Needs n ≥ 2.
pub fn normal_interval(terms: &[f64]) -> Estimate {
    debug_assert!(terms.len() >= 2);
    let n = terms.len() as f64;
    let mean = accurate_sum(terms.iter().copied()) / n;
    let var = accurate_sum(terms.iter().map(|t| (t - mean) * (t - mean))) / (n - 1.0);
    let half = Z95 * var.sqrt() / n.sqrt();
    Estimate {
        value: mean,
        ci_low: mean - half,
        ci_high: mean + half,
    }
}

/// IPS = (1/n) Σ r_t w_t.
pub fn ips(rewards: &[f64], weights: &[f64]) -> Estimate {
    debug_assert_eq!(rewards.len(), weights.len());
    let terms: Vec<f64> = rewards.iter().zip(weights).map(|(r, w)| r * w).collect();
    normal_interval(&terms)
}

/// SNIPS = Σ r_t w_t / Σ w_t, its interval by the delta method (terms
/// w_t (r_t − SNIPS) / mean(w)). Σw = 0 is an error: no logged decision
/// agrees with the policy.
pub fn snips(rewards: &[f64], weights: &[f64]) -> Result<Estimate, OpeError> {
    debug_assert_eq!(rewards.len(), weights.len());
    let sum_w = accurate_sum(weights.iter().copied());
    if sum_w <= 0.0 {
        return Err(OpeError::NoEstimate(
            "the evaluation policy never agrees with the log".to_string(),
        ));
    }
    let value = accurate_sum(rewards.iter().zip(weights).map(|(r, w)| r * w)) / sum_w;
    let mean_w = sum_w / weights.len() as f64;
    let terms: Vec<f64> = rewards
        .iter()
        .zip(weights)
        .map(|(r, w)| w * (r - value) / mean_w)
        .collect();
    let spread = normal_interval(&terms);
    let half = spread.half_width();
    Ok(Estimate {
        value,
        ci_low: value - half,
        ci_high: value + half,
    })
}

/// DR = (1/n) Σ [ q_policy_t + w_t (r_t − q_logged_t) ], where q_policy_t =
/// Σ_a π(a|x_t,k_t) q̂(x_t,a,k_t) and q_logged_t = q̂(x_t,a_t,k_t).
pub fn doubly_robust(
    rewards: &[f64],
    weights: &[f64],
    q_logged: &[f64],
    q_policy: &[f64],
) -> Estimate {
    debug_assert!(
        rewards.len() == weights.len()
            && weights.len() == q_logged.len()
            && q_logged.len() == q_policy.len()
    );
    let terms: Vec<f64> = (0..rewards.len())
        .map(|t| q_policy[t] + weights[t] * (rewards[t] - q_logged[t]))
        .collect();
    normal_interval(&terms)
}

/// π(· | event) over the log's actions for every event, checked to be a
/// probability distribution (each in [0, 1], summing to 1 within 1e-6).
pub fn policy_probabilities(log: &Log, policy: &dyn EvalPolicy) -> Result<Vec<Vec<f64>>, OpeError> {
    let k = log.actions.len();
    let mut all = Vec::with_capacity(log.events.len());
    for t in 0..log.events.len() {
        let probs = policy.distribution(log, t);
        let sum: f64 = probs.iter().sum();
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) || (sum - 1.0).abs() > 1e-6 {
            return Err(OpeError::Policy(format!(
                "{} is not a probability distribution over the log's {k} actions at event {} \
                 (its probabilities sum to {sum})",
                policy.name(),
                t + 1
            )));
        }
        all.push(probs);
    }
    Ok(all)
}

/// The cross-fitted direct model's predictions for every event.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectModel {
    /// q̂(x_t, a_t, k_t): the logged action.
    pub q_logged: Vec<f64>,
    /// Σ_a π(a | x_t, k_t) q̂(x_t, a, k_t): the evaluation policy's expectation.
    pub q_policy: Vec<f64>,
}

/// Fits the ridge direct model on each fold, predicts the other. `probs` is
/// [`policy_probabilities`]'s output. Needs at least 2 events.
pub fn cross_fit_direct_model(
    log: &Log,
    probs: &[Vec<f64>],
    lambda: f64,
) -> Result<DirectModel, OpeError> {
    let n = log.events.len();
    debug_assert!(n >= 2 && probs.len() == n);
    let mut q_logged = vec![0.0; n];
    let mut q_policy = vec![0.0; n];
    for fold in 0..2 {
        let train: Vec<usize> = (0..n).filter(|t| t % 2 != fold).collect();
        let model = Ridge::fit(log, &train, lambda)?;
        for t in (0..n).filter(|t| t % 2 == fold) {
            let event = &log.events[t];
            let base = model.base(event);
            q_logged[t] = base + model.action[event.action];
            q_policy[t] = probs[t]
                .iter()
                .zip(&model.action)
                .map(|(p, b)| p * (base + b))
                .sum();
        }
    }
    Ok(DirectModel { q_logged, q_policy })
}

/// A fitted ridge model of reward on [1, one-hot(action), one-hot(position),
/// standardised non-constant context].
#[derive(Debug, Clone, PartialEq)]
pub struct Ridge {
    pub intercept: f64,
    /// Coefficient of each action's indicator.
    pub action: Vec<f64>,
    /// Coefficient of each position's indicator.
    pub position: Vec<f64>,
    /// (column, mean, sd, coefficient) of each context column used.
    pub context: Vec<(usize, f64, f64, f64)>,
}

impl Ridge {
    /// Fits on the events `rows` of `log` with penalty `lambda` on every
    /// coefficient but the intercept.
    pub fn fit(log: &Log, rows: &[usize], lambda: f64) -> Result<Ridge, OpeError> {
        let (k, p) = (log.actions.len(), log.positions);
        let m = rows.len() as f64;
        let mut scaling = Vec::new();
        for c in 0..log.context_names.len() {
            let values = rows.iter().map(|&t| log.events[t].context[c]);
            let (lo, hi) = values
                .clone()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
            if lo == hi {
                continue;
            }
            let mean = values.clone().sum::<f64>() / m;
            let sd = (values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / m).sqrt();
            if sd > 0.0 {
                scaling.push((c, mean, sd));
            }
        }
        let d = 1 + k + p + scaling.len();
        let mut gram = vec![0.0; d * d];
        let mut xty = vec![0.0; d];
        let mut x = vec![0.0; d];
        for &t in rows {
            let e = &log.events[t];
            x.iter_mut().for_each(|v| *v = 0.0);
            x[0] = 1.0;
            x[1 + e.action] = 1.0;
            x[1 + k + e.position] = 1.0;
            for (j, &(c, mean, sd)) in scaling.iter().enumerate() {
                x[1 + k + p + j] = (e.context[c] - mean) / sd;
            }
            for i in 0..d {
                if x[i] == 0.0 {
                    continue;
                }
                xty[i] += x[i] * e.reward;
                let row = &mut gram[i * d..(i + 1) * d];
                for j in i..d {
                    row[j] += x[i] * x[j];
                }
            }
        }
        for i in 0..d {
            for j in 0..i {
                gram[i * d + j] = gram[j * d + i];
            }
            if i > 0 {
                gram[i * d + i] += lambda;
            }
        }
        let beta = cholesky_solve(&mut gram, d, &xty).ok_or_else(|| {
            OpeError::NoEstimate(
                "the direct model's normal equations are not positive definite".to_string(),
            )
        })?;
        Ok(Ridge {
            intercept: beta[0],
            action: beta[1..1 + k].to_vec(),
            position: beta[1 + k..1 + k + p].to_vec(),
            context: scaling
                .iter()
                .zip(&beta[1 + k + p..])
                .map(|(&(c, mean, sd), &b)| (c, mean, sd, b))
                .collect(),
        })
    }

    /// The prediction without the action's coefficient.
    pub fn base(&self, event: &super::LoggedEvent) -> f64 {
        self.intercept
            + self.position[event.position]
            + self
                .context
                .iter()
                .map(|&(c, mean, sd, b)| b * (event.context[c] - mean) / sd)
                .sum::<f64>()
    }
}

/// Solves A x = b for a symmetric positive-definite `a` (row-major d × d),
/// overwriting `a` with its Cholesky factor L (lower triangle). `None` when
/// A is not positive definite (a pivot ≤ 0 or not finite).
pub fn cholesky_solve(a: &mut [f64], d: usize, b: &[f64]) -> Option<Vec<f64>> {
    debug_assert!(a.len() == d * d && b.len() == d);
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        if !(diag > 0.0 && diag.is_finite()) {
            return None;
        }
        let ljj = diag.sqrt();
        a[j * d + j] = ljj;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / ljj;
        }
    }
    // L y = b, then Lᵀ x = y.
    let mut y = b.to_vec();
    for i in 0..d {
        for k in 0..i {
            y[i] -= a[i * d + k] * y[k];
        }
        y[i] /= a[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            y[i] -= a[k * d + i] * y[k];
        }
        y[i] /= a[i * d + i];
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + b.abs())
    }

    // Cholesky solves a known 3 × 3 system exactly (to 1e-12).
    #[test]
    fn cholesky_known_system() {
        // A = L Lᵀ with L = [[2,0,0],[1,3,0],[-1,2,4]]; x = [1,-2,3] → b = A x.
        let mut a = vec![4.0, 2.0, -2.0, 2.0, 10.0, 5.0, -2.0, 5.0, 21.0];
        let b = [-6.0, -3.0, 51.0];
        let x = cholesky_solve(&mut a, 3, &b);
        let x = x.unwrap_or_default();
        assert_eq!(x.len(), 3);
        for (xi, want) in x.iter().zip([1.0, -2.0, 3.0]) {
            assert!(close(*xi, want), "{x:?}");
        }
        assert!(close(a[3], 1.0) && close(a[4], 3.0) && close(a[8], 4.0));
    }

    // Compensated summation keeps the small terms a naive sum loses.
    #[test]
    fn accurate_sum_keeps_small_terms() {
        assert_eq!(accurate_sum([1e16, 1.0, -1e16]), 1.0);
        assert_eq!(accurate_sum(vec![0.1; 10]), 1.0);
        assert_eq!(accurate_sum(std::iter::empty()), 0.0);
    }

    // A matrix that is not positive definite is refused, not solved.
    #[test]
    fn cholesky_rejects_indefinite() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(cholesky_solve(&mut a, 2, &[1.0, 1.0]), None);
    }

    // A hand-computed two-event interval: mean ± 1.96 · sd / √n with the n−1 sd.
    #[test]
    fn normal_interval_by_hand() {
        // terms 1, 3: mean 2, sd √2, half-width 1.96 · √2 / √2 = 1.96.
        let e = normal_interval(&[1.0, 3.0]);
        assert!(close(e.value, 2.0) && close(e.ci_low, 0.04) && close(e.ci_high, 3.96));
    }

    // SNIPS with Σw = 0 is the "never agrees" error, not NaN.
    #[test]
    fn snips_without_agreement_is_an_error() {
        assert!(matches!(
            snips(&[1.0, 0.0], &[0.0, 0.0]),
            Err(OpeError::NoEstimate(_))
        ));
    }
}
