//! `Choose`: validate, pick an arm (or a slate of them), remember the
//! pending decision (one per slot).

use super::decisions::{Decision, DecisionLog, DecisionStatus, Extra, Placement};
use super::ids::{own_id, Locator};
use super::state::CampaignCell;
use super::{Choice, ChooseRequest, Engine, SlotChoice};
use crate::campaign::{limits, validate_id, validate_segment, PolicySpec};
use crate::error::{invalid, Error, Result};
use crate::journal::format::{Counted, Counters};
use crate::journal::{format, Change, DecisionEntry, Position};
use crate::policy::slate;
use std::sync::Arc;

impl Engine {
    /// Picks an arm, records the pending decision, and returns it.
    pub fn choose(&self, req: &ChooseRequest) -> Result<Choice> {
        if req.campaign_id.is_empty() {
            return Err(invalid("campaign_id must not be empty"));
        }
        validate_segment(&req.segment)?;
        if let Some(d) = &req.decision_id {
            validate_id("decision_id", d)?;
        }
        if req.context.len() > limits::MAX_CONTEXT_ENTRIES {
            return Err(invalid(format!(
                "context has more than {} entries",
                limits::MAX_CONTEXT_ENTRIES
            )));
        }
        if let Some((name, v)) = req.context.iter().find(|(_, v)| !v.is_finite()) {
            return Err(invalid(format!(
                "context feature {name:?} is not finite: {v}"
            )));
        }
        let count = req.count.max(1);
        if count > slate::MAX_SLOTS {
            return Err(invalid(format!(
                "count {count} is more than {} slots (the most a slate may have)",
                slate::MAX_SLOTS
            )));
        }
        let cell = self.campaign(&req.campaign_id)?;
        if let Some(id) = &req.decision_id {
            if let Some(found) = self.locate(id) {
                if let Some(choice) = self.replay(&cell, req, id, &found)? {
                    return Ok(choice);
                }
            }
            if format::parse_decision_id(id).is_some() {
                // Reserved: it would collide with an id this server hands out.
                return Err(invalid(format!(
                    "decision_id {id:?} has the form of a server-generated id but names no known decision; choose another"
                )));
            }
        }
        let now = self.clock.now_ms();
        // A segment, and per slot the decision and its arm's budget counts.
        let mut st = self.lock_for_change(&cell, 1 + 2 * count)?;
        if st.log.pending() + count > self.max_pending {
            return Err(Error::ResourceExhausted(format!(
                "campaign {:?} has {} pending decisions, the limit",
                req.campaign_id, self.max_pending
            )));
        }
        let x = context_vector(&st.spec.policy, &req.campaign_id, &req.context)?;
        let active = st.spec.active_arms().count();
        if count > active {
            return Err(invalid(format!(
                "count {count} is more than the {active} active arms of campaign {:?} (a slate shows each arm at most once)",
                req.campaign_id
            )));
        }
        let showable = st.showable_arms(now);
        if showable == 0 {
            return Err(Error::ResourceExhausted(format!(
                "every active arm of campaign {:?} has reached a cap (max_impressions or max_conversions in its cap period); none can be shown now",
                req.campaign_id
            )));
        }
        if count > showable {
            return Err(Error::ResourceExhausted(format!(
                "campaign {:?} may show only {showable} arms now (the others have reached a cap), fewer than count {count}",
                req.campaign_id
            )));
        }
        let Some((segment, new_segment)) = st.intern_segment(&req.segment, limits::MAX_SEGMENTS)
        else {
            return Err(Error::ResourceExhausted(format!(
                "campaign {:?} has {} segments, the limit",
                req.campaign_id,
                limits::MAX_SEGMENTS
            )));
        };
        if new_segment {
            let name = st.segments[segment as usize].name.clone();
            self.append(|| Change::Segment {
                uid: cell.uid,
                segment,
                name,
            });
        }
        let picks = st.choose_slate(segment, x.as_deref(), now, count);
        self.note_wanted_vectors(&cell, &mut st);
        let created_ms = now.max(st.log.last_created());
        let first = (self.run, st.log.next_slot(self.run));
        let caller_id: Option<Arc<str>> = req.decision_id.as_deref().map(Arc::from);
        if let Some(id) = &caller_id {
            let mut shard = self.foreign.shard(id).lock();
            if let Some(existing) = shard.get(id).cloned() {
                // A concurrent retry with the same id won the race.
                drop(shard);
                drop(st);
                return self
                    .replay(&cell, req, id, &existing)?
                    .ok_or_else(|| Error::NotFound(format!("decision {id:?}")));
            }
            shard.insert(
                id.clone(),
                Locator {
                    campaign: cell.clone(),
                    at: first,
                },
            );
        }
        let context: Option<Arc<[f64]>> = x.map(Arc::from);
        let mut slate = Vec::with_capacity(picks.len());
        let holdout = picks.first().is_some_and(|p| p.holdout);
        for (slot, pick) in picks.into_iter().enumerate() {
            // The slots of a slate are consecutive positions, slot 0 first;
            // only the first carries the caller's id.
            let at = (self.run, st.log.next_slot(self.run));
            let caller_id = caller_id.clone().filter(|_| slot == 0);
            self.append(|| Change::Decision {
                uid: cell.uid,
                at,
                entry: DecisionEntry {
                    created_ms,
                    propensity: pick.propensity,
                    segment,
                    arm: pick.arm as u16,
                    caller_id: caller_id.clone(),
                    context: context.clone(),
                    probs: pick.probs.clone(),
                    holdout: pick.holdout,
                    slot: slot as u8,
                },
            });
            if let Some(counts) = st.count_impression(pick.arm, now) {
                self.append(|| Change::Counters {
                    uid: cell.uid,
                    of: Counted::Budget {
                        arm: pick.arm as u32,
                    },
                    counters: Counters::Budget(counts),
                });
            }
            let extra = (caller_id.is_some() || context.is_some()).then(|| {
                Box::new(Extra {
                    caller_id,
                    context: context.clone(),
                })
            });
            st.log.push(
                at.0,
                Decision {
                    created_ms,
                    propensity: pick.propensity,
                    segment,
                    arm: pick.arm as u16,
                    status: DecisionStatus::Pending,
                    placement: Placement::new(slot, pick.holdout),
                    extra,
                },
            );
            st.note_uplift_pending(segment, pick.holdout, created_ms);
            // A holdout decision is never learned, so it is no evidence either.
            if !pick.holdout {
                st.add_pending(segment, pick.arm, created_ms);
                if let Some(x) = &context {
                    st.add_pending_linear(pick.arm, x, created_ms);
                }
            }
            slate.push(SlotChoice {
                arm: pick.arm,
                arm_id: st.spec.arms[pick.arm].id.clone(),
                propensity: pick.propensity,
            });
        }
        Ok(Choice {
            decision_id: caller_id.unwrap_or_else(|| own_id(cell.uid, first)),
            arm: slate[0].arm,
            arm_id: slate[0].arm_id.clone(),
            propensity: slate[0].propensity,
            holdout,
            slate,
        })
    }

    /// Where a decision id points, if anywhere (its entry may since have
    /// been forgotten: check the decision under the campaign's lock).
    pub(super) fn locate(&self, id: &str) -> Option<Locator> {
        if let Some((uid, at)) = format::parse_decision_id(id) {
            if let Some(cell) = self.campaigns.read().by_uid.get(&uid) {
                return Some(Locator {
                    campaign: cell.clone(),
                    at,
                });
            }
        }
        self.foreign.get(id)
    }

    /// The stored answer to a retried `Choose`; `None` if the decision was
    /// forgotten in the meantime.
    fn replay(
        &self,
        cell: &Arc<CampaignCell>,
        req: &ChooseRequest,
        id: &str,
        at: &Locator,
    ) -> Result<Option<Choice>> {
        let st = at.campaign.state.lock();
        let Some(d) = st
            .log
            .get(at.at)
            .filter(|d| is_named(d, id) && d.slot() == 0)
        else {
            return Ok(None);
        };
        let same_segment = st
            .segments
            .get(d.segment as usize)
            .is_some_and(|s| *s.name == *req.segment);
        if !Arc::ptr_eq(&at.campaign, cell) || !same_segment {
            return Err(invalid(format!(
                "decision_id {id:?} was already used for a different campaign or segment"
            )));
        }
        let slots = slate_at(&st.log, at.at);
        if slots.len() != req.count.max(1) {
            return Err(invalid(format!(
                "decision_id {id:?} was already used for a slate of {} slots, not {}",
                slots.len(),
                req.count.max(1)
            )));
        }
        let slate: Vec<SlotChoice> = slots
            .iter()
            .map(|d| SlotChoice {
                arm: usize::from(d.arm),
                arm_id: st.spec.arms[usize::from(d.arm)].id.clone(),
                propensity: d.propensity,
            })
            .collect();
        Ok(Some(Choice {
            decision_id: id.into(),
            arm: slate[0].arm,
            arm_id: slate[0].arm_id.clone(),
            propensity: slate[0].propensity,
            holdout: d.holdout(),
            slate,
        }))
    }
}

/// The slots of the slate whose first slot is at `first`, in order.
pub(super) fn slate_at(log: &DecisionLog, first: Position) -> Vec<&Decision> {
    let mut out: Vec<&Decision> = Vec::new();
    while let Some(d) = log.get((first.0, first.1 + out.len() as u64)) {
        if d.slot() != out.len() {
            break;
        }
        out.push(d);
        if out.len() >= slate::MAX_SLOTS {
            break;
        }
    }
    out
}

/// Whether `id` is this decision's id: its caller-chosen one, or (for a
/// server-generated decision) the id derived from its position.
pub(super) fn is_named(d: &Decision, id: &str) -> bool {
    match d.caller_id() {
        Some(c) => **c == *id,
        None => format::parse_decision_id(id).is_some(),
    }
}

/// The context vector of a request for a campaign with `policy`: the
/// intercept (1) followed by the campaign's features in their order. `None`
/// for non-contextual campaigns, which accept no features at all.
fn context_vector(
    policy: &PolicySpec,
    campaign: &str,
    context: &[(String, f64)],
) -> Result<Option<Vec<f64>>> {
    let features = policy.features();
    if features.is_empty() {
        if let Some((name, _)) = context.first() {
            return Err(invalid(format!(
                "context feature {name:?} is unknown: campaign {campaign:?} uses no context features"
            )));
        }
        return Ok(None);
    }
    let mut x = vec![f64::NAN; features.len() + 1];
    x[0] = 1.0;
    for (name, v) in context {
        if !v.is_finite() {
            return Err(invalid(format!(
                "context feature {name:?} is not finite: {v}"
            )));
        }
        if v.abs() > limits::MAX_CONTEXT_VALUE {
            return Err(invalid(format!(
                "context feature {name:?} is {v}, outside [-{m}, {m}] (scale features before sending them)",
                m = limits::MAX_CONTEXT_VALUE
            )));
        }
        let i = features.iter().position(|f| f == name).ok_or_else(|| {
            invalid(format!(
                "context feature {name:?} is unknown to campaign {campaign:?}"
            ))
        })?;
        x[i + 1] = *v;
    }
    let missing_zero = matches!(
        policy,
        PolicySpec::LinUcb {
            missing_zero: true,
            ..
        }
    );
    for (i, f) in features.iter().enumerate() {
        if x[i + 1].is_nan() {
            if !missing_zero {
                return Err(invalid(format!(
                    "context feature {f:?} is missing (campaign {campaign:?} does not treat missing features as 0)"
                )));
            }
            x[i + 1] = 0.0;
        }
    }
    Ok(Some(x))
}
