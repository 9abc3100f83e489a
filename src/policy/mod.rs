//! Decision policies: pure, synchronous, seedable math.
//!
//! Plain data in, plain data out; the RNG is passed in. No I/O, no clocks,
//! no tonic, no sled. The engine decides *when* to call these functions and
//! what to persist; this module only decides *which* arm and with what
//! probability.
//!
//! - [`beta`]: Beta special functions (CDF, quantiles, exact two-arm case).
//! - [`prob_best`]: P(arm is best) for Beta posteriors, plain and value-aware.
//! - [`thompson`]: Beta-Bernoulli Thompson sampling, exact propensities.
//! - [`delay`]: the learned conversion-delay distribution G.
//! - [`exposure`]: pending decisions as fractional evidence, by time bucket.
//! - [`pooling`]: the empirical-Bayes prior of a sparse segment.
//! - [`linucb`]: disjoint LinUCB (and linear Thompson sampling) over context features.
//! - [`slate`]: ranked slates of k arms with position-wise propensities.
//! - uniform split: no state at all, see [`uniform_choice`].
//! - ε-greedy: the common baseline, see [`epsilon_greedy`].

pub mod beta;
pub mod delay;
pub mod exposure;
pub mod linucb;
pub mod pooling;
pub mod prob_best;
pub mod slate;
pub mod thompson;

use rand::Rng;

/// A plain A/B/n split: index into `k` active arms, each with probability 1/k.
/// Returns the index and its exact propensity.
pub fn uniform_choice<R: Rng + ?Sized>(k: usize, rng: &mut R) -> (usize, f64) {
    debug_assert!(k > 0);
    (rng.random_range(0..k), 1.0 / k as f64)
}

/// ε-greedy over the empirical means of `k = means.len()` active arms: with
/// probability ε a uniformly random arm, otherwise one of the arms with the
/// highest mean (ties broken at random). An untried arm's mean is `None` and
/// ranks above every tried one, so each arm is tried before it is judged.
/// [`epsilon_greedy_probs`] is the distribution it draws from.
/// Returns the index and its exact propensity
/// `ε/k + (1−ε)·[index is a leader]/leaders`. `leaders` is a scratch buffer.
pub fn epsilon_greedy<R: Rng + ?Sized>(
    means: &[Option<f64>],
    epsilon: f64,
    leaders: &mut Vec<usize>,
    rng: &mut R,
) -> (usize, f64) {
    let k = means.len();
    debug_assert!(k > 0 && (0.0..=1.0).contains(&epsilon));
    let rank = |m: Option<f64>| m.unwrap_or(f64::INFINITY);
    let best = means
        .iter()
        .map(|m| rank(*m))
        .fold(f64::NEG_INFINITY, f64::max);
    leaders.clear();
    leaders.extend((0..k).filter(|&i| rank(means[i]) == best));
    let i = if rng.random::<f64>() < epsilon {
        rng.random_range(0..k)
    } else {
        leaders[rng.random_range(0..leaders.len())]
    };
    let lead = if leaders.contains(&i) {
        (1.0 - epsilon) / leaders.len() as f64
    } else {
        0.0
    };
    (i, epsilon / k as f64 + lead)
}

/// ε-greedy's whole distribution over `means`, ranked as in
/// [`epsilon_greedy`] (an untried arm, `None`, above every tried one):
/// `ε/k` each, plus `(1−ε)/leaders` for each leader.
pub fn epsilon_greedy_probs(means: &[Option<f64>], epsilon: f64) -> Vec<f64> {
    let rank = |m: Option<f64>| m.unwrap_or(f64::INFINITY);
    let scores: Vec<f64> = means.iter().map(|m| rank(*m)).collect();
    argmax_share(&scores, epsilon)
}

/// The distribution of "the highest score, ties split evenly, and with
/// probability ε a uniform pick": `ε/k + (1−ε)·[s = max]/|argmax|` per
/// score (a NaN score never leads). ε-greedy and LinUCB both play it.
pub fn argmax_share(scores: &[f64], epsilon: f64) -> Vec<f64> {
    let clean = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    let best = scores
        .iter()
        .map(|&s| clean(s))
        .fold(f64::NEG_INFINITY, f64::max);
    let ties = scores.iter().filter(|&&s| clean(s) == best).count().max(1);
    let k = scores.len() as f64;
    scores
        .iter()
        .map(|&s| {
            let lead = if clean(s) == best {
                (1.0 - epsilon) / ties as f64
            } else {
                0.0
            };
            epsilon / k + lead
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The distributions the log records: an untried arm leads, ties split,
    // a NaN score never leads, and every vector sums to 1.
    #[test]
    fn epsilon_greedy_and_argmax_distributions() {
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-15);
        let p = epsilon_greedy_probs(&[Some(0.2), None, Some(0.5)], 0.3);
        assert!(close(&p, &[0.1, 0.8, 0.1]), "{p:?}");
        let p = argmax_share(&[1.0, 2.0, 2.0, f64::NAN], 0.2);
        assert!(close(&p, &[0.05, 0.45, 0.45, 0.05]), "{p:?}");
        let p = argmax_share(&[f64::NAN, f64::NAN], 0.0);
        assert!(close(&p, &[0.5, 0.5]), "{p:?}");
        for p in [
            epsilon_greedy_probs(&[Some(0.1); 7], 0.1),
            argmax_share(&[3.0, -1.0, 3.0], 1.0),
        ] {
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // epsilon_greedy's propensity is the vector's entry, bit for bit.
        let means = [Some(0.2), Some(0.5), Some(0.5), None, Some(0.1)];
        let mut leaders = Vec::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let p = epsilon_greedy_probs(&means, 0.15);
        for _ in 0..200 {
            let (i, q) = epsilon_greedy(&means, 0.15, &mut leaders, &mut rng);
            assert_eq!(q.to_bits(), p[i].to_bits());
        }
    }
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    // The empirical frequency of each arm matches the propensity ε-greedy
    // reports for it, leaders, ties and untried arms included.
    #[test]
    fn epsilon_greedy_propensity_matches_frequency() {
        let cases: [&[Option<f64>]; 3] = [
            &[Some(0.1), Some(0.3), Some(0.2)],
            &[Some(0.3), Some(0.1), Some(0.3), Some(0.0)],
            &[Some(0.9), None, None, Some(0.5)],
        ];
        let mut rng = SmallRng::seed_from_u64(5);
        let mut leaders = Vec::new();
        for means in cases {
            let n = 200_000;
            let mut hits = vec![0u32; means.len()];
            let mut reported = vec![f64::NAN; means.len()];
            for _ in 0..n {
                let (i, p) = epsilon_greedy(means, 0.2, &mut leaders, &mut rng);
                hits[i] += 1;
                reported[i] = p;
            }
            let total: f64 = reported.iter().filter(|p| p.is_finite()).sum();
            assert!((total - 1.0).abs() < 1e-12, "{means:?}: {reported:?}");
            for (h, p) in hits.iter().zip(&reported) {
                let f = f64::from(*h) / f64::from(n);
                assert!(
                    (f - p).abs() < 0.005,
                    "{means:?}: freq {f} vs propensity {p}"
                );
            }
        }
    }

    // ε = 0 is pure greedy; the untried arms are tried first.
    #[test]
    fn greedy_prefers_untried_then_best() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut leaders = Vec::new();
        for _ in 0..100 {
            let (i, p) = epsilon_greedy(&[Some(0.5), None, Some(0.9)], 0.0, &mut leaders, &mut rng);
            assert_eq!((i, p), (1, 1.0));
            let (i, p) = epsilon_greedy(
                &[Some(0.5), Some(0.1), Some(0.9)],
                0.0,
                &mut leaders,
                &mut rng,
            );
            assert_eq!((i, p), (2, 1.0));
        }
    }
}
