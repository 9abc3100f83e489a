//! Exports of the decision log: the journal's records with the names a
//! reader needs (segment, arm and feature names, decision ids).

use super::ids::own_id;
use super::Engine;
use crate::error::{invalid, Error, Result};
use crate::journal::format::Resolution;
use crate::journal::log::ExportedDecision;
use std::sync::Arc;

/// How a logged decision ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExportOutcome {
    /// Its reward arrived at `at_ms`.
    Rewarded { value: f64, at_ms: u64 },
    /// Its timeout passed and the default reward was learned at `at_ms`.
    Default { value: f64, at_ms: u64 },
    /// Not resolved (yet) as far as the log knows.
    Pending,
}

/// One decision of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    /// The server-generated id of the decision's position (never a
    /// caller-chosen id, which could name a customer); for a slate, of its
    /// first slot's.
    pub decision_id: Arc<str>,
    pub created_ms: u64,
    pub segment: Arc<str>,
    pub arm_index: usize,
    pub arm_id: String,
    pub propensity: f64,
    /// P(chosen) per arm index, for the arms the campaign had then (empty
    /// where the decision has no vector: more than 256 arms, or a
    /// contextual pick that fell back to a uniform choice).
    pub probabilities: Vec<f64>,
    /// Feature name and value, in the campaign's feature order.
    pub context: Vec<(String, f64)>,
    pub outcome: ExportOutcome,
    /// A holdout decision (chosen uniformly, not learned from).
    pub holdout: bool,
    /// The slot of a slate (0: the first, or a single arm); every slot is
    /// its own record with the slate's id and a position-wise propensity.
    pub slot: u32,
}

/// What an export needs to know of its campaign.
#[derive(Debug, Clone)]
pub struct ExportHeader {
    pub campaign_id: String,
    /// Every arm id, by index.
    pub arms: Vec<String>,
    pub features: Vec<String>,
}

impl Engine {
    /// Campaign `campaign_id`'s logged decisions made in
    /// `since_ms..=until_ms` (`until_ms` `None`: up to now), in the order
    /// they were made, to `visit` (return `false` to stop). Pending ones are
    /// included only with `include_pending`.
    pub fn export_decisions(
        &self,
        campaign_id: &str,
        since_ms: u64,
        until_ms: Option<u64>,
        include_pending: bool,
        visit: &mut dyn FnMut(&ExportHeader, ExportRecord) -> bool,
    ) -> Result<()> {
        let cell = self.campaign(campaign_id)?;
        let Some(journal) = self.journal.as_ref().filter(|j| j.logs_decisions()) else {
            return Err(Error::FailedPrecondition(
                "this daemon keeps no decision log (--decision-log-retention-hours is 0)".into(),
            ));
        };
        let until_ms = until_ms.unwrap_or_else(|| self.clock.now_ms());
        if until_ms < since_ms {
            return Err(invalid(format!(
                "the export's end ({until_ms}) is before its start ({since_ms})"
            )));
        }
        // What applied to the store so far, the last batch included.
        self.sync()?;
        let snapshot = |cell: &super::state::CampaignCell| {
            let st = cell.state.lock();
            let header = ExportHeader {
                campaign_id: campaign_id.to_string(),
                arms: st.spec.arms.iter().map(|a| a.id.clone()).collect(),
                features: st.spec.policy.features().to_vec(),
            };
            let segments: Vec<Arc<str>> = st.segments.iter().map(|s| s.name.clone()).collect();
            let horizon = u64::from(st.spec.reward_timeout_seconds) * 1000 + 600_000;
            (header, segments, horizon)
        };
        let (mut header, mut segments, horizon) = snapshot(&cell);
        let uid = cell.uid;
        let mut failure = None;
        journal.export(
            uid,
            since_ms,
            until_ms,
            horizon,
            &mut |e: ExportedDecision| {
                let d = e.decision;
                if d.segment as usize >= segments.len() || usize::from(d.arm) >= header.arms.len() {
                    // Made after the snapshot (a new segment or arm): take another.
                    (header, segments, _) = snapshot(&cell);
                }
                let (Some(segment), Some(arm_id)) = (
                    segments.get(d.segment as usize).cloned(),
                    header.arms.get(usize::from(d.arm)).cloned(),
                ) else {
                    failure = Some(format!(
                    "logged decision {:?} names segment {} or arm {} the campaign does not have",
                    d.at, d.segment, d.arm
                ));
                    return false;
                };
                let outcome = match e.outcome {
                    Some(o) if o.resolution == Resolution::Rewarded => ExportOutcome::Rewarded {
                        value: o.reward,
                        at_ms: o.at_ms,
                    },
                    Some(o) => ExportOutcome::Default {
                        value: o.reward,
                        at_ms: o.at_ms,
                    },
                    None if include_pending => ExportOutcome::Pending,
                    None => return true,
                };
                let record = ExportRecord {
                    decision_id: own_id(uid, (d.at.0, d.at.1.saturating_sub(u64::from(d.slot)))),
                    created_ms: d.created_ms,
                    segment,
                    arm_index: usize::from(d.arm),
                    arm_id,
                    propensity: d.propensity,
                    probabilities: d.probs.as_deref().map(<[f64]>::to_vec).unwrap_or_default(),
                    context: header
                        .features
                        .iter()
                        .cloned()
                        .zip(d.context.iter().copied())
                        .collect(),
                    outcome,
                    holdout: d.holdout,
                    slot: u32::from(d.slot),
                };
                visit(&header, record)
            },
        )?;
        match failure {
            Some(why) => Err(Error::Storage(crate::error::StoreError::Corrupt {
                key: format!("decision log of campaign {campaign_id:?}"),
                why,
            })),
            None => Ok(()),
        }
    }
}
