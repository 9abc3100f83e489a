//! The A/B designs run on the engine: their plans (sizes, looks, the
//! horizon cap) and the state of one test while it runs.
//!
//! A test runs on a `Uniform` campaign (one per segment for the per-segment
//! test). The customers of stage j (the ones between look j−1 and look j)
//! are tagged with segment `ab-test-j`; look j happens once every stage up
//! to j is resolved in the engine (rewarded, or its attribution window
//! closed), on the engine's own counts; when the test stops, every offer but
//! the winner is retired, so the winner gets everyone from then on. The
//! statistics are in [`abtest`](super::abtest); this module owns the
//! bookkeeping and never draws customers.

use super::abtest::{self, AbDecision, Sequential};
use crate::engine::Engine;

/// The A/B designs the simulator compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// One analysis after the planned sample: Holm against the control.
    Fixed,
    /// O'Brien–Fleming looks against the control.
    Sequential,
    /// Feit & Berman's profit-maximising size, then the best-looking offer.
    TestAndRoll,
}

/// What a scenario's `[ab]` table sets (defaults in [`AbSettings::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AbSettings {
    /// Index of the control offer (the one kept without a significant winner).
    pub control: usize,
    /// Looks of the group-sequential designs.
    pub looks: usize,
    /// The test may take at most this share of its customers over the horizon.
    pub max_test_share: f64,
    /// Test-and-roll's Normal prior on the offers' rates: mean (`None`: the
    /// planning baseline) and sd (`None`: a quarter of the mean).
    pub prior_mean: Option<f64>,
    pub prior_sd: Option<f64>,
}

impl Default for AbSettings {
    fn default() -> Self {
        AbSettings {
            control: 0,
            looks: 5,
            max_test_share: 0.5,
            prior_mean: None,
            prior_sd: None,
        }
    }
}

/// Family-wise significance level of the hypothesis-testing designs.
pub const ALPHA: f64 = 0.05;
/// Power at the minimum detectable effect.
pub const POWER: f64 = 0.8;

/// One design planned for one unit (the campaign, or one segment).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub design: Design,
    pub offers: usize,
    pub control: usize,
    /// Cumulative customers per offer at each look (one look unless sequential).
    pub looks: Vec<u64>,
    /// Customers per offer the design asked for, before the horizon cap.
    pub wanted_per_arm: u64,
    /// Whether the horizon cap cut the test below what the design asked for.
    pub capped: bool,
    /// Power at the minimum detectable effect with the planned size (the
    /// hypothesis-testing designs).
    pub power: Option<f64>,
    pub sequential: Option<Sequential>,
    /// Test-and-roll's prior (mean, sd).
    pub prior: (f64, f64),
}

impl Plan {
    /// Plans `design` for a unit expecting `customers` over the horizon;
    /// `boundaries` is the O'Brien–Fleming design for `s.looks` looks at
    /// α/(k−1) (computed once: it takes a numerical integration).
    pub fn new(
        design: Design,
        offers: usize,
        customers: u64,
        baseline: f64,
        mde: f64,
        s: &AbSettings,
        boundaries: &Sequential,
    ) -> Plan {
        let k = offers.max(2);
        let alpha = abtest::corrected_alpha(ALPHA, k);
        let prior_mean = s.prior_mean.unwrap_or(baseline).clamp(1e-6, 1.0 - 1e-6);
        let prior = (prior_mean, s.prior_sd.unwrap_or(prior_mean / 4.0).max(1e-9));
        let (looks, sequential) = match design {
            Design::Fixed => (
                vec![abtest::fixed_per_arm(baseline, mde, ALPHA, POWER, k)],
                None,
            ),
            Design::Sequential => {
                let fixed = abtest::sample_size_per_arm(baseline, mde, alpha, POWER);
                (
                    abtest::look_sizes(fixed, boundaries),
                    Some(boundaries.clone()),
                )
            }
            Design::TestAndRoll => (
                vec![abtest::test_and_roll_per_arm(
                    customers, k, prior.0, prior.1,
                )],
                None,
            ),
        };
        let wanted = looks.last().copied().unwrap_or(1);
        let cap = ((s.max_test_share * customers as f64) / k as f64)
            .floor()
            .max(1.0) as u64;
        let capped = wanted > cap;
        let looks: Vec<u64> = if capped {
            looks
                .iter()
                .map(|n| ((*n as f64) * cap as f64 / wanted as f64).ceil().max(1.0) as u64)
                .collect()
        } else {
            looks
        };
        // Every stage takes customers (the cap's rounding could repeat a size).
        let mut looks = looks;
        for j in 1..looks.len() {
            looks[j] = looks[j].max(looks[j - 1] + 1);
        }
        let last = looks.last().copied().unwrap_or(1);
        let power = match (&design, &sequential) {
            (Design::Fixed, _) => Some(abtest::power_at(baseline, mde, alpha, last)),
            // About: the fixed test's power at the sequential maximum ÷ its inflation.
            (Design::Sequential, Some(d)) => Some(abtest::power_at(
                baseline,
                mde,
                alpha,
                (last as f64 / d.inflation) as u64,
            )),
            _ => None,
        };
        Plan {
            design,
            offers: k,
            control: s.control.min(k - 1),
            looks,
            wanted_per_arm: wanted,
            capped,
            power,
            sequential,
            prior,
        }
    }

    /// Test customers over all stages.
    pub fn test_customers(&self) -> u64 {
        self.looks
            .last()
            .copied()
            .unwrap_or(0)
            .saturating_mul(self.offers as u64)
    }

    /// The decision at look `look` (counting from 0) on cumulative counts;
    /// `None`: go on to the next look. With `last`, the horizon ended during
    /// this stage: a sequential test decides here (the control unless an
    /// offer crossed this look's boundary).
    pub fn decide(
        &self,
        successes: &[u64],
        trials: &[u64],
        look: usize,
        last: bool,
    ) -> Option<AbDecision> {
        match (self.design, &self.sequential) {
            (Design::Sequential, Some(d)) => {
                abtest::decide_look(successes, trials, self.control, d, look).or(last.then_some(
                    AbDecision {
                        winner: self.control,
                        significant: false,
                    },
                ))
            }
            (Design::TestAndRoll, _) => Some(abtest::decide_test_and_roll(
                successes,
                trials,
                self.prior.0,
                self.prior.1,
            )),
            _ => Some(abtest::decide_fixed(successes, trials, self.control, ALPHA)),
        }
    }
}

/// Segment tags of the stages: `ab-test-1`, `ab-test-2`, …
pub fn stage_tags(looks: usize) -> Vec<String> {
    (1..=looks).map(|j| format!("ab-test-{j}")).collect()
}

/// One test while it runs, and what it concluded.
#[derive(Debug, Clone, Default)]
pub struct AbUnit {
    /// The engine campaign the test runs on.
    pub campaign: String,
    /// Test customers assigned so far (over all stages).
    pub assigned: u64,
    /// Customers split evenly before the decision: the test's, and those
    /// that arrived while its last outcomes came in.
    pub split: u64,
    /// The horizon ended during this stage (a partial last look).
    cut_at: Option<usize>,
    /// Per stage: when its last decision's attribution window closes.
    closes_at: Vec<Option<u64>>,
    /// Looks analysed so far.
    pub analysed: usize,
    pub decision: Option<AbDecision>,
    /// Simulated time (ms) of the decision, and of the last test assignment.
    pub decided_at: Option<u64>,
    pub test_ended_at: Option<u64>,
    /// Cumulative counts per offer at the deciding look, from the engine.
    pub successes: Vec<u64>,
    pub trials: Vec<u64>,
}

impl AbUnit {
    pub fn new(campaign: String, looks: usize) -> AbUnit {
        AbUnit {
            campaign,
            closes_at: vec![None; looks],
            ..AbUnit::default()
        }
    }

    /// The stage of the next customer (its index into the tags), or `None`
    /// when the test takes no more customers; `timeout_ms` is the campaign's
    /// reward timeout (a stage is resolved that long after its last customer).
    pub fn assign(&mut self, plan: &Plan, now_ms: u64, timeout_ms: u64) -> Option<usize> {
        if self.decision.is_some() {
            return None;
        }
        self.split += 1;
        if self.assigned >= plan.test_customers() {
            return None;
        }
        self.assigned += 1;
        let k = plan.offers as u64;
        let stage = plan
            .looks
            .iter()
            .position(|n| self.assigned <= n.saturating_mul(k))?;
        if self.assigned == plan.looks[stage].saturating_mul(k) {
            self.closes_at[stage] = Some(now_ms + timeout_ms);
            if stage + 1 == plan.looks.len() {
                self.test_ended_at = Some(now_ms);
            }
        }
        Some(stage)
    }

    /// The last customer has arrived: a stage still filling is analysed
    /// as it is (its outcomes are in `timeout_ms` later), as the last look.
    pub fn horizon_ends(&mut self, now_ms: u64, timeout_ms: u64) {
        if self.decision.is_some() {
            return;
        }
        if let Some(j) = self.closes_at.iter().position(Option::is_none) {
            if self.analysed <= j && self.assigned > 0 {
                self.closes_at[j] = Some(now_ms + timeout_ms);
                self.cut_at = Some(j);
            }
        }
    }

    /// Takes every look whose stages are resolved; once the test stops,
    /// retires every offer but the winner in the unit's campaign.
    pub fn look(
        &mut self,
        plan: &Plan,
        engine: &Engine,
        tags: &[String],
        now_ms: u64,
    ) -> Result<(), crate::Error> {
        while self.decision.is_none() && self.look_once(plan, engine, tags, now_ms)? {}
        Ok(())
    }

    /// The next look, if its stages are resolved: whether it was taken.
    fn look_once(
        &mut self,
        plan: &Plan,
        engine: &Engine,
        tags: &[String],
        now_ms: u64,
    ) -> Result<bool, crate::Error> {
        let look = self.analysed;
        let Some(Some(closes)) = self.closes_at.get(look) else {
            return Ok(false);
        };
        if now_ms <= *closes {
            return Ok(false);
        }
        let k = plan.offers;
        let (mut successes, mut trials) = (vec![0u64; k], vec![0u64; k]);
        let mut arm_ids = Vec::new();
        for tag in &tags[..=look] {
            let stats = engine.stats(&self.campaign, tag)?;
            let Some(stage) = stats.iter().find(|s| s.segment == *tag) else {
                continue;
            };
            if stage.arms.iter().any(|a| a.pending > 0) {
                return Ok(false);
            }
            for (i, a) in stage.arms.iter().enumerate().take(k) {
                trials[i] += a.pulls;
                successes[i] += a.reward_sum.round() as u64;
            }
            if arm_ids.is_empty() {
                arm_ids = stage.arms.iter().map(|a| a.arm_id.clone()).collect();
            }
        }
        self.analysed += 1;
        let last = self.cut_at == Some(look);
        let Some(decision) = plan.decide(&successes, &trials, look, last) else {
            return Ok(true);
        };
        self.decision = Some(decision);
        self.decided_at = Some(now_ms);
        self.test_ended_at.get_or_insert(now_ms);
        self.successes = successes;
        self.trials = trials;
        for (i, arm) in arm_ids.iter().enumerate() {
            if i != decision.winner {
                engine.retire_arm(&self.campaign, arm)?;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_their_formulas_and_the_horizon_cap() {
        let s = AbSettings::default();
        let obf = abtest::obrien_fleming(5, 0.025, POWER);
        let fixed = Plan::new(Design::Fixed, 3, 300_000, 0.0348, 0.10, &s, &obf);
        // α/(k−1) = 0.025: the MDE-sized test is larger than half the horizon.
        assert_eq!(
            fixed.wanted_per_arm,
            abtest::sample_size_per_arm(0.0348, 0.10, 0.025, 0.8)
        );
        assert!(fixed.capped);
        assert_eq!(fixed.looks, vec![50_000]);
        assert!(fixed.power.is_some_and(|p| p < 0.8));
        let seq = Plan::new(Design::Sequential, 3, 3_000_000, 0.0348, 0.10, &s, &obf);
        assert_eq!(seq.looks.len(), 5);
        assert!(!seq.capped);
        assert!(seq.power.is_some_and(|p| (p - 0.8).abs() < 0.01));
        let tr = Plan::new(Design::TestAndRoll, 3, 300_000, 0.0348, 0.10, &s, &obf);
        assert_eq!(tr.prior, (0.0348, 0.0348 / 4.0));
        assert!(tr.looks[0] < 20_000, "{:?}", tr.looks);
    }
}
