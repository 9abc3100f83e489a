//! Delayed feedback: the conversion-delay distribution, learned online, and
//! what a pending decision is worth as evidence.
//!
//! A conversion is known when it arrives; a non-conversion only when the
//! reward window closes. Counting a reward at once and a failure only at
//! the timeout makes every arm with recent traffic look better than it is.
//! The fix (Vernade, Cappé & Perchet 2017, "Stochastic Bandit Models for
//! Delayed Conversions"; Chapelle 2014, "Modeling Delayed Feedback in
//! Display Advertising") uses G, the distribution of the delay of the
//! conversions that do arrive within the window: a decision still pending
//! at age e has converted with probability θ·G(e) so far, so it carries the
//! likelihood factor (1 − θ·G(e)). banditd keeps Beta posteriors
//! conjugate by counting it as G(e) of a failure, `(1 − θ)^G(e)`, which
//! agrees with the exact factor to first order in θ: the posterior mean of
//! an arm whose decisions all have age e is θ/(1 + θ(1 − G(e))), a relative
//! bias below θ (2% at a 2% conversion rate), the same for every arm of
//! similar rate, and gone once the window closes; where counting failures
//! only at the timeout gives a mean near 1 for the same arm.
//!
//! [`DelayModel`] learns G from the delays of the rewards actually
//! received (weighted by the reward, so fractional rewards count in part),
//! as a histogram over the window with a weak uniform prior: before any
//! conversion G(e) = e/window. Its counts are additive (replicas merge them).

/// Bins of the delay histogram over the reward window.
pub const DELAY_BINS: usize = 64;
/// Pseudo-observations of the uniform prior on the delay.
pub const DELAY_PRIOR_WEIGHT: f64 = 4.0;

/// The learned conversion-delay distribution of one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayModel {
    window_ms: u64,
    /// Reward-weighted counts of observed delays per bin (prior excluded).
    bins: Vec<f64>,
    /// Cumulative distribution at the right edge of each bin, prior included.
    cdf: Vec<f64>,
    /// ∫₀^{edge} G(a) da at the right edge of each bin, in ms.
    integral: Vec<f64>,
}

impl DelayModel {
    /// A model over `window_ms` (> 0) with no observations yet.
    pub fn new(window_ms: u64) -> Self {
        Self::from_bins(window_ms, vec![0.0; DELAY_BINS])
    }

    /// A model from persisted bin counts (wrong lengths or negative or
    /// non-finite counts are treated as empty).
    pub fn from_bins(window_ms: u64, mut bins: Vec<f64>) -> Self {
        if bins.len() != DELAY_BINS || bins.iter().any(|b| !(b.is_finite() && *b >= 0.0)) {
            bins = vec![0.0; DELAY_BINS];
        }
        let mut m = DelayModel {
            window_ms: window_ms.max(1),
            bins,
            cdf: vec![0.0; DELAY_BINS],
            integral: vec![0.0; DELAY_BINS],
        };
        m.rebuild();
        m
    }

    pub fn bins(&self) -> &[f64] {
        &self.bins
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    fn bin_ms(&self) -> f64 {
        self.window_ms as f64 / DELAY_BINS as f64
    }

    /// Records one reward `weight` (> 0) that arrived `delay_ms` after its
    /// decision. Call [`Self::rebuild`] before reading again (callers batch).
    pub fn observe(&mut self, delay_ms: u64, weight: f64) {
        if !(weight.is_finite() && weight > 0.0) {
            return;
        }
        let i = ((delay_ms as f64 / self.bin_ms()) as usize).min(DELAY_BINS - 1);
        self.bins[i] += weight;
    }

    /// Recomputes the cumulative tables from the counts.
    pub fn rebuild(&mut self) {
        let total: f64 = self.bins.iter().sum::<f64>() + DELAY_PRIOR_WEIGHT;
        let prior = DELAY_PRIOR_WEIGHT / DELAY_BINS as f64;
        let w = self.bin_ms();
        let (mut c, mut area) = (0.0, 0.0);
        for i in 0..DELAY_BINS {
            let before = c;
            c += (self.bins[i] + prior) / total;
            // G is linear inside a bin, from `before` to `c`.
            area += w * 0.5 * (before + c);
            self.cdf[i] = c;
            self.integral[i] = area;
        }
        self.cdf[DELAY_BINS - 1] = 1.0;
    }

    /// G(age): the share of in-window conversions that arrive within
    /// `age_ms`; 1 at and beyond the window.
    pub fn cdf(&self, age_ms: f64) -> f64 {
        if age_ms <= 0.0 {
            return 0.0;
        }
        let w = self.bin_ms();
        let pos = age_ms / w;
        let i = pos as usize;
        if i >= DELAY_BINS {
            return 1.0;
        }
        let before = if i == 0 { 0.0 } else { self.cdf[i - 1] };
        before + (self.cdf[i] - before) * (pos - i as f64)
    }

    /// ∫₀^age G(a) da, in ms.
    fn integral_to(&self, age_ms: f64) -> f64 {
        if age_ms <= 0.0 {
            return 0.0;
        }
        let w = self.bin_ms();
        let pos = age_ms / w;
        let i = pos as usize;
        if i >= DELAY_BINS {
            return self.integral[DELAY_BINS - 1] + (age_ms - self.window_ms as f64);
        }
        let (before_i, before_c) = if i == 0 {
            (0.0, 0.0)
        } else {
            (self.integral[i - 1], self.cdf[i - 1])
        };
        let t = pos - i as f64;
        let at = self.cdf(age_ms);
        before_i + w * t * 0.5 * (before_c + at)
    }

    /// The average of G over ages in `[lo_ms, hi_ms]`: the evidence worth
    /// of a decision created uniformly at random within a time bucket.
    pub fn mean_cdf(&self, lo_ms: f64, hi_ms: f64) -> f64 {
        let (lo, hi) = (lo_ms.max(0.0), hi_ms.max(0.0));
        if hi - lo < 1e-9 {
            return self.cdf(hi);
        }
        ((self.integral_to(hi) - self.integral_to(lo)) / (hi - lo)).clamp(0.0, 1.0)
    }

    /// Adds another model's counts (replicas; same window).
    pub fn merge(&mut self, other: &DelayModel) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.rebuild();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Before any conversion G is uniform over the window; the average over
    // an interval is the integral's mean.
    #[test]
    fn prior_is_uniform() {
        let m = DelayModel::new(64_000);
        for e in [0.0, 1_000.0, 32_000.0, 63_999.0] {
            assert!((m.cdf(e) - e / 64_000.0).abs() < 1e-12, "{e}");
        }
        assert_eq!(m.cdf(64_000.0), 1.0);
        assert_eq!(m.cdf(1e9), 1.0);
        assert!((m.mean_cdf(0.0, 64_000.0) - 0.5).abs() < 1e-9);
        assert!((m.mean_cdf(16_000.0, 48_000.0) - 0.5).abs() < 1e-9);
        assert!((m.mean_cdf(64_000.0, 70_000.0) - 1.0).abs() < 1e-9);
    }

    // Learned from exponential delays (mean 2 h in a 24 h window), G matches
    // the truncated exponential CDF within a bin's resolution.
    #[test]
    fn learns_an_exponential_delay() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let window = 24 * 3_600_000u64;
        let mean = 2.0 * 3_600_000.0;
        let mut m = DelayModel::new(window);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut n = 0;
        while n < 50_000 {
            let d = -mean * (1.0 - rng.random::<f64>()).ln();
            if d < window as f64 {
                m.observe(d as u64, 1.0);
                n += 1;
            }
        }
        m.rebuild();
        let z = 1.0 - (-(window as f64) / mean).exp();
        for hours in [0.5, 1.0, 2.0, 4.0, 8.0, 20.0] {
            let e = hours * 3_600_000.0;
            let want = (1.0 - (-e / mean).exp()) / z;
            assert!(
                (m.cdf(e) - want).abs() < 0.015,
                "{hours} h: {} vs {want}",
                m.cdf(e)
            );
        }
        // The mean over the first hour is below G(1 h) and above G(0).
        let g = m.mean_cdf(0.0, 3_600_000.0);
        assert!(g > 0.0 && g < m.cdf(3_600_000.0));
    }

    // Bad persisted counts do not poison the model; merging adds counts.
    #[test]
    fn bad_counts_are_ignored_and_models_merge() {
        let m = DelayModel::from_bins(1000, vec![f64::NAN; DELAY_BINS]);
        assert_eq!(m, DelayModel::new(1000));
        let mut a = DelayModel::new(1000);
        a.observe(10, 1.0);
        a.rebuild();
        let mut b = DelayModel::new(1000);
        b.merge(&a);
        assert_eq!(a, b);
    }
}
