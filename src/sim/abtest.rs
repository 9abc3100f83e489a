//! The classical A/B test, done properly: statistics only.
//!
//! Owns the sample-size (power) calculation, the two-proportion z-test and
//! the decision rule (Bonferroni-corrected for more than two offers). Pure
//! functions: no randomness, no engine, no scenario types.

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
/// k−1 comparisons of the observed leader against each other offer.
pub fn corrected_alpha(alpha: f64, offers: usize) -> f64 {
    alpha / (offers.saturating_sub(1).max(1)) as f64
}

/// Customers per offer for a two-sided two-proportion z-test to detect a
/// relative lift `mde` over `baseline` with the given α (already corrected)
/// and power.
pub fn sample_size_per_arm(baseline: f64, mde: f64, alpha: f64, power: f64) -> u64 {
    let p1 = baseline.clamp(1e-6, 1.0 - 1e-6);
    let p2 = (p1 * (1.0 + mde)).clamp(1e-6, 1.0 - 1e-6);
    let za = inv_norm_cdf(1.0 - alpha / 2.0);
    let zb = inv_norm_cdf(power);
    let delta = (p2 - p1).abs().max(1e-9);
    let n = (za + zb).powi(2) * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / (delta * delta);
    n.ceil().min(1e15) as u64
}

/// Two-sided p-value of the pooled two-proportion z-test.
pub fn two_proportion_p(s1: u64, n1: u64, s2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (s1, n1, s2, n2) = (s1 as f64, n1 as f64, s2 as f64, n2 as f64);
    let pooled = (s1 + s2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se <= 0.0 {
        return 1.0;
    }
    let z = (s1 / n1 - s2 / n2) / se;
    2.0 * (1.0 - norm_cdf(z.abs()))
}

/// What the test concluded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbDecision {
    /// The offer with the highest observed rate (rolled out either way).
    pub winner: usize,
    /// Whether the winner beats every other offer at the corrected α.
    pub significant: bool,
}

/// Picks the observed leader and tests it against every other offer at
/// `corrected_alpha(alpha, k)`.
pub fn decide(successes: &[u64], trials: &[u64], alpha: f64) -> AbDecision {
    let rate = |i: usize| successes[i] as f64 / trials[i].max(1) as f64;
    let winner = (0..successes.len())
        .max_by(|a, b| rate(*a).total_cmp(&rate(*b)).then(b.cmp(a)))
        .unwrap_or(0);
    let a = corrected_alpha(alpha, successes.len());
    let significant = successes.len() > 1
        && (0..successes.len()).filter(|i| *i != winner).all(|i| {
            two_proportion_p(successes[winner], trials[winner], successes[i], trials[i]) < a
        });
    AbDecision {
        winner,
        significant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The quantile function matches textbook values.
    #[test]
    fn quantiles() {
        assert!((inv_norm_cdf(0.975) - 1.959_964).abs() < 1e-5);
        assert!((inv_norm_cdf(0.8) - 0.841_621).abs() < 1e-5);
        assert!((norm_cdf(1.959_964) - 0.975).abs() < 1e-6);
    }

    // Sample size matches the standard formula for 2.0% → 2.2% (≈ 80k per arm).
    #[test]
    fn sample_size() {
        let n = sample_size_per_arm(0.02, 0.10, 0.05, 0.8);
        assert!((80_000..82_000).contains(&n), "{n}");
    }
}
