//! A/B tests a statistician would defend: statistics only.
//!
//! Owns the designs' arithmetic and their decision rules, as pure
//! functions (no randomness, no engine, no scenario types):
//!
//! - **fixed horizon** ([`fixed_per_arm`], [`decide_fixed`]): every offer
//!   against a control by two-sided pooled z-tests, Holm's step-down over
//!   the k−1 comparisons (Holm 1979, "A simple sequentially rejective
//!   multiple test procedure"); sized by the two-proportion power formula at
//!   the Bonferroni level α/(k−1) (Holm's first step); it rolls out the best
//!   offer that beats the control significantly, otherwise keeps the control;
//! - **group-sequential** ([`obrien_fleming`], [`decide_look`]): the same
//!   comparisons at K equally spaced looks with O'Brien–Fleming boundaries
//!   (O'Brien & Fleming 1979; Jennison & Turnbull 2000, *Group Sequential
//!   Methods*, ch. 2), at α/(k−1) per comparison; it stops at the first look
//!   where an offer crosses (or where every offer is significantly worse than
//!   the control); the maximum size is the fixed size × the design's inflation
//!   factor;
//! - **test-and-roll** ([`test_and_roll_per_arm`], [`decide_test_and_roll`]):
//!   the profit-maximising test size under a Normal prior on the offers'
//!   rates (Feit & Berman 2019, "Test & Roll: Profit-Maximizing A/B Tests",
//!   Marketing Science 38(6)), then the offer with the highest posterior mean
//!   is rolled out, significant or not.

/// Inverse of the standard normal CDF (Acklam's rational approximation,
/// relative error below 1.2e-9). `p` must be in (0, 1).
pub fn inv_norm_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

pub use crate::policy::beta::norm_cdf;

/// Per-comparison significance level: α, Bonferroni-corrected over the
/// k−1 comparisons of each offer with the control.
pub fn corrected_alpha(alpha: f64, offers: usize) -> f64 {
    alpha / (offers.saturating_sub(1).max(1)) as f64
}

/// Customers per offer for a two-sided two-proportion z-test to detect a
/// relative lift `mde` over `baseline` with the given α (already corrected)
/// and power:
/// n = (z₁₋α/₂ + z_power)² (p₁(1−p₁) + p₂(1−p₂)) / (p₂ − p₁)², p₂ = p₁(1 + mde).
pub fn sample_size_per_arm(baseline: f64, mde: f64, alpha: f64, power: f64) -> u64 {
    let p1 = baseline.clamp(1e-6, 1.0 - 1e-6);
    let p2 = (p1 * (1.0 + mde)).clamp(1e-6, 1.0 - 1e-6);
    let za = inv_norm_cdf(1.0 - alpha / 2.0);
    let zb = inv_norm_cdf(power);
    let delta = (p2 - p1).abs().max(1e-9);
    let n = (za + zb).powi(2) * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / (delta * delta);
    n.ceil().min(1e15) as u64
}

/// The power of that test with `n` customers per offer (the inverse of
/// [`sample_size_per_arm`]; what a test cut short by the horizon keeps).
pub fn power_at(baseline: f64, mde: f64, alpha: f64, n: u64) -> f64 {
    let p1 = baseline.clamp(1e-6, 1.0 - 1e-6);
    let p2 = (p1 * (1.0 + mde)).clamp(1e-6, 1.0 - 1e-6);
    let se = ((p1 * (1.0 - p1) + p2 * (1.0 - p2)) / n.max(1) as f64).sqrt();
    norm_cdf((p2 - p1).abs() / se - inv_norm_cdf(1.0 - alpha / 2.0))
}

/// Pooled two-proportion z statistic of `(s1, n1)` minus `(s2, n2)`
/// (0 when either side is empty or nothing varies).
pub fn z_stat(s1: u64, n1: u64, s2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 0.0;
    }
    let (s1, n1, s2, n2) = (s1 as f64, n1 as f64, s2 as f64, n2 as f64);
    let pooled = (s1 + s2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se <= 0.0 {
        return 0.0;
    }
    (s1 / n1 - s2 / n2) / se
}

/// Two-sided p-value of the pooled two-proportion z-test.
pub fn two_proportion_p(s1: u64, n1: u64, s2: u64, n2: u64) -> f64 {
    2.0 * (1.0 - norm_cdf(z_stat(s1, n1, s2, n2).abs()))
}

/// Holm's step-down procedure: which of the hypotheses with these p-values
/// are rejected at family-wise level `alpha`.
pub fn holm(p: &[f64], alpha: f64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    let mut rejected = vec![false; p.len()];
    let m = p.len();
    for (rank, &i) in order.iter().enumerate() {
        if p[i] <= alpha / (m - rank) as f64 {
            rejected[i] = true;
        } else {
            break;
        }
    }
    rejected
}

/// What a test concluded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbDecision {
    /// The offer rolled out: a significant winner, or the control.
    pub winner: usize,
    /// Whether the winner beat the control significantly (test-and-roll
    /// tests nothing: always false).
    pub significant: bool,
}

fn rate(s: &[u64], n: &[u64], i: usize) -> f64 {
    s[i] as f64 / n[i].max(1) as f64
}

/// The best observed offer among `candidates` (the lowest index on ties).
fn best_of(s: &[u64], n: &[u64], candidates: impl Iterator<Item = usize>) -> Option<usize> {
    candidates.max_by(|a, b| rate(s, n, *a).total_cmp(&rate(s, n, *b)).then(b.cmp(a)))
}

/// Customers per offer of the fixed-horizon test: the power formula at
/// α/(k−1) (Holm's first, strictest step).
pub fn fixed_per_arm(baseline: f64, mde: f64, alpha: f64, power: f64, offers: usize) -> u64 {
    sample_size_per_arm(baseline, mde, corrected_alpha(alpha, offers), power)
}

/// The fixed-horizon decision: every other offer against `control` by
/// two-sided z-tests, Holm at family-wise `alpha`; the best observed offer
/// among those significantly better than the control is rolled out,
/// otherwise the control is kept.
pub fn decide_fixed(successes: &[u64], trials: &[u64], control: usize, alpha: f64) -> AbDecision {
    let others: Vec<usize> = (0..successes.len()).filter(|i| *i != control).collect();
    let z: Vec<f64> = others
        .iter()
        .map(|&i| z_stat(successes[i], trials[i], successes[control], trials[control]))
        .collect();
    let p: Vec<f64> = z.iter().map(|z| 2.0 * (1.0 - norm_cdf(z.abs()))).collect();
    let rejected = holm(&p, alpha);
    let better = others
        .iter()
        .zip(z.iter().zip(&rejected))
        .filter(|(_, (z, r))| **r && **z > 0.0)
        .map(|(i, _)| *i);
    match best_of(successes, trials, better) {
        Some(winner) => AbDecision {
            winner,
            significant: true,
        },
        None => AbDecision {
            winner: control,
            significant: false,
        },
    }
}

/// A group-sequential design with O'Brien–Fleming boundaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    /// The critical z at each of the K equally spaced looks:
    /// c·√(K/j) at look j (two-sided, per comparison).
    pub boundaries: Vec<f64>,
    /// Maximum size ÷ the fixed design's size at the same α and power.
    pub inflation: f64,
}

/// O'Brien–Fleming boundaries for `looks` equally spaced looks at two-sided
/// level `alpha` (per comparison), and the inflation factor that keeps
/// `power`. Computed by numerical integration of the score process over the
/// looks (Armitage, McPherson & Rowe 1969; Jennison & Turnbull 2000, ch. 19);
/// the constant c is 2.040 and the inflation 1.028 for 5 looks at α = 0.05
/// and power 0.8 (their Tables 2.3 and 2.4).
pub fn obrien_fleming(looks: usize, alpha: f64, power: f64) -> Sequential {
    let looks = looks.max(1);
    // Bisection on c: the crossing probability under H0 falls as c grows.
    let (mut lo, mut hi) = (0.5, 8.0);
    for _ in 0..45 {
        let mid = 0.5 * (lo + hi);
        if crossing(looks, mid, 0.0).0 > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let c = 0.5 * (lo + hi);
    // The drift per look that gives the fixed design its power at size 1,
    // scaled by √(R/K); bisection on R for the sequential design's power.
    let fixed_drift = inv_norm_cdf(1.0 - alpha / 2.0) + inv_norm_cdf(power);
    let (mut lo, mut hi) = (1.0, 3.0);
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        let theta = fixed_drift * (mid / looks as f64).sqrt();
        if crossing(looks, c, theta).1 < power {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Sequential {
        boundaries: (1..=looks)
            .map(|j| c * (looks as f64 / j as f64).sqrt())
            .collect(),
        inflation: 0.5 * (lo + hi),
    }
}

/// For the score process S_j (independent N(θ, 1) increments per look) and
/// the continuation region |S_j| < c√K at every look: the probability of
/// ever crossing, and of crossing the upper boundary.
fn crossing(looks: usize, c: f64, theta: f64) -> (f64, f64) {
    let bound = c * (looks as f64).sqrt();
    // Simpson's rule on a grid over the continuation region.
    let m = 240usize;
    let h = 2.0 * bound / m as f64;
    let grid: Vec<f64> = (0..=m).map(|i| -bound + i as f64 * h).collect();
    let weight = |i: usize| {
        h / 3.0
            * if i == 0 || i == m {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            }
    };
    let phi = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let (mut total, mut upper) = (0.0, 0.0);
    // Look 1 from S_0 = 0.
    let up1 = 1.0 - norm_cdf(bound - theta);
    let down1 = norm_cdf(-bound - theta);
    total += up1 + down1;
    upper += up1;
    let mut density: Vec<f64> = grid.iter().map(|s| phi(s - theta)).collect();
    // The transition density φ(s_i − u_j − θ) depends on i − j only.
    let kernel: Vec<f64> = (0..=2 * m)
        .map(|d| phi((d as f64 - m as f64) * h - theta))
        .collect();
    let exits: Vec<(f64, f64)> = grid
        .iter()
        .map(|&u| {
            (
                1.0 - norm_cdf(bound - u - theta),
                norm_cdf(-bound - u - theta),
            )
        })
        .collect();
    for _ in 2..=looks {
        let mut next = vec![0.0; grid.len()];
        for j in 0..grid.len() {
            let w = weight(j) * density[j];
            if w == 0.0 {
                continue;
            }
            let (up, down) = exits[j];
            total += w * (up + down);
            upper += w * up;
            // next[i] += w φ((i − j) h − θ): kernel index i − j + m.
            let k = &kernel[m - j..m - j + grid.len()];
            for (n, kv) in next.iter_mut().zip(k) {
                *n += w * kv;
            }
        }
        density = next;
    }
    (total, upper)
}

/// Customers per offer at each look of a group-sequential test whose
/// fixed-horizon size is `fixed` per offer: the maximum (fixed × the
/// inflation) split into equal stages; cumulative.
pub fn look_sizes(fixed: u64, design: &Sequential) -> Vec<u64> {
    let k = design.boundaries.len().max(1) as f64;
    let max = (fixed as f64 * design.inflation).ceil();
    (1..=design.boundaries.len())
        .map(|j| (max * j as f64 / k).ceil() as u64)
        .collect()
}

/// One look of a group-sequential test (`look` counts from 0): `Some` when
/// the test stops here. An offer whose z against the control reaches the
/// look's boundary wins (the best observed of those that do); the control
/// is kept when every other offer is below minus the boundary, or at the
/// last look when no offer crossed.
pub fn decide_look(
    successes: &[u64],
    trials: &[u64],
    control: usize,
    design: &Sequential,
    look: usize,
) -> Option<AbDecision> {
    let b = *design.boundaries.get(look)?;
    let others: Vec<usize> = (0..successes.len()).filter(|i| *i != control).collect();
    let z = |i: usize| z_stat(successes[i], trials[i], successes[control], trials[control]);
    let crossed = others.iter().copied().filter(|i| z(*i) >= b);
    if let Some(winner) = best_of(successes, trials, crossed) {
        return Some(AbDecision {
            winner,
            significant: true,
        });
    }
    let last = look + 1 == design.boundaries.len();
    let all_worse = others.iter().all(|i| z(*i) <= -b);
    (last || all_worse).then_some(AbDecision {
        winner: control,
        significant: false,
    })
}

/// E[max of k independent standard normals] (by Simpson's rule).
pub fn expected_max_normal(k: usize) -> f64 {
    if k <= 1 {
        return 0.0;
    }
    let (a, b, m) = (-12.0, 12.0, 4800usize);
    let h = (b - a) / m as f64;
    let phi = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let f = |x: f64| x * k as f64 * phi(x) * norm_cdf(x).powi(k as i32 - 1);
    let mut sum = f(a) + f(b);
    for i in 1..m {
        let x = a + i as f64 * h;
        sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(x);
    }
    sum * h / 3.0
}

/// Expected conversions of test-and-roll with `n` customers per offer out
/// of `population`, rates drawn from N(`mean`, `sd`²), response sd
/// √(mean(1−mean)): the test earns the mean, the roll-out the posterior
/// mean of the best-looking offer, μ + e_k σ² / √(σ² + s²/n) (Feit & Berman
/// 2019, eq. 9, for k offers with a symmetric prior).
pub fn test_and_roll_value(population: u64, offers: usize, mean: f64, sd: f64, n: u64) -> f64 {
    let k = offers as f64;
    let s2 = mean * (1.0 - mean);
    let tested = (k * n as f64).min(population as f64);
    let rolled = population as f64 - tested;
    let gain = expected_max_normal(offers) * sd * sd / (sd * sd + s2 / n.max(1) as f64).sqrt();
    tested * mean + rolled * (mean + gain)
}

/// The profit-maximising customers per offer of test-and-roll (the value
/// above is unimodal in n: a ternary search on integers).
pub fn test_and_roll_per_arm(population: u64, offers: usize, mean: f64, sd: f64) -> u64 {
    let k = offers.max(1) as u64;
    let (mut lo, mut hi) = (1u64, (population / k).max(1));
    let v = |n| test_and_roll_value(population, offers, mean, sd, n);
    while hi - lo > 2 {
        let m1 = lo + (hi - lo) / 3;
        let m2 = hi - (hi - lo) / 3;
        if v(m1) < v(m2) {
            lo = m1;
        } else {
            hi = m2;
        }
    }
    (lo..=hi)
        .max_by(|a, b| v(*a).total_cmp(&v(*b)))
        .unwrap_or(lo)
}

/// Test-and-roll's decision: the offer with the highest posterior mean under
/// the N(`mean`, `sd`²) prior (with equal sizes, the best observed rate).
pub fn decide_test_and_roll(successes: &[u64], trials: &[u64], mean: f64, sd: f64) -> AbDecision {
    let s2 = (mean * (1.0 - mean)).max(1e-12);
    let prior = 1.0 / (sd * sd).max(1e-12);
    let posterior = |i: usize| {
        let n = trials[i] as f64;
        (successes[i] as f64 / s2 + mean * prior) / (n / s2 + prior)
    };
    let winner = (0..successes.len())
        .max_by(|a, b| posterior(*a).total_cmp(&posterior(*b)).then(b.cmp(a)))
        .unwrap_or(0);
    AbDecision {
        winner,
        significant: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};
    use rand_distr::{Binomial, Distribution};

    // The quantile function matches textbook values.
    #[test]
    fn quantiles() {
        assert!((inv_norm_cdf(0.975) - 1.959_964).abs() < 1e-5);
        assert!((inv_norm_cdf(0.8) - 0.841_621).abs() < 1e-5);
        assert!((norm_cdf(1.959_964) - 0.975).abs() < 1e-6);
    }

    // Sample size matches the standard formula for 2.0% → 2.2% (≈ 80k per arm),
    // and the power at that size is the power asked for.
    #[test]
    fn sample_size() {
        let n = sample_size_per_arm(0.02, 0.10, 0.05, 0.8);
        assert!((80_000..82_000).contains(&n), "{n}");
        assert!((power_at(0.02, 0.10, 0.05, n) - 0.8).abs() < 0.002);
        assert!(power_at(0.02, 0.10, 0.05, n / 4) < 0.35);
    }

    #[test]
    fn holm_steps_down_and_stops_at_the_first_failure() {
        // m = 3: thresholds 0.0167, 0.025, 0.05.
        assert_eq!(holm(&[0.01, 0.04, 0.02], 0.05), vec![true, true, true]);
        assert_eq!(holm(&[0.01, 0.04, 0.03], 0.05), vec![true, false, false]);
        assert_eq!(holm(&[0.01, 0.04, 0.026], 0.05), vec![true, false, false]);
        assert_eq!(holm(&[0.02, 0.001, 0.9], 0.05), vec![true, true, false]);
        assert_eq!(holm(&[0.02, 0.03], 0.05), vec![true, true]);
    }

    // Jennison & Turnbull (2000), Tables 2.3 and 2.4: C_B(K, 0.05) and the
    // maximum sample size ratio R for power 0.8.
    #[test]
    fn obrien_fleming_matches_the_published_tables() {
        for (k, c, r) in [
            (1, 1.960, 1.000),
            (2, 1.977, 1.008),
            (3, 2.004, 1.017),
            (4, 2.024, 1.024),
            (5, 2.040, 1.028),
        ] {
            let d = obrien_fleming(k, 0.05, 0.8);
            let got_c = d.boundaries[k - 1];
            assert!((got_c - c).abs() < 0.002, "K={k}: c {got_c} vs {c}");
            assert!(
                (d.inflation - r).abs() < 0.003,
                "K={k}: R {} vs {r}",
                d.inflation
            );
            assert!((d.boundaries[0] - got_c * (k as f64).sqrt()).abs() < 1e-9);
        }
    }

    #[test]
    fn expected_maximum_of_normals() {
        for (k, e) in [(2, 0.564_19), (3, 0.846_28), (5, 1.162_96), (10, 1.538_75)] {
            assert!((expected_max_normal(k) - e).abs() < 1e-4, "{k}");
        }
    }

    // For two offers Feit & Berman give the optimum in closed form:
    // n* = √(N/4 (s/σ)² + (3/4 (s/σ)²)²) − 3/4 (s/σ)².
    #[test]
    fn test_and_roll_size_matches_the_closed_form_for_two_offers() {
        for (pop, mean, sd) in [(300_000u64, 0.035, 0.01), (1_000_000, 0.02, 0.004)] {
            let r2 = mean * (1.0 - mean) / (sd * sd);
            let closed = ((pop as f64 / 4.0) * r2 + (0.75 * r2).powi(2)).sqrt() - 0.75 * r2;
            let n = test_and_roll_per_arm(pop, 2, mean, sd) as f64;
            assert!(
                (n - closed).abs() <= 0.005 * closed + 1.0,
                "{n} vs {closed}"
            );
        }
        // More offers: more to gain from testing each, less horizon each.
        let n3 = test_and_roll_per_arm(300_000, 3, 0.035, 0.01);
        assert!(n3 > 1000 && n3 < 100_000, "{n3}");
    }

    /// Conversions of `k` offers at `p` with `n` customers each.
    fn draw(rng: &mut SmallRng, k: usize, p: &[f64], n: u64) -> Vec<u64> {
        (0..k)
            .map(|i| Binomial::new(n, p[i]).map_or(0, |b| b.sample(rng)))
            .collect()
    }

    // Binomial band: reps × α ± 4 sd (the low side floored at 0).
    fn band(reps: u32, alpha: f64) -> (u32, u32) {
        let mean = reps as f64 * alpha;
        let sd = (mean * (1.0 - alpha)).sqrt();
        (
            (mean - 4.0 * sd).max(0.0) as u32,
            (mean + 4.0 * sd).ceil() as u32,
        )
    }

    // Under the null (every offer converts at 3%), the fixed-horizon test
    // declares some difference from the control at most α of the time
    // (exactly α for two offers; Holm is conservative for more), and rolls
    // out a non-control offer about half as often (only the "better" side
    // counts). Without the correction five offers would err about 16% of
    // the time (four comparisons sharing one control).
    #[test]
    fn fixed_horizon_false_positive_rate_under_the_null() {
        let reps = 3000u32;
        let mut rng = SmallRng::seed_from_u64(11);
        for k in [2usize, 3, 5] {
            let n = fixed_per_arm(0.03, 0.2, 0.05, 0.8, k);
            let p = vec![0.03; k];
            let (mut rolled, mut any) = (0u32, 0u32);
            for _ in 0..reps {
                let s = draw(&mut rng, k, &p, n);
                let t = vec![n; k];
                if decide_fixed(&s, &t, 0, 0.05).significant {
                    rolled += 1;
                }
                let pv: Vec<f64> = (1..k).map(|i| two_proportion_p(s[i], n, s[0], n)).collect();
                if holm(&pv, 0.05).iter().any(|r| *r) {
                    any += 1;
                }
            }
            let (lo, hi) = band(reps, 0.05);
            assert!(any <= hi, "k={k}: {any} of {reps} declared a difference");
            if k == 2 {
                assert!(any >= lo, "k=2: {any} of {reps}: the level is too strict");
            }
            let (lo_half, hi_half) = band(reps, 0.025);
            assert!(rolled <= hi_half, "k={k}: rolled out {rolled} of {reps}");
            if k == 2 {
                assert!(
                    rolled >= lo_half,
                    "k=2: rolled out {rolled} of {reps}: too strict"
                );
            }
        }
    }

    // With a real lift of the MDE the fixed test finds it with about its power.
    #[test]
    fn fixed_horizon_power_at_the_mde() {
        let reps = 1000u32;
        let mut rng = SmallRng::seed_from_u64(12);
        let n = fixed_per_arm(0.03, 0.2, 0.05, 0.8, 2);
        let mut found = 0;
        for _ in 0..reps {
            let s = draw(&mut rng, 2, &[0.03, 0.036], n);
            let d = decide_fixed(&s, &[n, n], 0, 0.05);
            if d.significant && d.winner == 1 {
                found += 1;
            }
        }
        let (lo, hi) = band(reps, 0.8);
        assert!((lo..=hi).contains(&found), "power {found} of {reps}");
    }

    /// Runs a group-sequential test on fresh data: (decision, look it stopped at).
    fn run_sequential(
        rng: &mut SmallRng,
        p: &[f64],
        sizes: &[u64],
        d: &Sequential,
    ) -> (AbDecision, usize) {
        let k = p.len();
        let mut s = vec![0u64; k];
        let mut prev = 0;
        for (look, &n) in sizes.iter().enumerate() {
            for (si, more) in s.iter_mut().zip(draw(rng, k, p, n - prev)) {
                *si += more;
            }
            prev = n;
            if let Some(dec) = decide_look(&s, &vec![n; k], 0, d, look) {
                return (dec, look);
            }
        }
        unreachable!("the last look always decides")
    }

    // Under the null the five-look O'Brien–Fleming test declares a winner at
    // most α/2 of the time per "better" side and comparison (the upper half
    // of α): testing at 1.96 at every look would roll out a false winner
    // about 7% of the time for two offers.
    #[test]
    fn sequential_false_positive_rate_under_the_null() {
        let reps = 3000u32;
        let mut rng = SmallRng::seed_from_u64(13);
        for k in [2usize, 4] {
            let a = corrected_alpha(0.05, k);
            let d = obrien_fleming(5, a, 0.8);
            let sizes = look_sizes(sample_size_per_arm(0.03, 0.2, a, 0.8), &d);
            let p = vec![0.03; k];
            let rolled = (0..reps)
                .filter(|_| run_sequential(&mut rng, &p, &sizes, &d).0.significant)
                .count() as u32;
            let (lo, hi) = band(reps, 0.025);
            assert!(rolled <= hi, "k={k}: rolled out {rolled} of {reps}");
            if k == 2 {
                assert!(rolled >= lo, "k=2: {rolled} of {reps}: too strict");
            }
        }
    }

    // With a large real lift the sequential test stops early, and keeps the
    // fixed design's power at the MDE.
    #[test]
    fn sequential_stops_early_on_large_effects_and_keeps_its_power() {
        let mut rng = SmallRng::seed_from_u64(14);
        let d = obrien_fleming(5, 0.05, 0.8);
        let sizes = look_sizes(sample_size_per_arm(0.03, 0.2, 0.05, 0.8), &d);
        let reps = 1000u32;
        let mut found = 0;
        for _ in 0..reps {
            let (dec, _) = run_sequential(&mut rng, &[0.03, 0.036], &sizes, &d);
            if dec.significant && dec.winner == 1 {
                found += 1;
            }
        }
        let (lo, hi) = band(reps, 0.8);
        assert!((lo..=hi).contains(&found), "power {found} of {reps}");
        // A 50% lift: most tests stop at the first or second look (about 84%).
        let early = (0..200)
            .filter(|_| run_sequential(&mut rng, &[0.03, 0.045], &sizes, &d).1 <= 1)
            .count();
        assert!(early >= 140, "{early} of 200 stopped by look 2");
        // The control far better than the other offer: the test stops early
        // for harm and keeps the control.
        let mut kept_early = 0;
        for _ in 0..200 {
            let (dec, look) = run_sequential(&mut rng, &[0.045, 0.03], &sizes, &d);
            assert!(!(dec.significant && dec.winner == 1));
            kept_early += usize::from(dec.winner == 0 && look <= 1);
        }
        assert!(
            kept_early >= 140,
            "{kept_early} of 200 kept the control by look 2"
        );
    }

    // Test-and-roll makes no claim of significance: under the null it rolls
    // out each offer about equally often (no offer is favoured).
    #[test]
    fn test_and_roll_under_the_null_favours_no_offer() {
        let mut rng = SmallRng::seed_from_u64(15);
        let k = 3;
        let n = test_and_roll_per_arm(300_000, k, 0.03, 0.0075);
        let reps = 3000u32;
        let mut picked = vec![0u32; k];
        for _ in 0..reps {
            let s = draw(&mut rng, k, &[0.03; 3], n);
            let d = decide_test_and_roll(&s, &[n; 3], 0.03, 0.0075);
            assert!(!d.significant);
            picked[d.winner] += 1;
        }
        let (lo, hi) = band(reps, 1.0 / 3.0);
        for c in picked {
            assert!((lo..=hi).contains(&c), "{c} of {reps}");
        }
        // And it picks a clearly better offer almost always.
        let right = (0..200)
            .filter(|_| {
                let s = draw(&mut rng, k, &[0.03, 0.03, 0.04], n);
                decide_test_and_roll(&s, &[n; 3], 0.03, 0.0075).winner == 2
            })
            .count();
        assert!(right >= 190, "{right} of 200");
    }
}
