//! The offline invariant checker (`banditd check DIR`): opens a data
//! directory that no daemon is using and verifies what every crash must
//! leave intact.
//!
//! - every key belongs to a campaign that exists, in the current format;
//! - every decision names a known segment and arm;
//! - every block of the decision log decodes and belongs to a campaign, and
//!   every remembered decision the log should hold (one of a run it was on
//!   for, not older than what it keeps) is in it, with the same segment,
//!   arm and propensity;
//! - no decision has two outcomes, and no outcome names a decision that is
//!   not there (unless it was forgotten);
//! - while nothing of a campaign has been forgotten, each (segment, arm)
//!   row counts exactly its resolved decisions and their rewards, and each
//!   contextual arm's ridge statistics count exactly its outcomes; once
//!   something was forgotten, a row counts at least what is remembered.
//!
//! The report also lists every remembered decision by id, so a test can
//! check that each acknowledged decision and reward is present.

use super::format::{self, Position, Resolution};
use super::recover::{self, Assembled};
use crate::error::StoreError;
use crate::store::Store;
use crate::FastMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the checker found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub format_version: Option<u32>,
    pub decision_log: super::log::LogSummary,
    pub campaigns: Vec<CampaignSummary>,
    pub violations: Vec<String>,
    decisions: FastMap<String, DecisionFact>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CampaignSummary {
    pub uid: u64,
    pub id: String,
    pub decisions: usize,
    pub pending: usize,
    pub rewarded: usize,
    pub expired: usize,
    pub forgotten_below: Position,
}

/// One remembered decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionFact {
    pub campaign: String,
    pub segment: String,
    pub arm: String,
    pub propensity: f64,
    pub outcome: Option<(Resolution, f64)>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// The decision with this id (server-generated or caller-chosen).
    pub fn decision(&self, id: &str) -> Option<&DecisionFact> {
        self.decisions.get(id)
    }

    pub fn decision_count(&self) -> usize {
        self.decisions.len()
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "format {}, {} campaigns, {} remembered decisions",
            self.format_version
                .map_or("none".to_string(), |v| v.to_string()),
            self.campaigns.len(),
            self.decisions.len()
        )?;
        writeln!(
            f,
            "  {:<32} {:>10} {:>10} {:>10} {:>10}",
            "CAMPAIGN", "DECISIONS", "PENDING", "REWARDED", "EXPIRED"
        )?;
        for c in &self.campaigns {
            writeln!(
                f,
                "  {:<32} {:>10} {:>10} {:>10} {:>10}",
                c.id, c.decisions, c.pending, c.rewarded, c.expired
            )?;
        }
        let l = &self.decision_log;
        writeln!(
            f,
            "decision log: {} decisions and {} outcomes in {} blocks ({} bytes)",
            l.decisions, l.outcomes, l.blocks, l.bytes
        )?;
        if self.violations.is_empty() {
            writeln!(f, "all invariants hold")
        } else {
            writeln!(f, "{} violations:", self.violations.len())?;
            for v in &self.violations {
                writeln!(f, "  - {v}")?;
            }
            Ok(())
        }
    }
}

/// Checks a store of the current format (it does not migrate or write).
pub fn check(store: &dyn Store) -> Result<CheckReport, StoreError> {
    let raw = recover::read(store)?;
    let mut report = CheckReport {
        format_version: raw.version,
        ..CheckReport::default()
    };
    let empty = raw.campaigns.is_empty() && raw.meta.is_none() && raw.foreign_keys == 0;
    if !empty && raw.version != Some(format::FORMAT_VERSION) {
        report.violations.push(format!(
            "format version is {:?}, expected {}",
            raw.version,
            format::FORMAT_VERSION
        ));
    }
    if raw.foreign_keys > 0 {
        report
            .violations
            .push(format!("{} keys of another format", raw.foreign_keys));
    }
    let next_uid = raw.meta.map_or(0, |m| m.next_uid);
    let uids: std::collections::HashSet<u64> = raw.campaigns.keys().copied().collect();
    let (summary, log_index) =
        super::log::verify(store, &|uid| uids.contains(&uid), &mut report.violations)?;
    report.decision_log = summary;
    let mut caller_ids: FastMap<String, u64> = FastMap::default();
    for (uid, c) in raw.campaigns {
        let rows_raw = c.rows.clone();
        let Some(a) = recover::assemble(uid, c)? else {
            report.violations.push(format!(
                "keys of campaign uid {uid}, which has no campaign record"
            ));
            continue;
        };
        if uid >= next_uid {
            report.violations.push(format!(
                "campaign uid {uid} is not below the next uid {next_uid}"
            ));
        }
        check_campaign(
            a,
            &rows_raw,
            log_index.get(&uid),
            &mut report,
            &mut caller_ids,
        );
    }
    Ok(report)
}

fn check_campaign(
    mut a: Assembled,
    rows: &[(u32, u32, super::format::Row)],
    log: Option<&FastMap<u32, super::log::RunIndex>>,
    report: &mut CheckReport,
    caller_ids: &mut FastMap<String, u64>,
) {
    let c = &mut a.campaign;
    let name = c.spec.id.clone();
    let mut v = Vec::new();
    for at in &a.duplicate_outcomes {
        v.push(format!("{name}: decision {at:?} has more than one outcome"));
    }
    let segments: FastMap<u32, Arc<str>> =
        c.segments.iter().map(|(n, s)| (*n, s.clone())).collect();
    let (uid, watermark, spec, linear) = (c.uid, c.watermark, c.spec.clone(), c.linear.clone());
    let nothing_forgotten = watermark == (0, 0);
    let mut expected: BTreeMap<(u32, u32), (u64, f64)> = BTreeMap::new();
    let mut linear_expected: BTreeMap<u32, u64> = BTreeMap::new();
    let mut summary = CampaignSummary {
        uid,
        id: name.clone(),
        decisions: 0,
        pending: 0,
        rewarded: 0,
        expired: 0,
        forgotten_below: watermark,
    };
    let mut buf = [0u8; format::DECISION_ID_MAX];
    for d in c.drain_decisions() {
        summary.decisions += 1;
        // Written in the same batch as the state: a decision of a run the
        // log was on for, at or after the oldest slot it keeps, is there.
        if let Some(r) = log.and_then(|l| l.get(&d.at.0)) {
            if d.at.1 >= r.first_slot {
                let want = (d.entry.segment, d.entry.arm, d.entry.propensity.to_bits());
                match r.decisions.get(&d.at.1) {
                    None => v.push(format!(
                        "{name}: decision {:?} is not in the decision log",
                        d.at
                    )),
                    Some(got) if *got != want => v.push(format!(
                        "{name}: decision {:?} is logged as (segment, arm, propensity bits) {got:?}, the state says {want:?}",
                        d.at
                    )),
                    Some(_) => {}
                }
            }
        }
        let arm = usize::from(d.entry.arm);
        let Some(segment) = segments.get(&d.entry.segment) else {
            v.push(format!(
                "{name}: decision {:?} names unknown segment {}",
                d.at, d.entry.segment
            ));
            continue;
        };
        let Some(arm_spec) = spec.arms.get(arm) else {
            v.push(format!(
                "{name}: decision {:?} names unknown arm {arm}",
                d.at
            ));
            continue;
        };
        match &d.outcome {
            None => summary.pending += 1,
            Some(o) => {
                match o.resolution {
                    Resolution::Rewarded => summary.rewarded += 1,
                    Resolution::Expired => summary.expired += 1,
                }
                // A holdout decision is never learned: no row counts it.
                if !d.entry.holdout {
                    let e = expected
                        .entry((d.entry.segment, u32::from(d.entry.arm)))
                        .or_default();
                    e.0 += 1;
                    e.1 += o.reward;
                    if d.entry.context.is_some() {
                        *linear_expected.entry(u32::from(d.entry.arm)).or_default() += 1;
                    }
                }
            }
        }
        let id = match &d.entry.caller_id {
            Some(id) => {
                if let Some(other) = caller_ids.insert(id.to_string(), uid) {
                    v.push(format!(
                        "caller id {id:?} is used by campaigns {other} and {uid}"
                    ));
                }
                id.to_string()
            }
            None => format::write_decision_id(uid, d.at, &mut buf).to_string(),
        };
        report.decisions.insert(
            id,
            DecisionFact {
                campaign: name.clone(),
                segment: segment.to_string(),
                arm: arm_spec.id.clone(),
                propensity: d.entry.propensity,
                outcome: d.outcome.map(|o| (o.resolution, o.reward)),
            },
        );
    }
    if c.dangling_outcomes() > 0 {
        v.push(format!(
            "{name}: {} outcomes name no remembered decision",
            c.dangling_outcomes()
        ));
    }
    let stored: BTreeMap<(u32, u32), (u64, f64)> = rows
        .iter()
        .map(|(s, a, row)| ((*s, *a), (row.counts.n, row.counts.sum)))
        .collect();
    let keys: std::collections::BTreeSet<(u32, u32)> =
        stored.keys().chain(expected.keys()).copied().collect();
    for k in keys {
        let (n, sum) = stored.get(&k).copied().unwrap_or_default();
        let (en, esum) = expected.get(&k).copied().unwrap_or_default();
        let sum_ok = (sum - esum).abs() <= 1e-9 * (en.max(1) as f64);
        let ok = if nothing_forgotten {
            n == en && sum_ok
        } else {
            n >= en
        };
        if !ok {
            v.push(format!(
                "{name}: segment {} arm {}: the row counts {n} outcomes (sum {sum}), the remembered decisions {en} (sum {esum})",
                k.0, k.1
            ));
        }
    }
    if nothing_forgotten {
        let stored: BTreeMap<u32, u64> = linear.iter().map(|(a, s)| (*a, s.pulls)).collect();
        let arms: std::collections::BTreeSet<u32> = stored
            .keys()
            .chain(linear_expected.keys())
            .copied()
            .collect();
        for arm in arms {
            let (got, want) = (
                stored.get(&arm).copied().unwrap_or(0),
                linear_expected.get(&arm).copied().unwrap_or(0),
            );
            if got != want {
                v.push(format!(
                    "{name}: contextual arm {arm} counts {got} updates, its outcomes are {want}"
                ));
            }
        }
    }
    report.violations.extend(v);
    report.campaigns.push(summary);
}
