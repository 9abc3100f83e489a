//! Beta-Bernoulli Thompson sampling over a segment's arms.
//!
//! Owns the sampling rule and the propensity estimate; knows nothing about
//! campaigns, storage or time. Sufficient statistics are additive
//! ([`ArmCounts`]: outcomes and reward sum), so replicas can merge them.
//!
//! **Posterior.** An arm's posterior is Beta(α₀ + y, β₀ + n − y) from its
//! effective evidence (n trials, y successes: resolved outcomes plus pending
//! decisions as fractional trials, see `policy::delay`), on top of the
//! campaign prior and, in a named segment, the pooled prior estimated from
//! the other segments (`policy::pooling`).
//!
//! **Propensity is exact by construction.** Thompson sampling picks arm k
//! with probability P(k is the argmax of one posterior draw). banditd
//! computes that vector ([`prob_best_exact`], by quadrature; or, for many
//! arms, [`prob_best`], by Monte Carlo), caches it per segment until the
//! posterior has moved, mixes in the campaign's exploration floor
//! ([`with_floor`]), and draws the arm *from that vector*
//! ([`sample_index`]): the logged propensity is the probability the arm was
//! drawn with, whatever the accuracy of the estimate.

use super::pooling::{Evidence, PooledPrior};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Joint posterior draws used for one propensity estimate.
pub const PROPENSITY_DRAWS: u32 = 1024;

/// Additive sufficient statistics of one arm: `n` resolved outcomes whose
/// rewards sum to `sum` (successes = sum, failures = n − sum).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCounts {
    pub n: u64,
    pub sum: f64,
}

impl ArmCounts {
    /// Learns one reward (in [0, 1] for Beta posteriors; any finite value
    /// for the plain tallies of contextual campaigns).
    pub fn add(&mut self, reward: f64) {
        debug_assert!(reward.is_finite());
        self.n += 1;
        self.sum += reward;
    }

    pub fn failures(&self) -> f64 {
        (self.n as f64 - self.sum).max(0.0)
    }

    /// `self − other`, clamped at zero (used for leave-one-out pooling).
    pub fn minus(&self, other: &ArmCounts) -> ArmCounts {
        ArmCounts {
            n: self.n.saturating_sub(other.n),
            sum: (self.sum - other.sum).max(0.0),
        }
    }
}

/// Beta posterior parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaParams {
    pub alpha: f64,
    pub beta: f64,
}

impl BetaParams {
    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }
}

/// The campaign prior of a Thompson campaign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThompsonPrior {
    pub alpha: f64,
    pub beta: f64,
}

impl ThompsonPrior {
    /// Posterior of an arm from its (effective) evidence, on top of the
    /// campaign prior and, for a named segment, the pooled prior estimated
    /// from the other segments (see `policy::pooling`).
    pub fn posterior(&self, own: Evidence, pooled: Option<PooledPrior>) -> BetaParams {
        let (mut alpha, mut beta) = (
            self.alpha + own.y.max(0.0),
            self.beta + (own.n - own.y).max(0.0),
        );
        if let Some(p) = pooled {
            alpha += p.mean * p.strength;
            beta += (1.0 - p.mean) * p.strength;
        }
        BetaParams { alpha, beta }
    }
}

/// Samples an index with the given probabilities (which sum to 1) with
/// one uniform draw.
pub fn sample_index<R: Rng + ?Sized>(probs: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    // Rounding left the last bit of mass: the last arm with any.
    probs.iter().rposition(|p| *p > 0.0).unwrap_or(0)
}

/// Mixes `probs` with the uniform distribution so that no entry is below
/// `floor` (a floor at or above 1/K gives the uniform split):
/// `p' = floor + (1 − K·floor)·p`.
pub fn with_floor(probs: &mut [f64], floor: f64) {
    let k = probs.len() as f64;
    let floor = floor.clamp(0.0, 1.0 / k);
    let scale = 1.0 - k * floor;
    for p in probs.iter_mut() {
        *p = floor + scale * *p;
    }
}

/// P(arm i is the argmax) for independent Beta posteriors, by quadrature
/// over a grid that puts `points_per_arm` points within ±8 standard
/// deviations of every arm's mean (at most 4,096 in all). Each F_j on the
/// grid is integrated by Simpson's rule from the exact incomplete beta at
/// the grid's start, and P(i) = ∫ f_i Π_{j≠i} F_j by the trapezoid rule.
/// An arm at the boundary (α ≤ 1 or β ≤ 1: a density that is steepest, or
/// unbounded, at 0 or 1) gets the exact incomplete beta at every grid
/// point and P(i) = ∫ Π_{j≠i} F_j dF_i, which stays finite; the grid is
/// then twice as fine. Deterministic; tested against the closed form and
/// against Monte Carlo.
pub fn prob_best_exact(posteriors: &[BetaParams], points_per_arm: usize) -> Vec<f64> {
    let k = posteriors.len();
    if k <= 1 {
        return vec![1.0; k];
    }
    let boundary: Vec<bool> = posteriors
        .iter()
        .map(|p| p.alpha <= 1.0 || p.beta <= 1.0)
        .collect();
    let fine = if boundary.contains(&true) { 2 } else { 1 };
    let per_arm = (points_per_arm * fine).clamp(4, 4096 / k.max(1)).max(4);
    let mut grid: Vec<f64> = Vec::with_capacity(k * per_arm + 2);
    for p in posteriors {
        let (a, b) = (p.alpha, p.beta);
        let mean = a / (a + b);
        let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
        for i in 0..per_arm {
            let z = -8.0 + 16.0 * i as f64 / (per_arm - 1) as f64;
            grid.push((mean + z * sd).clamp(0.0, 1.0));
        }
    }
    grid.push(0.0);
    grid.push(1.0);
    grid.sort_by(f64::total_cmp);
    grid.dedup_by(|a, b| (*a - *b).abs() < 1e-15);
    let m = grid.len();
    let log_norm: Vec<f64> = posteriors
        .iter()
        .map(|p| super::beta::ln_beta(p.alpha, p.beta))
        .collect();
    // ln x and ln(1 − x) at the grid points and the interval midpoints,
    // shared by every arm's density.
    let logs = |x: f64| {
        let x = x.clamp(1e-300, 1.0 - 1e-16);
        (x.ln(), (-x).ln_1p())
    };
    let at: Vec<(f64, f64)> = grid.iter().map(|&x| logs(x)).collect();
    let mid: Vec<(f64, f64)> = grid.windows(2).map(|w| logs(0.5 * (w[0] + w[1]))).collect();
    let density = |j: usize, (lx, l1x): (f64, f64)| {
        let p = posteriors[j];
        ((p.alpha - 1.0) * lx + (p.beta - 1.0) * l1x - log_norm[j]).exp()
    };
    // F[j][i] on the grid, and f[j][i] for the arms inside (0, 1).
    let mut cdf = vec![vec![0.0; m]; k];
    let mut f = vec![Vec::new(); k];
    for (j, c) in cdf.iter_mut().enumerate() {
        let p = posteriors[j];
        if boundary[j] {
            for (v, &x) in c.iter_mut().zip(&grid) {
                *v = super::beta::beta_cdf(x, p.alpha, p.beta);
            }
            continue;
        }
        let fj: Vec<f64> = at.iter().map(|&l| density(j, l)).collect();
        let mut acc = super::beta::beta_cdf(grid[0], p.alpha, p.beta);
        c[0] = acc;
        for i in 1..m {
            let h = grid[i] - grid[i - 1];
            // Simpson on the interval.
            acc += h * (fj[i - 1] + 4.0 * density(j, mid[i - 1]) + fj[i]) / 6.0;
            c[i] = acc.min(1.0);
        }
        f[j] = fj;
        // Pin the end to exactly 1 and rescale the rest (absorbs the error).
        let end = c[m - 1];
        if end > 0.0 {
            for v in c.iter_mut() {
                *v = (*v / end).min(1.0);
            }
        }
    }
    best_from_cdfs(&grid, &cdf, &f, &boundary)
}

/// P(arm is the largest) from each arm's CDF (and, inside (0, 1), density)
/// on `grid`: `∫ f_i Π_{j≠i} F_j` by the trapezoid rule, or `∫ Π F_j dF_i`
/// for an arm at the boundary; normalised to sum to 1.
fn best_from_cdfs(grid: &[f64], cdf: &[Vec<f64>], f: &[Vec<f64>], boundary: &[bool]) -> Vec<f64> {
    let (k, m) = (cdf.len(), grid.len());
    let others = |i: usize, arm: usize| {
        let mut prod = 1.0;
        for (j, c) in cdf.iter().enumerate() {
            if j != arm {
                prod *= c[i];
            }
        }
        prod
    };
    let mut out = vec![0.0; k];
    for (arm, o) in out.iter_mut().enumerate() {
        let mut total = 0.0;
        if boundary[arm] {
            let mut prev = others(0, arm);
            total += cdf[arm][0] * prev;
            for i in 1..m {
                let cur = others(i, arm);
                let df = (cdf[arm][i] - cdf[arm][i - 1]).max(0.0);
                total += df * 0.5 * (prev + cur);
                prev = cur;
            }
        } else {
            let mut prev = f[arm][0] * others(0, arm);
            for i in 1..m {
                let cur = f[arm][i] * others(i, arm);
                total += 0.5 * (grid[i] - grid[i - 1]) * (prev + cur);
                prev = cur;
            }
        }
        *o = total.max(0.0);
    }
    let sum: f64 = out.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        for o in &mut out {
            *o /= sum;
        }
    } else {
        out.fill(1.0 / k as f64);
    }
    out
}

/// Whether `values` change which arm a Thompson draw picks: some value
/// differs from another (a common factor changes no argmax).
pub fn values_matter(values: &[f64]) -> bool {
    values.windows(2).any(|w| w[0] != w[1])
}

/// Value-aware Thompson sampling: P(arm i has the largest `vᵢ·θᵢ`) for
/// independent θᵢ ~ Beta posteriors and positive values `vᵢ` (revenue per
/// conversion), the probability vector of "draw every rate once, pick the
/// highest rate × value". Equal values give [`prob_best_exact`] exactly.
///
/// The same quadrature as [`prob_best_exact`], on the value scale: the grid
/// puts `points_per_arm` points within ±8 standard deviations of every
/// `vᵢ·θᵢ`; arm j's CDF at y is `F_j(min(y/v_j, 1))`, integrated by
/// Simpson's rule on θ_j between grid points, and
/// `P(i) = ∫ f_i(y/vᵢ)/vᵢ · Π_{j≠i} F_j(y/v_j) dy` by the trapezoid rule (an
/// arm at the boundary: `∫ Π F_j dF_i`).
pub fn prob_best_valued(
    posteriors: &[BetaParams],
    values: &[f64],
    points_per_arm: usize,
) -> Vec<f64> {
    let k = posteriors.len();
    debug_assert_eq!(values.len(), k);
    let usable = values.len() == k && values.iter().all(|v| v.is_finite() && *v > 0.0);
    if k <= 1 || !usable || !values_matter(values) {
        return prob_best_exact(posteriors, points_per_arm);
    }
    let boundary: Vec<bool> = posteriors
        .iter()
        .map(|p| p.alpha <= 1.0 || p.beta <= 1.0)
        .collect();
    let fine = if boundary.contains(&true) { 2 } else { 1 };
    let per_arm = (points_per_arm * fine).clamp(4, 4096 / k.max(1)).max(4);
    let top = values.iter().copied().fold(0.0, f64::max);
    let mut grid: Vec<f64> = Vec::with_capacity(k * (per_arm + 1) + 2);
    for (p, &v) in posteriors.iter().zip(values) {
        let (a, b) = (p.alpha, p.beta);
        let mean = a / (a + b);
        let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
        for i in 0..per_arm {
            let z = -8.0 + 16.0 * i as f64 / (per_arm - 1) as f64;
            grid.push(v * (mean + z * sd).clamp(0.0, 1.0));
        }
        // Where this arm's CDF reaches 1.
        grid.push(v);
    }
    grid.push(0.0);
    grid.push(top);
    grid.sort_by(f64::total_cmp);
    grid.dedup_by(|a, b| (*a - *b).abs() < 1e-15 * top.max(1.0));
    let m = grid.len();
    let logs = |x: f64| {
        let x = x.clamp(1e-300, 1.0 - 1e-16);
        (x.ln(), (-x).ln_1p())
    };
    let mut cdf = vec![vec![0.0; m]; k];
    // f^Y_j(y) = f_j(y/v_j)/v_j on the grid, for arms inside (0, 1).
    let mut f = vec![Vec::new(); k];
    for j in 0..k {
        let p = posteriors[j];
        let v = values[j];
        let xs: Vec<f64> = grid.iter().map(|&y| (y / v).min(1.0)).collect();
        if boundary[j] {
            for (c, &x) in cdf[j].iter_mut().zip(&xs) {
                *c = super::beta::beta_cdf(x, p.alpha, p.beta);
            }
            continue;
        }
        let log_norm = super::beta::ln_beta(p.alpha, p.beta);
        let density = |x: f64| {
            if x >= 1.0 {
                return 0.0;
            }
            let (lx, l1x) = logs(x);
            ((p.alpha - 1.0) * lx + (p.beta - 1.0) * l1x - log_norm).exp()
        };
        let fx: Vec<f64> = xs.iter().map(|&x| density(x)).collect();
        let c = &mut cdf[j];
        let mut acc = super::beta::beta_cdf(xs[0], p.alpha, p.beta);
        c[0] = acc;
        for i in 1..m {
            let h = xs[i] - xs[i - 1];
            if h > 0.0 {
                acc += h * (fx[i - 1] + 4.0 * density(0.5 * (xs[i - 1] + xs[i])) + fx[i]) / 6.0;
            }
            c[i] = acc.min(1.0);
        }
        let end = c[m - 1];
        if end > 0.0 {
            for x in c.iter_mut() {
                *x = (*x / end).min(1.0);
            }
        }
        f[j] = fx.iter().map(|d| d / v).collect();
    }
    best_from_cdfs(&grid, &cdf, &f, &boundary)
}

/// Monte Carlo estimate of P(arm i has the largest `vᵢ·θᵢ`), smoothed as
/// [`prob_best`] (which it equals for equal values).
pub fn prob_best_valued_mc<R: Rng + ?Sized>(
    posteriors: &[BetaParams],
    values: &[f64],
    draws: u32,
    rng: &mut R,
) -> Vec<f64> {
    let k = posteriors.len();
    if k <= 1 || values.len() != k || !values_matter(values) {
        return prob_best(posteriors, draws, rng);
    }
    let mut wins = vec![0u32; k];
    for _ in 0..draws {
        let mut best = 0;
        let mut best_draw = f64::NEG_INFINITY;
        for (i, (p, v)) in posteriors.iter().zip(values).enumerate() {
            let draw = v * sample_beta(p, rng);
            if draw > best_draw {
                best_draw = draw;
                best = i;
            }
        }
        wins[best] += 1;
    }
    let denom = f64::from(draws) + 0.5 * k as f64;
    wins.iter().map(|&w| (f64::from(w) + 0.5) / denom).collect()
}

/// One Thompson draw: the index (into `posteriors`) of the largest sample.
/// `posteriors` must be non-empty.
pub fn sample_argmax<R: Rng + ?Sized>(posteriors: &[BetaParams], rng: &mut R) -> usize {
    let mut best = 0;
    let mut best_draw = f64::NEG_INFINITY;
    for (i, p) in posteriors.iter().enumerate() {
        let draw = sample_beta(p, rng);
        if draw > best_draw {
            best_draw = draw;
            best = i;
        }
    }
    best
}

/// One draw from Beta(α, β) as X / (X + Y) with X ~ Gamma(α), Y ~ Gamma(β)
/// (Marsaglia and Tsang's method): no set-up per draw and, for the large
/// parameters of a busy arm, almost never a logarithm, about twice as fast
/// as Cheng's algorithm here. Invalid parameters (they are validated
/// positive) fall back to the mean.
pub fn sample_beta<R: Rng + ?Sized>(p: &BetaParams, rng: &mut R) -> f64 {
    if !(p.alpha > 0.0 && p.beta > 0.0 && p.alpha.is_finite() && p.beta.is_finite()) {
        return p.mean();
    }
    let x = sample_gamma(p.alpha, rng);
    let y = sample_gamma(p.beta, rng);
    let s = x + y;
    if s > 0.0 {
        x / s
    } else {
        // Both draws underflowed (tiny shapes): pick an end by the odds.
        f64::from(u8::from(rng.random::<f64>() < p.mean()))
    }
}

/// Gamma(shape, 1) by Marsaglia and Tsang (2000); shapes below 1 are boosted
/// by U^(1/shape).
fn sample_gamma<R: Rng + ?Sized>(shape: f64, rng: &mut R) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random();
        return sample_gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x: f64 = StandardNormal.sample(rng);
        let t = 1.0 + c * x;
        if t <= 0.0 {
            continue;
        }
        let v = t * t * t;
        let u: f64 = rng.random();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// Monte Carlo estimate of P(arm i is the argmax) for each posterior, with
/// `draws` joint draws, smoothed so that every entry is in (0, 1).
pub fn prob_best<R: Rng + ?Sized>(posteriors: &[BetaParams], draws: u32, rng: &mut R) -> Vec<f64> {
    let k = posteriors.len();
    if k == 1 {
        return vec![1.0];
    }
    let mut wins = vec![0u32; k];
    for _ in 0..draws {
        wins[sample_argmax(posteriors, rng)] += 1;
    }
    let denom = f64::from(draws) + 0.5 * k as f64;
    wins.iter().map(|&w| (f64::from(w) + 0.5) / denom).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::beta::prob_greater_integer;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    // The sampler's mean and variance match Beta(α, β), shapes below 1,
    // near 1 and in the thousands alike (200k draws; bounds are ~6 sd).
    #[test]
    fn beta_sampler_matches_moments() {
        let mut rng = SmallRng::seed_from_u64(9);
        for (a, b) in [
            (0.3, 0.7),
            (1.0, 1.0),
            (2.5, 40.0),
            (120.0, 3900.0),
            (5000.0, 5000.0),
        ] {
            let n = 200_000;
            let p = BetaParams { alpha: a, beta: b };
            let xs: Vec<f64> = (0..n).map(|_| sample_beta(&p, &mut rng)).collect();
            let mean = xs.iter().sum::<f64>() / f64::from(n);
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / f64::from(n - 1);
            let m = a / (a + b);
            let v = a * b / ((a + b).powi(2) * (a + b + 1.0));
            assert!(
                xs.iter().all(|x| (0.0..=1.0).contains(x)),
                "({a}, {b}) out of [0, 1]"
            );
            assert!(
                (mean - m).abs() < 6.0 * (v / f64::from(n)).sqrt(),
                "({a}, {b}): mean {mean} vs {m}"
            );
            assert!(
                (var / v - 1.0).abs() < 0.03,
                "({a}, {b}): variance {var} vs {v}"
            );
        }
    }

    const PRIOR: ThompsonPrior = ThompsonPrior {
        alpha: 1.0,
        beta: 1.0,
    };

    // A reward of r moves α by r and β by 1 − r; a pooled prior adds its
    // strength at its mean.
    #[test]
    fn posterior_adds_evidence_and_the_pooled_prior() {
        let p = PRIOR.posterior(Evidence { n: 3.0, y: 1.25 }, None);
        assert!((p.alpha - 2.25).abs() < 1e-12);
        assert!((p.beta - 2.75).abs() < 1e-12);
        let pooled = PooledPrior {
            mean: 0.1,
            strength: 10.0,
        };
        let p = PRIOR.posterior(Evidence::default(), Some(pooled));
        assert!((p.alpha - 2.0).abs() < 1e-12 && (p.beta - 10.0).abs() < 1e-12);
    }

    // The quadrature matches the exact two-arm probability to 1e-4, for
    // vague, moderate and sharp posteriors, and sums to 1 for many arms.
    #[test]
    fn prob_best_with_unbounded_densities_matches_monte_carlo() {
        // Priors below 1 make the density infinite at 0 or 1 (an arm
        // without successes keeps α = prior_alpha). Before, the density was
        // integrated and the first case came out 0.455 (24 points) and
        // 0.476 (96 points) against a true 0.391.
        let b = |alpha: f64, beta: f64| BetaParams { alpha, beta };
        let cases = [
            vec![b(0.5, 100.5), b(0.5, 50.5)],
            vec![b(0.5, 0.5), b(0.5, 0.5), b(1.5, 0.5)],
            vec![b(0.2, 30.0), b(2.0, 60.0), b(0.9, 0.3)],
        ];
        let mut rng = SmallRng::seed_from_u64(8);
        for post in &cases {
            let mc = prob_best(post, 400_000, &mut rng);
            for points in [24, 96] {
                let q = prob_best_exact(post, points);
                for (a, m) in q.iter().zip(&mc) {
                    assert!((a - m).abs() < 0.006, "{points} points: {q:?} vs {mc:?}");
                }
            }
        }
    }

    #[test]
    fn exact_prob_best_matches_the_closed_form() {
        for &(a1, b1, a2, b2) in &[
            (11u32, 91.0, 6.0, 96.0),
            (3, 5.0, 4.0, 4.0),
            (40, 960.0, 30.0, 970.0),
            (401, 19_600.0, 461.0, 19_540.0),
            (1, 1.0, 1.0, 1.0),
            (1, 101.0, 1.0, 51.0),
            (1, 11.0, 2.0, 30.0),
        ] {
            let exact = prob_greater_integer(a1, b1, a2, b2);
            let post = [
                BetaParams {
                    alpha: f64::from(a1),
                    beta: b1,
                },
                BetaParams {
                    alpha: a2,
                    beta: b2,
                },
            ];
            let q = prob_best_exact(&post, 96);
            assert!(
                (q[0] - exact).abs() < 1e-4,
                "{a1},{b1} vs {a2},{b2}: {q:?} vs {exact}"
            );
            let rough = prob_best_exact(&post, 24);
            assert!((rough[0] - exact).abs() < 2e-3, "{rough:?} vs {exact}");
        }
        let many: Vec<BetaParams> = (0..12)
            .map(|i| BetaParams {
                alpha: 20.0 + f64::from(i),
                beta: 800.0,
            })
            .collect();
        let q = prob_best_exact(&many, 24);
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(q.windows(2).all(|w| w[0] <= w[1] + 1e-9), "{q:?}");
        let mut rng = SmallRng::seed_from_u64(1);
        let mc = prob_best(&many, 200_000, &mut rng);
        for (a, b) in q.iter().zip(&mc) {
            assert!((a - b).abs() < 0.01, "{q:?} vs {mc:?}");
        }
    }

    // Value-aware Thompson: P(vᵢθᵢ is the largest) by quadrature matches
    // Monte Carlo of the draw itself; equal values give the plain vector;
    // a large enough value turns a lower rate into the favourite.
    #[test]
    fn valued_prob_best_matches_monte_carlo_of_rate_times_value() {
        let post = |a: f64, b: f64| BetaParams { alpha: a, beta: b };
        let cases: Vec<(Vec<BetaParams>, Vec<f64>)> = vec![
            (vec![post(41.0, 960.0), post(26.0, 975.0)], vec![1.0, 2.0]),
            (
                vec![post(51.0, 950.0), post(31.0, 970.0), post(21.0, 980.0)],
                vec![10.0, 25.0, 40.0],
            ),
            // A boundary arm (β ≤ 1 / α ≤ 1: no data yet).
            (
                vec![post(1.0, 1.0), post(30.0, 300.0), post(5.0, 95.0)],
                vec![0.2, 1.0, 3.0],
            ),
        ];
        let mut rng = SmallRng::seed_from_u64(9);
        for (posts, values) in cases {
            let q = prob_best_valued(&posts, &values, 24);
            assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let mut wins = vec![0u32; posts.len()];
            let n = 400_000;
            for _ in 0..n {
                let mut best = (0, f64::NEG_INFINITY);
                for (i, (p, v)) in posts.iter().zip(&values).enumerate() {
                    let d = v * sample_beta(p, &mut rng);
                    if d > best.1 {
                        best = (i, d);
                    }
                }
                wins[best.0] += 1;
            }
            for (i, w) in wins.iter().enumerate() {
                let f = f64::from(*w) / f64::from(n);
                assert!((f - q[i]).abs() < 0.004, "{values:?}: {q:?} vs arm {i} {f}");
            }
            let mc = prob_best_valued_mc(&posts, &values, 100_000, &mut rng);
            for (a, b) in q.iter().zip(&mc) {
                assert!((a - b).abs() < 0.01, "{q:?} vs {mc:?}");
            }
        }
        let posts = [post(41.0, 960.0), post(26.0, 975.0)];
        let plain = prob_best_exact(&posts, 24);
        assert_eq!(prob_best_valued(&posts, &[3.0, 3.0], 24), plain);
        // 4.1% × 1 against 2.6% × 2 = 5.2%: the valuable arm leads.
        let q = prob_best_valued(&posts, &[1.0, 2.0], 24);
        assert!(plain[0] > 0.9 && q[1] > 0.8, "{plain:?} {q:?}");
    }

    // Sampling an index from a vector picks each with its probability; the
    // floor lifts every entry to at least the floor and keeps the sum at 1.
    #[test]
    fn index_sampling_and_floor() {
        let mut probs = vec![0.7, 0.3, 0.0];
        with_floor(&mut probs, 0.01);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(probs.iter().all(|p| *p >= 0.01 - 1e-15));
        let mut rng = SmallRng::seed_from_u64(2);
        let n = 200_000;
        let mut hits = [0u32; 3];
        for _ in 0..n {
            hits[sample_index(&probs, &mut rng)] += 1;
        }
        for (h, p) in hits.iter().zip(&probs) {
            let f = f64::from(*h) / f64::from(n);
            assert!(
                (f - p).abs() < 4.0 * (p * (1.0 - p) / f64::from(n)).sqrt() + 1e-4,
                "{f} vs {p}"
            );
        }
        let mut uniform = vec![1.0, 0.0];
        with_floor(&mut uniform, 0.9);
        assert_eq!(uniform, vec![0.5, 0.5]);
    }

    // The Monte Carlo propensity is within 3 standard errors of the exact
    // two-arm value, for several posteriors.
    #[test]
    fn propensity_estimate_matches_exact_two_arm_value() {
        let mut rng = SmallRng::seed_from_u64(7);
        for &(a1, b1, a2, b2) in &[
            (11u32, 91.0, 6.0, 96.0),
            (3, 5.0, 4.0, 4.0),
            (40, 960.0, 30.0, 970.0),
        ] {
            let exact = prob_greater_integer(a1, b1, a2, b2);
            let post = [
                BetaParams {
                    alpha: f64::from(a1),
                    beta: b1,
                },
                BetaParams {
                    alpha: a2,
                    beta: b2,
                },
            ];
            let est = prob_best(&post, PROPENSITY_DRAWS, &mut rng);
            let se = (exact * (1.0 - exact) / f64::from(PROPENSITY_DRAWS)).sqrt();
            assert!(
                (est[0] - exact).abs() < 3.0 * se + 1e-3,
                "{est:?} vs {exact}"
            );
            assert!((est[0] + est[1] - 1.0).abs() < 1e-12);
        }
    }

    // Sampling picks arms in proportion to their probability of being best.
    #[test]
    fn sampling_frequency_matches_prob_best() {
        let mut rng = SmallRng::seed_from_u64(3);
        let post = [
            BetaParams {
                alpha: 11.0,
                beta: 91.0,
            },
            BetaParams {
                alpha: 6.0,
                beta: 96.0,
            },
        ];
        let exact = prob_greater_integer(11, 91.0, 6.0, 96.0);
        let n = 20_000;
        let wins = (0..n)
            .filter(|_| sample_argmax(&post, &mut rng) == 0)
            .count();
        let freq = wins as f64 / f64::from(n);
        assert!((freq - exact).abs() < 0.015, "{freq} vs {exact}");
    }

    // The same seed gives the same decisions.
    #[test]
    fn same_seed_same_decisions() {
        let post = [
            BetaParams {
                alpha: 2.0,
                beta: 3.0,
            },
            BetaParams {
                alpha: 3.0,
                beta: 2.0,
            },
            BetaParams {
                alpha: 1.0,
                beta: 1.0,
            },
        ];
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..200)
                .map(|_| sample_argmax(&post, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
