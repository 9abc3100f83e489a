//! Pending decisions as fractional evidence, in O(buckets) per read.
//!
//! Each arm of each segment counts its pending decisions per time bucket of
//! creation (the reward window split into [`BUCKETS`]); a bucket's
//! decisions all count with the same weight, the average of G (and of the
//! decay, if any) over the ages the bucket spans ([`BucketWeights`]). So
//! the exposure Σ_pending G(age) of an arm is a dot product of two short
//! vectors, however many decisions are pending, and it moves with time
//! without anything being touched.
//!
//! Bucket ids are absolute (creation ms / bucket width). A ring keeps the
//! last `BUCKETS + 1` ids per arm; a decision older than that is past its
//! window (the expiry sweep is merely late) and counts in `overdue` with
//! the full weight.

use super::delay::DelayModel;

/// Time buckets per reward window.
pub const BUCKETS: usize = 16;
const RING: usize = BUCKETS + 1;

/// Pending decisions of one arm in one segment, by creation bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PendingBuckets {
    /// The latest bucket id the ring holds.
    head: u64,
    ring: [u32; RING],
    /// Pending decisions older than the ring.
    overdue: u32,
}

impl PendingBuckets {
    fn roll_to(&mut self, bucket: u64) {
        if bucket <= self.head {
            return;
        }
        let steps = (bucket - self.head).min(RING as u64);
        for s in 1..=steps {
            let slot = ((self.head + s) % RING as u64) as usize;
            self.overdue += self.ring[slot];
            self.ring[slot] = 0;
        }
        self.head = bucket;
    }

    /// One more pending decision created in `bucket`.
    pub fn add(&mut self, bucket: u64) {
        self.roll_to(bucket);
        if bucket + (RING as u64) <= self.head {
            self.overdue += 1;
        } else {
            self.ring[(bucket % RING as u64) as usize] += 1;
        }
    }

    /// One pending decision created in `bucket` resolved.
    pub fn remove(&mut self, bucket: u64) {
        let in_ring = bucket <= self.head && bucket + (RING as u64) > self.head;
        let slot = (bucket % RING as u64) as usize;
        if in_ring && self.ring[slot] > 0 {
            self.ring[slot] -= 1;
        } else {
            debug_assert!(self.overdue > 0, "removing a pending decision never added");
            self.overdue = self.overdue.saturating_sub(1);
        }
    }

    /// Σ over pending decisions of their weight.
    pub fn exposure(&self, w: &BucketWeights) -> f64 {
        let mut e = f64::from(self.overdue) * w.beyond;
        for i in 0..RING as u64 {
            let Some(id) = self.head.checked_sub(i) else {
                break;
            };
            let n = self.ring[(id % RING as u64) as usize];
            if n > 0 {
                e += f64::from(n) * w.weight(id);
            }
        }
        e
    }

    /// The counts it holds: `(Some(bucket), n)` for the ring's non-empty
    /// buckets, `(None, n)` for those older than the ring (a replica ships
    /// these; see `engine::replicated`).
    pub fn entries(&self) -> impl Iterator<Item = (Option<u64>, u32)> + '_ {
        let ring = (0..RING as u64).filter_map(move |i| {
            let id = self.head.checked_sub(i)?;
            let n = self.ring[(id % RING as u64) as usize];
            (n > 0).then_some((Some(id), n))
        });
        ring.chain((self.overdue > 0).then_some((None, self.overdue)))
    }

    /// `n` more pending decisions created in `bucket` (`None`: older than
    /// any bucket held).
    pub fn add_n(&mut self, bucket: Option<u64>, n: u32) {
        match bucket {
            Some(b) => {
                self.roll_to(b);
                if b + (RING as u64) <= self.head {
                    self.overdue = self.overdue.saturating_add(n);
                } else {
                    let slot = &mut self.ring[(b % RING as u64) as usize];
                    *slot = slot.saturating_add(n);
                }
            }
            None => self.overdue = self.overdue.saturating_add(n),
        }
    }

    /// Pending decisions counted.
    pub fn count(&self) -> u64 {
        u64::from(self.overdue) + self.ring.iter().map(|&n| u64::from(n)).sum::<u64>()
    }
}

/// What a pending decision of each recent bucket is worth at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketWeights {
    /// The bucket id `now` falls in.
    current: u64,
    /// `w[i]`: weight of bucket id `current − i`.
    w: [f64; RING],
    /// Buckets in use in `w`.
    len: usize,
    /// Weight of anything older.
    beyond: f64,
}

/// The bucket of a decision created at `created_ms`.
pub fn bucket_of(created_ms: u64, bucket_ms: u64) -> u64 {
    created_ms / bucket_ms.max(1)
}

/// Bucket width for a reward window.
pub fn bucket_ms(window_ms: u64) -> u64 {
    (window_ms / BUCKETS as u64).max(1)
}

impl BucketWeights {
    /// Weights at `now_ms`: the mean of G over each bucket's ages, times the
    /// decay at the bucket's middle age when `half_life_ms` is set.
    pub fn at(now_ms: u64, delay: &DelayModel, half_life_ms: Option<f64>) -> Self {
        Self::at_with(now_ms, delay, half_life_ms, BUCKETS)
    }

    /// [`Self::at`] for a coarser split of the window into `buckets`
    /// (at most [`BUCKETS`]); bucket ids are then `created / (window / buckets)`.
    pub fn at_with(
        now_ms: u64,
        delay: &DelayModel,
        half_life_ms: Option<f64>,
        buckets: usize,
    ) -> Self {
        let buckets = buckets.clamp(1, BUCKETS);
        let width = (delay.window_ms() / buckets as u64).max(1);
        let current = bucket_of(now_ms, width);
        let decay = |age: f64| half_life_ms.map_or(1.0, |h| (-age / h).exp2());
        let mut w = [0.0; RING];
        for (i, wi) in w.iter_mut().enumerate().take(buckets + 1) {
            let Some(id) = current.checked_sub(i as u64) else {
                break;
            };
            let start = (id * width) as f64;
            let (age_lo, age_hi) = (
                now_ms as f64 - (start + width as f64),
                now_ms as f64 - start,
            );
            *wi = delay.mean_cdf(age_lo, age_hi) * decay(0.5 * (age_lo.max(0.0) + age_hi));
        }
        BucketWeights {
            current,
            w,
            len: buckets + 1,
            beyond: decay(delay.window_ms() as f64),
        }
    }

    /// The weight of bucket id `id`.
    pub fn weight(&self, id: u64) -> f64 {
        match self.current.checked_sub(id) {
            Some(i) if (i as usize) < self.len => self.w[i as usize],
            Some(_) => self.beyond,
            // A bucket in the future (a clock that went back): no evidence yet.
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // With the uniform prior G(e) = e/window, the exposure of decisions
    // spread evenly over the window is half their number, and it grows to
    // the full number as the window closes; resolved ones leave.
    #[test]
    fn exposure_follows_age() {
        let window = 16_000u64;
        let model = DelayModel::new(window);
        let width = bucket_ms(window);
        let mut p = PendingBuckets::default();
        // One decision per ms over one window, ending at t = 100,000.
        for t in 84_000..100_000u64 {
            p.add(bucket_of(t, width));
        }
        assert_eq!(p.count(), 16_000);
        let now = 100_000;
        let e = p.exposure(&BucketWeights::at(now, &model, None));
        assert!((e - 8_000.0).abs() < 600.0, "{e}");
        let later = p.exposure(&BucketWeights::at(now + window, &model, None));
        assert!(later > 15_000.0, "{later}");
        let fresh = p.exposure(&BucketWeights::at(84_000, &model, None));
        assert!(fresh < 1_100.0, "{fresh}");
        for t in 84_000..92_000u64 {
            p.remove(bucket_of(t, width));
        }
        assert_eq!(p.count(), 8_000);
    }

    // Decisions older than the ring move to `overdue` (full weight) and can
    // still be removed; the counts never go negative.
    #[test]
    fn old_decisions_become_overdue() {
        let model = DelayModel::new(1_600);
        let width = bucket_ms(1_600);
        let mut p = PendingBuckets::default();
        p.add(bucket_of(0, width));
        p.add(bucket_of(50_000, width));
        assert_eq!(p.count(), 2);
        let w = BucketWeights::at(50_000, &model, None);
        let e = p.exposure(&w);
        assert!(
            (e - 1.0).abs() < 0.05,
            "the old one counts fully, the new one barely: {e}"
        );
        p.remove(bucket_of(0, width));
        p.remove(bucket_of(50_000, width));
        assert_eq!(p.count(), 0);
        assert_eq!(p.exposure(&w), 0.0);
    }

    // A half-life discounts old pending decisions.
    #[test]
    fn decay_discounts_pending_evidence() {
        let model = DelayModel::new(1_600);
        let width = bucket_ms(1_600);
        let mut p = PendingBuckets::default();
        p.add(bucket_of(0, width));
        let plain = p.exposure(&BucketWeights::at(10_000, &model, None));
        let decayed = p.exposure(&BucketWeights::at(10_000, &model, Some(5_000.0)));
        assert!((plain - 1.0).abs() < 1e-9);
        assert!(
            (decayed - (-1_600.0f64 / 5_000.0).exp2()).abs() < 1e-9,
            "{decayed}"
        );
    }
}
