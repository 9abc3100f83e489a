//! Caps and holdouts: the marketer's rules around the policy.
//!
//! - **Caps.** An arm may have at most `max_impressions` decisions and
//!   `max_conversions` conversions (rewards above 0) in its cap period (the
//!   campaign's life, or each UTC day). Counting happens under the
//!   campaign's lock, with the decision or outcome it follows from, so
//!   concurrent calls can never overshoot; the counts are journalled with
//!   them, so a restart resumes them exactly. A conversion cap reserves one
//!   conversion per pending decision of the arm (each might still convert):
//!   the arm pauses while its pending decisions could fill the cap, and
//!   resumes as they expire. A daily impression cap is paced: by a share s
//!   of the UTC day the arm may have had `ceil(s · max)` impressions, so the
//!   budget is spread over the day instead of spent in the morning.
//! - **Holdout.** A share of decisions is chosen uniformly among the arms
//!   that may be shown, flagged, and never learned from; each segment keeps
//!   the moments of the policy's and the holdout's rewards for the uplift.

use super::state::CampaignState;
use crate::campaign::{Budget, CapPeriod};
use crate::journal::format::{BudgetRow, Counted, Counters, UpliftRow};
use crate::policy::exposure::PendingBuckets;

pub const DAY_MS: u64 = 86_400_000;

/// A campaign's counts against its arms' caps, and its uplift moments.
#[derive(Debug, Default)]
pub struct Budgets {
    /// Whether any arm has a cap (otherwise nothing here is kept up to date
    /// but `uplift`).
    pub any: bool,
    /// Per arm: the counts in its current period.
    pub counts: Vec<BudgetRow>,
    /// Per arm: pending decisions (holdout ones included).
    pub pending: Vec<u64>,
    /// Per arm: held back by a cap at the last check.
    pub blocked: Vec<bool>,
    /// Per segment number: the policy's and the holdout's resolved rewards.
    pub uplift: Vec<UpliftRow>,
    /// Per segment number: the policy's and the holdout's pending
    /// decisions by creation bucket (campaigns with a holdout; rebuilt from
    /// the pending decisions at start-up, never persisted).
    pub uplift_pending: Vec<[PendingBuckets; 2]>,
}

/// Impressions a daily cap of `max` allows by `now_ms`: `ceil(max · s)`
/// where s is the share of the UTC day elapsed after this millisecond.
pub fn paced_allowance(max: u64, now_ms: u64) -> u64 {
    let elapsed = u128::from(now_ms % DAY_MS) + 1;
    let d = u128::from(DAY_MS);
    ((u128::from(max) * elapsed).div_ceil(d)).min(u128::from(max)) as u64
}

/// Moves `row` to the period containing `now_ms` (a new day starts at 0).
fn roll(row: &mut BudgetRow, budget: &Budget, now_ms: u64) -> bool {
    if budget.period == CapPeriod::Day && row.day != now_ms / DAY_MS {
        *row = BudgetRow {
            impressions: 0,
            conversions: 0,
            day: now_ms / DAY_MS,
        };
        return true;
    }
    false
}

/// Whether an arm with `budget`, `row` and `pending` is held back at `now_ms`.
pub fn is_capped(budget: &Budget, row: &BudgetRow, pending: u64, now_ms: u64) -> bool {
    let impressions = budget.max_impressions > 0 && {
        let allowed = match budget.period {
            CapPeriod::Lifetime => budget.max_impressions,
            CapPeriod::Day => paced_allowance(budget.max_impressions, now_ms),
        };
        row.impressions >= allowed
    };
    let conversions = budget.max_conversions > 0
        && row.conversions.saturating_add(pending) >= budget.max_conversions;
    impressions || conversions
}

impl CampaignState {
    /// Re-reads which arms carry caps (creation, arms added, start-up).
    pub fn budgets_changed(&mut self) {
        let arms = self.spec.arms.len();
        let b = &mut self.budgets;
        b.any = self.spec.arms.iter().any(|a| !a.budget.is_none());
        b.counts.resize(arms, BudgetRow::default());
        b.pending.resize(arms, 0);
        b.blocked.resize(arms, false);
    }

    /// Brings every capped arm to `now_ms`'s period and recomputes which
    /// are held back; a change invalidates the cached probability vectors
    /// (the arms that may be chosen changed).
    pub fn check_caps(&mut self, now_ms: u64) {
        if !self.budgets.any {
            return;
        }
        let mut changed = false;
        for (a, arm) in self.spec.arms.iter().enumerate() {
            if arm.budget.is_none() {
                continue;
            }
            let b = &mut self.budgets;
            roll(&mut b.counts[a], &arm.budget, now_ms);
            let capped = is_capped(&arm.budget, &b.counts[a], b.pending[a], now_ms);
            if capped != b.blocked[a] {
                b.blocked[a] = capped;
                changed = true;
            }
        }
        if changed {
            self.arms_version = self.arms_version.wrapping_add(1);
        }
    }

    /// Whether arm `a` is held back by a cap (as of the last [`Self::check_caps`]).
    pub fn is_blocked(&self, a: usize) -> bool {
        self.budgets.blocked.get(a).copied().unwrap_or(false)
    }

    /// Start-up: a recovered counters row.
    pub fn load_counters(&mut self, of: Counted, counters: Counters) {
        match (of, counters) {
            (Counted::Budget { arm }, Counters::Budget(row)) => {
                if let Some(c) = self.budgets.counts.get_mut(arm as usize) {
                    *c = row;
                }
            }
            (Counted::Uplift { segment }, Counters::Uplift(row)) => {
                let u = &mut self.budgets.uplift;
                let i = segment as usize;
                if i < crate::campaign::limits::MAX_SEGMENTS {
                    if u.len() <= i {
                        u.resize(i + 1, UpliftRow::default());
                    }
                    u[i] = row;
                }
            }
            _ => tracing::error!("a counters row of the wrong kind; ignored"),
        }
    }

    /// Start-up: a recovered pending decision of `arm` (it may still convert).
    pub fn note_pending(&mut self, arm: usize) {
        if let Some(p) = self.budgets.pending.get_mut(arm) {
            *p += 1;
        }
    }

    /// Counts a decision for `arm`; its budget row when the arm has caps.
    pub fn count_impression(&mut self, arm: usize, now_ms: u64) -> Option<BudgetRow> {
        if !self.budgets.any {
            return None;
        }
        let budget = self.spec.arms.get(arm)?.budget;
        let b = &mut self.budgets;
        b.pending[arm] += 1;
        if budget.is_none() {
            return None;
        }
        roll(&mut b.counts[arm], &budget, now_ms);
        b.counts[arm].impressions += 1;
        Some(b.counts[arm])
    }

    /// Counts the outcome of a pending decision of `arm` (`converted`: a
    /// reward above 0 arrived); its budget row when it changed.
    pub fn count_outcome(&mut self, arm: usize, converted: bool, now_ms: u64) -> Option<BudgetRow> {
        if !self.budgets.any {
            return None;
        }
        let budget = self.spec.arms.get(arm)?.budget;
        let b = &mut self.budgets;
        b.pending[arm] = b.pending[arm].saturating_sub(1);
        if budget.is_none() || !converted {
            return None;
        }
        roll(&mut b.counts[arm], &budget, now_ms);
        b.counts[arm].conversions += 1;
        Some(b.counts[arm])
    }

    /// Counts a pending decision of segment `segment` created at
    /// `created_ms` on its side of the holdout (campaigns with a holdout),
    /// until [`Self::count_uplift`] resolves it.
    pub fn note_uplift_pending(&mut self, segment: u32, holdout: bool, created_ms: u64) {
        if self.spec.holdout_fraction <= 0.0 && !holdout {
            return;
        }
        let bucket = self.learning.bucket(created_ms);
        let p = &mut self.budgets.uplift_pending;
        let i = segment as usize;
        if p.len() <= i {
            p.resize(i + 1, Default::default());
        }
        p[i][usize::from(holdout)].add(bucket);
    }

    /// Adds a resolved reward of a decision created at `created_ms` to
    /// segment `segment`'s uplift moments (policy or holdout); the new row,
    /// for campaigns with a holdout.
    pub fn count_uplift(
        &mut self,
        segment: u32,
        holdout: bool,
        reward: f64,
        created_ms: u64,
    ) -> Option<UpliftRow> {
        if self.spec.holdout_fraction <= 0.0 && !holdout {
            return None;
        }
        let bucket = self.learning.bucket(created_ms);
        if let Some(p) = self.budgets.uplift_pending.get_mut(segment as usize) {
            let side = &mut p[usize::from(holdout)];
            if side.count() > 0 {
                side.remove(bucket);
            }
        }
        let u = &mut self.budgets.uplift;
        if u.len() <= segment as usize {
            u.resize(segment as usize + 1, UpliftRow::default());
        }
        let row = &mut u[segment as usize];
        if holdout {
            row.holdout.add(reward);
        } else {
            row.policy.add(reward);
        }
        Some(*row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The allowance grows evenly over the day: none is lost at midnight,
    // a quarter by 6:00, all of it by the last millisecond.
    #[test]
    fn a_daily_cap_is_paced_evenly_over_the_day() {
        let day = 20_000 * DAY_MS;
        assert_eq!(paced_allowance(1000, day), 1);
        assert_eq!(paced_allowance(1000, day + DAY_MS / 4 - 1), 250);
        assert_eq!(paced_allowance(1000, day + DAY_MS / 2), 501);
        assert_eq!(paced_allowance(1000, day + DAY_MS - 1), 1000);
        assert_eq!(paced_allowance(1000, day + DAY_MS), 1);
        assert_eq!(paced_allowance(u64::MAX, day + DAY_MS - 1), u64::MAX);
        let b = Budget {
            max_impressions: 0,
            max_conversions: 5,
            period: CapPeriod::Lifetime,
        };
        let row = BudgetRow {
            impressions: 100,
            conversions: 3,
            day: 0,
        };
        // Three conversions and two pending that might convert fill a cap of 5.
        assert!(!is_capped(&b, &row, 1, day));
        assert!(is_capped(&b, &row, 2, day));
    }
}
