//! Decision policies: pure, synchronous, seedable math.
//!
//! Plain data in, plain data out; the RNG is passed in. No I/O, no clocks,
//! no tonic, no sled. The engine decides *when* to call these functions and
//! what to persist; this module only decides *which* arm and with what
//! probability.
//!
//! - [`beta`]: Beta special functions (CDF, quantiles, exact two-arm case).
//! - [`thompson`]: Beta-Bernoulli Thompson sampling with segment pooling.
//! - [`linucb`]: disjoint LinUCB (and linear Thompson sampling) over context features.
//! - uniform split: no state at all, see [`uniform_choice`].

pub mod beta;
pub mod linucb;
pub mod thompson;

use rand::Rng;

/// A plain A/B/n split: index into `k` active arms, each with probability 1/k.
/// Returns the index and its exact propensity.
pub fn uniform_choice<R: Rng + ?Sized>(k: usize, rng: &mut R) -> (usize, f64) {
    debug_assert!(k > 0);
    (rng.random_range(0..k), 1.0 / k as f64)
}
