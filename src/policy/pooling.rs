//! Empirical-Bayes pooling: a sparse segment's prior for an arm, estimated
//! from the same arm in the campaign's other segments.
//!
//! The model is hierarchical Beta-Binomial: segment g's rate for the arm is
//! p_g ~ Beta(μM, (1−μ)M) and its y_g successes in n_g trials are
//! Binomial(n_g, p_g). μ and M are estimated by the method of moments
//! (Kleinman 1973, "Proportions with Extraneous Variance: Single and
//! Independent Samples", JASA 68): with p̂ = Σy/Σn and the weighted
//! between-segment sum of squares S = Σ n_g (y_g/n_g − p̂)², the
//! intra-class correlation ρ = 1/(M+1) satisfies
//! E[S] = μ(1−μ)·[(G − 1) + ρ·(N − Σn_g²/N − (G − 1))], G segments,
//! N = Σn_g. Only segments with at least one (effective) trial of the arm
//! count as groups: a segment seen only through young pending decisions
//! (a fraction of a trial, no success) carries no binomial variance and
//! would read as perfect agreement.
//! When the segments agree (S no larger than binomial noise explains), ρ is
//! ~0 and M grows to the data's size: a new segment starts where the
//! campaign is and needs much evidence of its own to move away. When they
//! disagree, M is small and each segment learns mostly from itself.
//!
//! Everything is kept as per-arm sums over segments ([`PoolSums`]), updated
//! by removing a segment's old contribution and adding its new one, so
//! estimating a prior is O(1), not O(segments), and leave-one-out (a
//! segment's prior excludes its own data) is one subtraction.

/// Largest prior strength (pseudo-observations).
pub const MAX_STRENGTH: f64 = 1e6;
/// Prior strength when fewer than two other segments have data (no
/// between-segment variance to estimate yet).
pub const FALLBACK_STRENGTH: f64 = 10.0;
/// The pooled prior an arm's segment gets from `others` (the other named
/// segments' sums) under `mode`, on top of the campaign prior (α₀, β₀).
pub fn pooled_prior(
    mode: crate::campaign::Pooling,
    alpha0: f64,
    beta0: f64,
    others: &PoolSums,
) -> Option<PooledPrior> {
    use crate::campaign::Pooling;
    match mode {
        Pooling::Off => None,
        Pooling::EmpiricalBayes => estimate(others, alpha0, beta0),
        Pooling::Fixed { strength } => (others.n > 0.0).then(|| PooledPrior {
            mean: (alpha0 + others.y) / (alpha0 + beta0 + others.n),
            strength: strength.min(others.n),
        }),
    }
}

/// Effective trials a segment needs for an arm before it counts as a group.
pub const MIN_GROUP_TRIALS: f64 = 1.0;

/// One segment's (effective) trials and successes for an arm.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    pub n: f64,
    pub y: f64,
}

/// Per-arm sums over the segments with data.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolSums {
    /// Segments with n ≥ [`MIN_GROUP_TRIALS`].
    pub groups: f64,
    pub n: f64,
    pub y: f64,
    /// Σ y²/n.
    pub q: f64,
    /// Σ n².
    pub nn: f64,
}

impl PoolSums {
    fn apply(&mut self, e: Evidence, sign: f64) {
        if e.n < MIN_GROUP_TRIALS {
            return;
        }
        self.groups += sign;
        self.n += sign * e.n;
        self.y += sign * e.y;
        self.q += sign * e.y * e.y / e.n;
        self.nn += sign * e.n * e.n;
    }

    pub fn add(&mut self, e: Evidence) {
        self.apply(e, 1.0);
    }

    pub fn remove(&mut self, e: Evidence) {
        self.apply(e, -1.0);
    }

    /// Replaces a segment's contribution `old` by `new`.
    pub fn replace(&mut self, old: Evidence, new: Evidence) {
        self.remove(old);
        self.add(new);
    }

    /// The sums without one segment's contribution (leave-one-out).
    pub fn without(&self, own: Evidence) -> PoolSums {
        let mut s = *self;
        s.remove(own);
        s
    }
}

/// A pooled prior: mean and strength (Beta(μM, (1−μ)M) on top of the
/// campaign's own prior).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PooledPrior {
    pub mean: f64,
    pub strength: f64,
}

/// The method-of-moments prior from the other segments' sums, smoothed by
/// the campaign prior Beta(alpha0, beta0); `None` when they hold no data.
pub fn estimate(others: &PoolSums, alpha0: f64, beta0: f64) -> Option<PooledPrior> {
    if !(others.n > 1e-9 && others.groups >= 0.5) {
        return None;
    }
    let mean = ((others.y + alpha0) / (others.n + alpha0 + beta0)).clamp(1e-9, 1.0 - 1e-9);
    let strength = if others.groups < 1.5 {
        FALLBACK_STRENGTH.min(others.n)
    } else {
        let p = others.y / others.n;
        let s = (others.q - others.n * p * p).max(0.0);
        let denom = others.n - others.nn / others.n - (others.groups - 1.0);
        let rho = if denom > 1e-9 {
            ((s / (mean * (1.0 - mean)) - (others.groups - 1.0)) / denom).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let m = if rho <= 0.0 {
            f64::INFINITY
        } else {
            (1.0 - rho) / rho
        };
        m.min(others.n).min(MAX_STRENGTH)
    };
    Some(PooledPrior { mean, strength })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn binomial(n: u32, p: f64, rng: &mut SmallRng) -> f64 {
        f64::from((0..n).filter(|_| rng.random::<f64>() < p).count() as u32)
    }

    // Segments that share one rate give a strong prior at that rate;
    // segments with spread-out rates a weak one, near the truth of the
    // Beta-Binomial model that generated them.
    #[test]
    fn strength_follows_the_spread_between_segments() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut same = PoolSums::default();
        for _ in 0..200 {
            same.add(Evidence {
                n: 400.0,
                y: binomial(400, 0.05, &mut rng),
            });
        }
        let p = estimate(&same, 1.0, 1.0).expect("prior");
        assert!((p.mean - 0.05).abs() < 0.003, "{p:?}");
        assert!(
            p.strength > 2_000.0,
            "agreeing segments pool strongly: {p:?}"
        );

        // True M = 20: p_g ~ Beta(1, 19), mean 0.05.
        let beta = rand_distr::Beta::new(1.0, 19.0).expect("beta");
        let mut spread = PoolSums::default();
        for _ in 0..400 {
            let pg: f64 = rand_distr::Distribution::sample(&beta, &mut rng);
            spread.add(Evidence {
                n: 400.0,
                y: binomial(400, pg, &mut rng),
            });
        }
        let p = estimate(&spread, 1.0, 1.0).expect("prior");
        assert!((p.mean - 0.05).abs() < 0.01, "{p:?}");
        assert!(
            (10.0..40.0).contains(&p.strength),
            "disagreeing segments pool weakly: {p:?}"
        );
    }

    // Sparse segments (10 trials each) and a crowd of segments seen only
    // through young pending decisions: the strength stays near the true
    // M = 20 (before: the pending-only segments counted as groups that
    // agree perfectly, and the estimate went to ~2,000), and the (G − 1)
    // term of the moment equation keeps sparse data from biasing it.
    #[test]
    fn sparse_and_pending_only_segments_do_not_inflate_the_strength() {
        let beta = rand_distr::Beta::new(2.0, 18.0).expect("beta");
        let mut estimates = Vec::new();
        for seed in 0..25 {
            let mut rng = SmallRng::seed_from_u64(100 + seed);
            let mut sums = PoolSums::default();
            for _ in 0..200 {
                let pg: f64 = rand_distr::Distribution::sample(&beta, &mut rng);
                sums.add(Evidence {
                    n: 10.0,
                    y: binomial(10, pg, &mut rng),
                });
            }
            for _ in 0..200 {
                sums.add(Evidence { n: 0.05, y: 0.0 });
            }
            estimates.push(estimate(&sums, 1.0, 1.0).expect("prior").strength);
        }
        estimates.sort_by(f64::total_cmp);
        let median = estimates[estimates.len() / 2];
        assert!(
            (12.0..35.0).contains(&median),
            "median strength {median}: {estimates:?}"
        );
    }

    // Leave-one-out removes a segment's own contribution exactly, and an
    // empty pool gives no prior.
    #[test]
    fn leave_one_out_and_empty() {
        let a = Evidence { n: 10.0, y: 2.0 };
        let b = Evidence { n: 30.0, y: 3.0 };
        let mut s = PoolSums::default();
        s.add(a);
        s.add(b);
        let mut only_b = PoolSums::default();
        only_b.add(b);
        let loo = s.without(a);
        assert!((loo.n - only_b.n).abs() < 1e-12 && (loo.q - only_b.q).abs() < 1e-12);
        assert!(estimate(&PoolSums::default(), 1.0, 1.0).is_none());
        let one = estimate(&only_b, 1.0, 1.0).expect("one segment");
        assert_eq!(one.strength, FALLBACK_STRENGTH);
    }
}
