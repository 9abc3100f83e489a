//! Wire types ⇄ domain types, and nothing else: what a value means, its
//! defaults and its rules live in the domain (`campaign`, `engine`), so an
//! in-process caller and a gRPC caller get the same answer. A value the
//! wire cannot even express in the domain (an unknown enum number, a
//! `Timestamp` before 1970) is the domain's `InvalidArgument`.

use super::pb;
use crate::campaign::{
    ArmSpec, Budget, CampaignSpec, CapPeriod, PolicySpec, Pooling, DEFAULT_EPSILON,
    DEFAULT_EXPLORATION_FLOOR, DEFAULT_LINTS_SCALE, DEFAULT_REWARD_TIMEOUT_SECONDS,
};
use crate::engine::{
    ArmReport, ChooseRequest, ExportHeader, ExportOutcome, ExportRecord, SegmentReport,
};
use crate::error::{invalid, Error};

impl From<pb::ChooseRequest> for ChooseRequest {
    fn from(r: pb::ChooseRequest) -> Self {
        let mut context: Vec<(String, f64)> = r.context.into_iter().collect();
        context.sort_by(|a, b| a.0.cmp(&b.0));
        ChooseRequest {
            campaign_id: r.campaign_id,
            segment: r.segment,
            context,
            decision_id: Some(r.decision_id).filter(|d| !d.is_empty()),
            count: r.count as usize,
        }
    }
}

fn missing_zero(policy: &str, missing: i32) -> Result<bool, Error> {
    match pb::MissingFeature::try_from(missing) {
        Ok(pb::MissingFeature::Zero) => Ok(true),
        Ok(pb::MissingFeature::Reject) => Ok(false),
        Err(_) => Err(invalid(format!(
            "{policy}.missing: unknown value {missing}"
        ))),
    }
}

fn missing_wire(zero: bool) -> i32 {
    if zero {
        pb::MissingFeature::Zero as i32
    } else {
        pb::MissingFeature::Reject as i32
    }
}

/// A campaign from the wire, with defaults applied (0 means default). The
/// engine validates the result.
impl TryFrom<pb::Campaign> for CampaignSpec {
    type Error = Error;
    fn try_from(c: pb::Campaign) -> Result<Self, Error> {
        let policy = match c.policy {
            None => PolicySpec::thompson_default(),
            Some(pb::campaign::Policy::Thompson(t)) => PolicySpec::Thompson {
                prior_alpha: if t.prior_alpha == 0.0 {
                    1.0
                } else {
                    t.prior_alpha
                },
                prior_beta: if t.prior_beta == 0.0 {
                    1.0
                } else {
                    t.prior_beta
                },
                pooling: Pooling::from_strength(t.segment_prior_strength),
                exploration_floor: t.exploration_floor.unwrap_or(DEFAULT_EXPLORATION_FLOOR),
            },
            Some(pb::campaign::Policy::Uniform(_)) => PolicySpec::Uniform,
            Some(pb::campaign::Policy::EpsilonGreedy(e)) => PolicySpec::EpsilonGreedy {
                epsilon: e.epsilon.unwrap_or(DEFAULT_EPSILON),
            },
            Some(pb::campaign::Policy::Linucb(l)) => PolicySpec::LinUcb {
                alpha: if l.alpha == 0.0 { 1.0 } else { l.alpha },
                lambda: if l.lambda == 0.0 { 1.0 } else { l.lambda },
                epsilon: l.epsilon,
                missing_zero: missing_zero("linucb", l.missing)?,
                features: l.features,
            },
            Some(pb::campaign::Policy::Lints(l)) => PolicySpec::LinTs {
                scale: if l.exploration == 0.0 {
                    DEFAULT_LINTS_SCALE
                } else {
                    l.exploration
                },
                lambda: if l.lambda == 0.0 { 1.0 } else { l.lambda },
                epsilon: l.epsilon,
                missing_zero: missing_zero("lints", l.missing)?,
                features: l.features,
            },
        };
        Ok(CampaignSpec {
            id: c.id,
            arms: c
                .arms
                .into_iter()
                .map(arm_from_wire)
                .collect::<Result<_, _>>()?,
            policy,
            reward_timeout_seconds: if c.reward_timeout_seconds == 0 {
                DEFAULT_REWARD_TIMEOUT_SECONDS
            } else {
                c.reward_timeout_seconds
            },
            default_reward: c.default_reward,
            decay_half_life_seconds: c.decay_half_life_seconds,
            holdout_fraction: c.holdout_fraction,
        })
    }
}

impl From<CampaignSpec> for pb::Campaign {
    fn from(c: CampaignSpec) -> Self {
        let policy = match c.policy {
            PolicySpec::Thompson {
                prior_alpha,
                prior_beta,
                pooling,
                exploration_floor,
            } => pb::campaign::Policy::Thompson(pb::ThompsonSampling {
                prior_alpha,
                prior_beta,
                segment_prior_strength: pooling.strength(),
                exploration_floor: Some(exploration_floor),
            }),
            PolicySpec::Uniform => pb::campaign::Policy::Uniform(pb::UniformSplit {}),
            PolicySpec::EpsilonGreedy { epsilon } => {
                pb::campaign::Policy::EpsilonGreedy(pb::EpsilonGreedy {
                    epsilon: Some(epsilon),
                })
            }
            PolicySpec::LinUcb {
                alpha,
                lambda,
                epsilon,
                features,
                missing_zero,
            } => pb::campaign::Policy::Linucb(pb::LinUcb {
                alpha,
                features,
                lambda,
                epsilon,
                missing: missing_wire(missing_zero),
            }),
            PolicySpec::LinTs {
                scale,
                lambda,
                epsilon,
                features,
                missing_zero,
            } => pb::campaign::Policy::Lints(pb::LinTs {
                features,
                lambda,
                exploration: scale,
                epsilon,
                missing: missing_wire(missing_zero),
            }),
        };
        pb::Campaign {
            id: c.id,
            arms: c
                .arms
                .into_iter()
                .map(|a| pb::Arm {
                    id: a.id,
                    retired: a.retired,
                    value: a.value,
                    max_impressions: a.budget.max_impressions,
                    max_conversions: a.budget.max_conversions,
                    cap_period: match a.budget.period {
                        CapPeriod::Lifetime => pb::CapPeriod::Lifetime as i32,
                        CapPeriod::Day => pb::CapPeriod::Day as i32,
                    },
                })
                .collect(),
            policy: Some(policy),
            reward_timeout_seconds: c.reward_timeout_seconds,
            default_reward: c.default_reward,
            decay_half_life_seconds: c.decay_half_life_seconds,
            holdout_fraction: c.holdout_fraction,
        }
    }
}

impl From<ArmReport> for pb::ArmStats {
    fn from(a: ArmReport) -> Self {
        pb::ArmStats {
            arm_id: a.arm_id,
            pulls: a.pulls,
            reward_sum: a.reward_sum,
            mean: a.mean,
            ci_low: a.ci_low,
            ci_high: a.ci_high,
            prob_best: a.prob_best,
            pending: a.pending,
            retired: a.retired,
            theta: a
                .theta
                .into_iter()
                .map(|(feature, weight)| pb::FeatureWeight { feature, weight })
                .collect(),
            exploration_bonus: a.exploration_bonus,
            residual_sd: a.residual_sd,
            effective_trials: a.effective_trials,
            capped: a.capped,
            value: a.value,
            expected_value: a.expected_value,
            period_impressions: a.period_impressions,
            period_conversions: a.period_conversions,
        }
    }
}

impl From<SegmentReport> for pb::SegmentStats {
    fn from(s: SegmentReport) -> Self {
        pb::SegmentStats {
            segment: s.segment,
            arms: s.arms.into_iter().map(Into::into).collect(),
            uplift: s.uplift.map(|u| pb::Uplift {
                policy_decisions: u.policy_decisions,
                policy_mean: u.policy_mean,
                holdout_decisions: u.holdout_decisions,
                holdout_mean: u.holdout_mean,
                uplift: u.uplift,
                ci_low: u.ci_low,
                ci_high: u.ci_high,
                relative_uplift: u.relative_uplift,
            }),
        }
    }
}

/// Arms to add (`retired` is output-only and must not be set).
pub fn arms_from_wire(arms: Vec<pb::Arm>) -> Result<Vec<ArmSpec>, Error> {
    arms.into_iter().map(arm_from_wire).collect()
}

/// One arm from the wire: value 0 means 1; the campaign validates the rest.
fn arm_from_wire(a: pb::Arm) -> Result<ArmSpec, Error> {
    if a.retired {
        return Err(invalid(format!("arm {:?}: retired is output-only", a.id)));
    }
    let period = match pb::CapPeriod::try_from(a.cap_period) {
        Ok(pb::CapPeriod::Lifetime) => CapPeriod::Lifetime,
        Ok(pb::CapPeriod::Day) => CapPeriod::Day,
        Err(_) => {
            return Err(invalid(format!(
                "arm {:?}: cap_period: unknown value {}",
                a.id, a.cap_period
            )))
        }
    };
    Ok(ArmSpec {
        value: if a.value == 0.0 { 1.0 } else { a.value },
        budget: Budget {
            max_impressions: a.max_impressions,
            max_conversions: a.max_conversions,
            period,
        },
        retired: false,
        id: a.id,
    })
}

/// Milliseconds since the Unix epoch as a protobuf `Timestamp`.
pub fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A protobuf `Timestamp` as milliseconds since the Unix epoch; `what`
/// names the field in the error.
pub fn timestamp_ms(t: &prost_types::Timestamp, what: &str) -> Result<u64, Error> {
    if t.seconds < 0 || !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(format!(
            "{what} is not a time after 1970 ({}s {}ns)",
            t.seconds, t.nanos
        )));
    }
    (t.seconds as u64)
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(t.nanos as u64 / 1_000_000))
        .ok_or_else(|| invalid(format!("{what} is too far in the future")))
}

impl From<&ExportRecord> for pb::LoggedDecision {
    fn from(r: &ExportRecord) -> Self {
        let (outcome, reward, at) = match r.outcome {
            ExportOutcome::Rewarded { value, at_ms } => {
                (pb::DecisionOutcome::Rewarded, value, Some(at_ms))
            }
            ExportOutcome::Default { value, at_ms } => {
                (pb::DecisionOutcome::Default, value, Some(at_ms))
            }
            ExportOutcome::Pending => (pb::DecisionOutcome::Pending, 0.0, None),
        };
        pb::LoggedDecision {
            decision_id: r.decision_id.to_string(),
            decided_at: Some(timestamp(r.created_ms)),
            segment: r.segment.to_string(),
            arm_id: r.arm_id.clone(),
            propensity: r.propensity,
            probabilities: r.probabilities.clone(),
            context: r.context.iter().map(|(_, v)| *v).collect(),
            outcome: outcome as i32,
            reward,
            outcome_at: at.map(timestamp),
            holdout: r.holdout,
            slot: r.slot,
        }
    }
}

impl From<&pb::ExportDecisionsResponse> for ExportHeader {
    fn from(r: &pb::ExportDecisionsResponse) -> Self {
        ExportHeader {
            campaign_id: r.campaign_id.clone(),
            arms: r.arm_ids.clone(),
            features: r.features.clone(),
        }
    }
}

/// A logged decision from the wire, in the terms of `header` (the message
/// it came in); an error says what does not fit.
pub fn export_record(header: &ExportHeader, d: pb::LoggedDecision) -> Result<ExportRecord, String> {
    let arm_index = header
        .arms
        .iter()
        .position(|a| *a == d.arm_id)
        .ok_or_else(|| {
            format!(
                "decision {} names arm {:?} the campaign does not list",
                d.decision_id, d.arm_id
            )
        })?;
    if d.context.len() != header.features.len() {
        return Err(format!(
            "decision {} has {} context values for {} features",
            d.decision_id,
            d.context.len(),
            header.features.len()
        ));
    }
    let ms = |t: Option<prost_types::Timestamp>, what: &str| -> Result<u64, String> {
        let t = t.ok_or_else(|| format!("decision {}: {what} is missing", d.decision_id))?;
        timestamp_ms(&t, what).map_err(|e| e.to_string())
    };
    let created_ms = ms(d.decided_at, "decided_at")?;
    let outcome = match pb::DecisionOutcome::try_from(d.outcome) {
        Ok(pb::DecisionOutcome::Rewarded) => ExportOutcome::Rewarded {
            value: d.reward,
            at_ms: ms(d.outcome_at, "outcome_at")?,
        },
        Ok(pb::DecisionOutcome::Default) => ExportOutcome::Default {
            value: d.reward,
            at_ms: ms(d.outcome_at, "outcome_at")?,
        },
        Ok(pb::DecisionOutcome::Pending) => ExportOutcome::Pending,
        Err(_) => {
            return Err(format!(
                "decision {}: unknown outcome {}",
                d.decision_id, d.outcome
            ))
        }
    };
    Ok(ExportRecord {
        decision_id: d.decision_id.into(),
        created_ms,
        segment: d.segment.into(),
        arm_index,
        arm_id: d.arm_id,
        propensity: d.propensity,
        probabilities: d.probabilities,
        context: header.features.iter().cloned().zip(d.context).collect(),
        outcome,
        holdout: d.holdout,
        slot: d.slot,
    })
}
