//! `Reward`: join an outcome to its decision and learn it, exactly once.

use super::choose::{is_named, slate_at};
use super::decisions::DecisionStatus;
use super::state::{CampaignCell, CampaignState};
use super::{Engine, RewardOutcome};
use crate::error::{invalid, Error, Result};
use crate::journal::format::{Counted, Counters};
use crate::journal::{Change, OutcomeEntry, Position, Resolution};

/// Changes one resolution may append: the outcome, an arm's budget counts
/// and a segment's uplift.
pub(super) const RESOLVE_CHANGES: usize = 3;

impl Engine {
    /// Learns the reward of a decision (of its first slot, for a slate).
    pub fn reward(&self, decision_id: &str, value: f64) -> Result<RewardOutcome> {
        self.reward_slot(decision_id, 0, value)
    }

    /// Learns the reward of slot `slot` of a decision (0 for a single arm).
    /// Each slot of a slate is its own pending decision of its arm.
    pub fn reward_slot(&self, decision_id: &str, slot: usize, value: f64) -> Result<RewardOutcome> {
        if decision_id.is_empty() {
            return Err(invalid("decision_id must not be empty"));
        }
        if !value.is_finite() {
            return Err(invalid(format!("reward value must be finite, got {value}")));
        }
        let not_found = || Error::NotFound(format!("decision {decision_id:?}"));
        let at = self.locate(decision_id).ok_or_else(not_found)?;
        let now = self.clock.now_ms();
        let mut st = at.campaign.state.lock();
        if st.dead {
            return Err(not_found());
        }
        let (lo, hi) = st.spec.policy.reward_range();
        if !(lo..=hi).contains(&value) {
            return Err(invalid(format!(
                "reward value must be in [{lo}, {hi}] for campaign {:?}, got {value}",
                st.spec.id
            )));
        }
        // Re-read under the campaign lock: the decision may have been
        // resolved or forgotten since the lookup above.
        if st
            .log
            .get(at.at)
            .filter(|d| is_named(d, decision_id) && d.slot() == 0)
            .is_none()
        {
            return Err(not_found());
        }
        let slots = slate_at(&st.log, at.at).len();
        if slot >= slots {
            return Err(invalid(format!(
                "decision {decision_id:?} has no slot {slot}: its slate has {slots} slot{}",
                if slots == 1 { "" } else { "s" }
            )));
        }
        let target = (at.at.0, at.at.1 + slot as u64);
        let Some(d) = st.log.get(target) else {
            return Err(not_found());
        };
        let expired = || {
            Error::FailedPrecondition(format!(
                "decision {decision_id:?} expired before its reward arrived"
            ))
        };
        match d.status {
            DecisionStatus::Rewarded => return Ok(RewardOutcome::Duplicate),
            DecisionStatus::Expired => return Err(expired()),
            DecisionStatus::Pending => {}
        }
        let overdue = now > d.deadline_ms(st.timeout_ms());
        self.admit(RESOLVE_CHANGES)?;
        if overdue {
            // Expired but not yet swept: resolve it now, exactly once.
            let default = st.spec.default_reward;
            self.resolve(
                &at.campaign,
                &mut st,
                target,
                default,
                Resolution::Expired,
                now,
            );
            return Err(expired());
        }
        self.resolve(
            &at.campaign,
            &mut st,
            target,
            value,
            Resolution::Rewarded,
            now,
        );
        Ok(RewardOutcome::Learned)
    }

    /// Learns one outcome of the pending decision at `at` and appends it to
    /// the journal: the decision's new status, the arm's new counts in its
    /// segment and (contextual campaigns) its ridge update, in one change.
    /// The caller has admitted [`RESOLVE_CHANGES`] changes.
    pub(super) fn resolve(
        &self,
        cell: &CampaignCell,
        st: &mut CampaignState,
        at: Position,
        reward: f64,
        resolution: Resolution,
        now: u64,
    ) {
        let status = match resolution {
            Resolution::Rewarded => DecisionStatus::Rewarded,
            Resolution::Expired => DecisionStatus::Expired,
        };
        let Some(d) = st.log.resolve(at, status) else {
            debug_assert!(false, "resolve() of a decision that is not pending");
            return;
        };
        let (segment, arm, created_ms, holdout) = (d.segment, d.arm, d.created_ms, d.holdout());
        let context = d.context().cloned();
        let rewarded = resolution == Resolution::Rewarded;
        // A holdout decision's outcome is not learned (no row changes).
        let row = (!holdout)
            .then(|| st.learn(segment, usize::from(arm), reward, created_ms, now, rewarded));
        if let (Some(x), false) = (&context, holdout) {
            st.resolve_linear(usize::from(arm), x, created_ms, reward);
        }
        let budget = st.count_outcome(usize::from(arm), rewarded && reward > 0.0, now);
        let uplift = st.count_uplift(segment, holdout, reward, created_ms);
        if let Some(counts) = budget {
            self.append(|| Change::Counters {
                uid: cell.uid,
                of: Counted::Budget {
                    arm: u32::from(arm),
                },
                counters: Counters::Budget(counts),
            });
        }
        if let Some(row) = uplift {
            self.append(|| Change::Counters {
                uid: cell.uid,
                of: Counted::Uplift { segment },
                counters: Counters::Uplift(row),
            });
        }
        self.append(|| Change::Outcome {
            uid: cell.uid,
            outcome: OutcomeEntry {
                decision: at,
                resolution,
                reward,
                at_ms: now,
            },
            segment,
            arm,
            row,
            created_ms,
            context,
        });
    }
}
