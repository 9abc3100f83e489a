//! Timeouts and forgetting: the expiry sweep learns the default reward of
//! every decision whose deadline has passed, exactly once, and forgets
//! resolved decisions after their retention.

use super::decisions::DecisionStatus;
use super::state::CampaignCell;
use super::{Engine, EXPIRY_BATCH};
use crate::error::Result;
use crate::journal::{Change, Resolution};
use std::sync::Arc;

impl Engine {
    /// Learns the default reward of every decision whose deadline has passed
    /// and forgets resolved decisions past their retention. Returns how many
    /// decisions expired.
    pub fn expire_due(&self) -> Result<usize> {
        let now = self.clock.now_ms();
        let cells: Vec<Arc<CampaignCell>> = self.campaigns.read().by_id.values().cloned().collect();
        let mut expired = 0;
        for cell in cells {
            // Bounded work per lock hold, so a burst of expiries never
            // stalls the campaign's decisions for long.
            loop {
                let (n, more) = self.expire_some(&cell, now)?;
                expired += n;
                if !more {
                    break;
                }
            }
        }
        Ok(expired)
    }

    /// Expires and forgets up to [`EXPIRY_BATCH`] decisions of one campaign.
    /// Returns how many expired and whether work is left.
    pub(super) fn expire_some(&self, cell: &CampaignCell, now: u64) -> Result<(usize, bool)> {
        let mut st = cell.state.lock();
        if st.dead {
            return Ok((0, false));
        }
        let timeout_ms = st.timeout_ms();
        let retention_ms = self.retention_ms.unwrap_or(timeout_ms);
        let (mut expired, mut budget) = (0, EXPIRY_BATCH);
        while budget > 0 {
            let Some(at) = st.log.next_overdue(now, timeout_ms) else {
                break;
            };
            budget -= 1;
            if st
                .log
                .get(at)
                .is_some_and(|d| d.status == DecisionStatus::Pending)
            {
                self.admit(super::reward::RESOLVE_CHANGES)?;
                let default = st.spec.default_reward;
                self.resolve(cell, &mut st, at, default, Resolution::Expired, now);
                expired += 1;
            }
            st.log.mark_swept(at);
        }
        let mut forgot = false;
        let mut freed = Vec::new();
        let before = now.saturating_sub(retention_ms);
        while budget > 0 {
            let Some(at) = st.log.forgettable(before, timeout_ms) else {
                break;
            };
            if !forgot {
                self.admit(1)?;
            }
            budget -= 1;
            if let Some(id) = st.log.pop_front().and_then(|d| d.caller_id().cloned()) {
                freed.push((id, at));
            }
            forgot = true;
        }
        if forgot {
            let below = st.log.front_position();
            self.append(|| Change::Forgotten {
                uid: cell.uid,
                below,
            });
        }
        // Only now may a caller reuse the ids: a decision made with one is
        // appended after the record that retires its previous owner.
        for (id, at) in freed {
            self.foreign.remove_if_at(&id, cell.uid, at);
        }
        Ok((expired, budget == 0))
    }
}
