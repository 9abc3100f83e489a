//! Start-up: the engine's state rebuilt from what the journal recovered.
//!
//! Statistics are loaded as stored (each outcome is in its row exactly
//! once, since an outcome and its row were one atomic batch); pending
//! counts are rebuilt from the pending decisions; caller-chosen ids go back
//! into the foreign index. Nothing is written here: the journal has
//! already made the new run durable.

use super::decisions::{Decision, DecisionStatus, Extra, Placement};
use super::ids::Locator;
use super::Engine;
use crate::journal::{Recovered, Resolution};
use crate::policy::linucb::LinearArm;

impl Engine {
    pub(super) fn restore(&mut self, recovered: Recovered) {
        let mut campaigns = self.campaigns.write();
        campaigns.next_uid = campaigns.next_uid.max(recovered.next_uid);
        let mut decisions = 0;
        for mut c in recovered.campaigns {
            let uid = c.uid;
            let cell = self.new_cell(c.spec.clone(), uid);
            {
                let mut st = cell.state.lock();
                for (no, name) in std::mem::take(&mut c.segments) {
                    // Segment numbers are dense; fill a gap (damage) with a
                    // name no request can use.
                    while (st.segments.len() as u32) < no {
                        let hole = format!("\u{1}missing-{}", st.segments.len());
                        st.add_segment(hole.into());
                    }
                    if st.segments.len() as u32 == no {
                        st.add_segment(name);
                    }
                }
                let arms = st.spec.arms.len();
                if let Some(bins) = c.delay.take() {
                    st.learning.delay =
                        crate::policy::delay::DelayModel::from_bins(st.timeout_ms(), bins);
                }
                for (segment, arm, row) in std::mem::take(&mut c.rows) {
                    if (segment as usize) < st.segments.len() && (arm as usize) < arms {
                        st.segment_mut(segment);
                        let state = &mut *st;
                        let tally = &mut state.segments[segment as usize].arms[arm as usize];
                        state.learning.load_row(tally, &row);
                    }
                }
                for (arm, stats) in std::mem::take(&mut c.linear) {
                    let fits = st
                        .linear
                        .get(arm as usize)
                        .is_some_and(|l| l.dim() == stats.b.len());
                    let parts = LinearArm::from_parts(
                        stats.a,
                        stats.b,
                        stats.pulls,
                        stats.reward_sum,
                        stats.reward_sq_sum,
                    );
                    match parts {
                        Ok(l) if fits => st.linear[arm as usize] = l,
                        _ => tracing::error!(
                            uid,
                            arm,
                            "unusable ridge statistics; the arm starts afresh"
                        ),
                    }
                }
                for (of, counters) in std::mem::take(&mut c.counters) {
                    st.load_counters(of, counters);
                }
                for d in c.drain_decisions() {
                    let (segment, arm) = (d.entry.segment, d.entry.arm);
                    if segment as usize >= st.segments.len() || usize::from(arm) >= arms {
                        tracing::error!(
                            uid,
                            run = d.at.0,
                            slot = d.at.1,
                            "a decision names an unknown segment or arm; kept as resolved, so its id answers nothing"
                        );
                        // A placeholder keeps the positions after it in place.
                        let hole = st
                            .intern_segment("\u{1}damaged", usize::MAX)
                            .map_or(0, |(n, _)| n);
                        let created_ms = d.entry.created_ms.max(st.log.last_created());
                        st.log.push_at(
                            d.at,
                            Decision {
                                created_ms,
                                propensity: 1.0,
                                segment: hole,
                                arm: 0,
                                status: DecisionStatus::Expired,
                                placement: Placement::new(usize::from(d.entry.slot), false),
                                extra: None,
                            },
                        );
                        continue;
                    }
                    let status = match d.outcome.map(|o| o.resolution) {
                        None => DecisionStatus::Pending,
                        Some(Resolution::Rewarded) => DecisionStatus::Rewarded,
                        Some(Resolution::Expired) => DecisionStatus::Expired,
                    };
                    let caller_id = d.entry.caller_id.clone();
                    let extra = (caller_id.is_some() || d.entry.context.is_some()).then(|| {
                        Box::new(Extra {
                            caller_id: caller_id.clone(),
                            context: d.entry.context.clone(),
                        })
                    });
                    let pushed = st.log.push_at(
                        d.at,
                        Decision {
                            created_ms: d.entry.created_ms,
                            propensity: d.entry.propensity,
                            segment,
                            arm,
                            status,
                            placement: Placement::new(usize::from(d.entry.slot), d.entry.holdout),
                            extra,
                        },
                    );
                    if !pushed {
                        tracing::error!(
                            uid,
                            run = d.at.0,
                            slot = d.at.1,
                            "a decision out of order; skipped"
                        );
                        continue;
                    }
                    decisions += 1;
                    if status == DecisionStatus::Pending {
                        st.note_pending(usize::from(arm));
                        st.note_uplift_pending(segment, d.entry.holdout, d.entry.created_ms);
                        if !d.entry.holdout {
                            st.add_pending(segment, usize::from(arm), d.entry.created_ms);
                            if let Some(x) = &d.entry.context {
                                st.add_pending_linear(usize::from(arm), x, d.entry.created_ms);
                            }
                        }
                    }
                    if let Some(id) = caller_id {
                        self.foreign.insert(
                            id,
                            Locator {
                                campaign: cell.clone(),
                                at: d.at,
                            },
                        );
                    }
                }
                if c.dangling_outcomes() > 0 {
                    tracing::warn!(
                        uid,
                        outcomes = c.dangling_outcomes(),
                        "outcomes of unknown decisions ignored"
                    );
                }
                st.rebuild_aggregate(self.clock.now_ms());
            }
            campaigns.insert(cell);
        }
        tracing::info!(
            campaigns = campaigns.by_id.len(),
            decisions,
            run = self.run,
            "state loaded"
        );
        drop(campaigns);
    }
}
