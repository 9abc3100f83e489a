//! Campaign definitions: the domain types a campaign is made of, their
//! defaults, their limits and their validation.
//!
//! Everything that enters the engine from a client or a campaign file passes
//! [`CampaignSpec::validate`] first; the engine can then rely on it (no NaN
//! priors, no duplicate arm ids, ids that fit in a storage key). Nothing here
//! is clamped or padded silently: bad input is rejected with a message that
//! names the field.

use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Limits on what one client request may create. Documented in the README.
pub mod limits {
    /// Bytes in a campaign, arm or decision id, or a segment name.
    pub const MAX_ID_BYTES: usize = 128;
    /// Arms in one campaign (active and retired).
    pub const MAX_ARMS: usize = 1_000;
    /// Campaigns on one daemon.
    pub const MAX_CAMPAIGNS: usize = 10_000;
    /// Distinct segments in one campaign.
    pub const MAX_SEGMENTS: usize = 100_000;
    /// Entries in one `Choose.context` map.
    pub const MAX_CONTEXT_ENTRIES: usize = 256;
    /// Longest reward timeout: 30 days.
    pub const MAX_REWARD_TIMEOUT_SECONDS: u32 = 30 * 24 * 3600;
    /// Context features of a contextual campaign (the intercept makes the dimension one more).
    pub const MAX_FEATURES: usize = 63;
    /// Largest magnitude of a contextual campaign's reward (and default
    /// reward): its statistics are sums, which must stay finite.
    pub const MAX_LINEAR_REWARD: f64 = 1e9;
    /// Largest magnitude of a context feature's value (`A` sums x·x).
    pub const MAX_CONTEXT_VALUE: f64 = 1e6;
    /// Longest decay half-life: ten years.
    pub const MAX_HALF_LIFE_SECONDS: u32 = 10 * 365 * 24 * 3600;
    /// Largest gRPC message the server decodes.
    pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
}

/// Reward timeout used when a campaign says 0.
pub const DEFAULT_REWARD_TIMEOUT_SECONDS: u32 = 3600;
/// Smallest probability of any active arm of a Thompson campaign unless it
/// says otherwise (off-policy evaluation divides by propensities: weights
/// stay below 10,000). The floor is uniform exploration that never stops,
/// so it costs about `floor × Σ gaps` regret per decision: 0.001 (the
/// earlier default, which stored campaigns keep) cost 30% over textbook
/// Thompson sampling on ten offers and 25% on a hundred over 100,000
/// decisions (`tests/regret.rs`, 20 seeds); 0.0001 costs a few percent.
pub const DEFAULT_EXPLORATION_FLOOR: f64 = 0.000_1;
/// Exploration scale v of linear Thompson sampling unless set.
pub const DEFAULT_LINTS_SCALE: f64 = 1.0;

/// Exploration rate of an ε-greedy campaign that does not say.
pub const DEFAULT_EPSILON: f64 = 0.1;

/// Name of the intercept term banditd adds in front of a contextual campaign's features.
pub const INTERCEPT: &str = "intercept";

/// One offer of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSpec {
    pub id: String,
    #[serde(default)]
    pub retired: bool,
    /// What one conversion of this arm is worth (revenue or margin); 1
    /// unless set. Thompson and ε-greedy campaigns rank arms by rate × value.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub value: f64,
    /// Impressions and conversions this arm may have (0: no cap), per
    /// `cap_period`.
    #[serde(default, skip_serializing_if = "Budget::is_none")]
    pub budget: Budget,
}

impl Default for ArmSpec {
    fn default() -> Self {
        ArmSpec {
            id: String::new(),
            retired: false,
            value: 1.0,
            budget: Budget::default(),
        }
    }
}

impl ArmSpec {
    /// An active arm with no value or cap of its own.
    pub fn new(id: impl Into<String>) -> Self {
        ArmSpec {
            id: id.into(),
            ..ArmSpec::default()
        }
    }
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// Over what time an arm's caps count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    /// The campaign's whole life.
    #[default]
    Lifetime,
    /// Each UTC day; impressions are paced evenly over the day.
    Day,
}

/// An arm's caps (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    #[serde(default)]
    pub max_impressions: u64,
    #[serde(default)]
    pub max_conversions: u64,
    #[serde(default)]
    pub period: CapPeriod,
}

impl Budget {
    pub fn is_none(&self) -> bool {
        self.max_impressions == 0 && self.max_conversions == 0
    }
}

/// Largest value of one conversion of an arm.
pub const MAX_ARM_VALUE: f64 = 1e9;
/// Largest share of a campaign's decisions that may be held out.
pub const MAX_HOLDOUT_FRACTION: f64 = 0.5;

/// How a segment's prior borrows from the campaign's other segments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pooling {
    /// A hierarchical Beta-Binomial prior per arm, its mean and strength
    /// estimated across segments (`policy::pooling`). The default.
    EmpiricalBayes,
    /// `min(others' outcomes, strength)` pseudo-observations at the other
    /// segments' mean (banditd before 0.2; kept for campaigns that ask).
    Fixed { strength: f64 },
    /// Every segment learns alone.
    Off,
}

impl Pooling {
    /// The wire's `segment_prior_strength`: unset is empirical Bayes, 0 is
    /// off, a positive value a fixed strength (validated later).
    pub fn from_strength(strength: Option<f64>) -> Self {
        match strength {
            None => Pooling::EmpiricalBayes,
            Some(0.0) => Pooling::Off,
            Some(strength) => Pooling::Fixed { strength },
        }
    }

    /// The inverse of [`Self::from_strength`].
    pub fn strength(&self) -> Option<f64> {
        match *self {
            Pooling::EmpiricalBayes => None,
            Pooling::Off => Some(0.0),
            Pooling::Fixed { strength } => Some(strength),
        }
    }
}

/// How a campaign decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicySpec {
    /// Beta-Bernoulli Thompson sampling per segment.
    Thompson {
        prior_alpha: f64,
        prior_beta: f64,
        pooling: Pooling,
        /// No active arm is chosen with a smaller probability (≤ 1/K).
        exploration_floor: f64,
    },
    /// A plain A/B/n split.
    Uniform,
    /// ε-greedy on the segment's own empirical means (the common baseline).
    EpsilonGreedy { epsilon: f64 },
    /// Disjoint LinUCB over the named context features (plus an intercept).
    LinUcb {
        alpha: f64,
        lambda: f64,
        epsilon: f64,
        /// Context feature names, in order (the intercept is added in front).
        features: Vec<String>,
        /// A feature missing from a request counts as 0 (otherwise it is an error).
        missing_zero: bool,
    },
    /// Linear Thompson sampling over the same ridge statistics as LinUCB:
    /// each arm's score is drawn from N(θᵀx, scale²·xᵀA⁻¹x).
    LinTs {
        scale: f64,
        lambda: f64,
        /// Share of decisions made uniformly at random (an exploration floor).
        epsilon: f64,
        features: Vec<String>,
        missing_zero: bool,
    },
}

impl PolicySpec {
    /// Thompson sampling with the documented defaults.
    pub fn thompson_default() -> Self {
        PolicySpec::Thompson {
            prior_alpha: 1.0,
            prior_beta: 1.0,
            pooling: Pooling::EmpiricalBayes,
            exploration_floor: DEFAULT_EXPLORATION_FLOOR,
        }
    }

    /// The closed interval of rewards this policy learns from.
    pub fn reward_range(&self) -> (f64, f64) {
        match self {
            PolicySpec::Thompson { .. }
            | PolicySpec::Uniform
            | PolicySpec::EpsilonGreedy { .. } => (0.0, 1.0),
            PolicySpec::LinUcb { .. } | PolicySpec::LinTs { .. } => {
                (-limits::MAX_LINEAR_REWARD, limits::MAX_LINEAR_REWARD)
            }
        }
    }

    /// Context features of a contextual policy (empty otherwise).
    pub fn features(&self) -> &[String] {
        match self {
            PolicySpec::LinUcb { features, .. } | PolicySpec::LinTs { features, .. } => features,
            PolicySpec::Thompson { .. }
            | PolicySpec::Uniform
            | PolicySpec::EpsilonGreedy { .. } => &[],
        }
    }
}

/// A campaign as created by a client, after defaults are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub id: String,
    pub arms: Vec<ArmSpec>,
    pub policy: PolicySpec,
    pub reward_timeout_seconds: u32,
    pub default_reward: f64,
    /// Older evidence counts less: an outcome's weight halves every this
    /// many seconds (Thompson, ε-greedy and uniform campaigns). Off if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_half_life_seconds: Option<u32>,
    /// This share of decisions is a holdout: chosen uniformly at random
    /// among the arms that may be shown, flagged, and never learned from;
    /// the uplift of the policy over it is reported. 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holdout_fraction: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl CampaignSpec {
    /// Checks every field; returns the first problem, naming the field.
    pub fn validate(&self) -> Result<()> {
        validate_id("campaign.id", &self.id)?;
        if self.arms.is_empty() {
            return Err(invalid("campaign.arms: a campaign needs at least one arm"));
        }
        validate_new_arms(&[], &self.arms)?;
        match self.policy {
            PolicySpec::Thompson {
                prior_alpha,
                prior_beta,
                pooling,
                exploration_floor,
            } => {
                for (name, v) in [
                    ("thompson.prior_alpha", prior_alpha),
                    ("thompson.prior_beta", prior_beta),
                ] {
                    if !(v.is_finite() && v > 0.0 && v <= 1e6) {
                        return Err(invalid(format!("{name} must be in (0, 1e6], got {v}")));
                    }
                }
                if let Pooling::Fixed { strength } = pooling {
                    if !(strength.is_finite() && strength > 0.0 && strength <= 1e6) {
                        return Err(invalid(format!(
                            "thompson.segment_prior_strength must be in [0, 1e6], got {strength}"
                        )));
                    }
                }
                if !(exploration_floor.is_finite() && (0.0..=0.5).contains(&exploration_floor)) {
                    return Err(invalid(format!(
                        "thompson.exploration_floor must be in [0, 0.5], got {exploration_floor}"
                    )));
                }
            }
            PolicySpec::Uniform => {}
            PolicySpec::EpsilonGreedy { epsilon } => {
                if !(epsilon.is_finite() && (0.0..=1.0).contains(&epsilon)) {
                    return Err(invalid(format!(
                        "epsilon_greedy.epsilon must be in [0, 1], got {epsilon}"
                    )));
                }
            }
            PolicySpec::LinUcb {
                alpha,
                lambda,
                epsilon,
                ref features,
                ..
            } => {
                if !(alpha.is_finite() && (0.0..=100.0).contains(&alpha)) {
                    return Err(invalid(format!(
                        "linucb.alpha must be in [0, 100], got {alpha}"
                    )));
                }
                validate_linear("linucb", lambda, epsilon, features)?;
            }
            PolicySpec::LinTs {
                scale,
                lambda,
                epsilon,
                ref features,
                ..
            } => {
                if !(scale.is_finite() && (0.0..=100.0).contains(&scale)) {
                    return Err(invalid(format!(
                        "lints.exploration must be in [0, 100], got {scale}"
                    )));
                }
                validate_linear("lints", lambda, epsilon, features)?;
            }
        }
        if let Some(h) = self.decay_half_life_seconds {
            if !self.policy.features().is_empty() {
                return Err(invalid(
                    "campaign.decay_half_life_seconds: decay is not available for contextual policies",
                ));
            }
            if !(60..=limits::MAX_HALF_LIFE_SECONDS).contains(&h) {
                return Err(invalid(format!(
                    "campaign.decay_half_life_seconds must be in [60, {}], got {h}",
                    limits::MAX_HALF_LIFE_SECONDS
                )));
            }
        }
        if self.reward_timeout_seconds == 0
            || self.reward_timeout_seconds > limits::MAX_REWARD_TIMEOUT_SECONDS
        {
            return Err(invalid(format!(
                "campaign.reward_timeout_seconds must be in [1, {}], got {}",
                limits::MAX_REWARD_TIMEOUT_SECONDS,
                self.reward_timeout_seconds
            )));
        }
        let h = self.holdout_fraction;
        if !(h.is_finite() && (0.0..=MAX_HOLDOUT_FRACTION).contains(&h)) {
            return Err(invalid(format!(
                "campaign.holdout_fraction must be in [0, {MAX_HOLDOUT_FRACTION}], got {h}"
            )));
        }
        self.contextual_values(&self.arms)?;
        let (lo, hi) = self.policy.reward_range();
        if !(self.default_reward.is_finite() && (lo..=hi).contains(&self.default_reward)) {
            return Err(invalid(format!(
                "campaign.default_reward must be in [{lo}, {hi}], got {}",
                self.default_reward
            )));
        }
        Ok(())
    }

    /// A contextual campaign's arms carry no value: its reward is any
    /// number, so the value is learned with it.
    fn contextual_values(&self, arms: &[ArmSpec]) -> Result<()> {
        if self.policy.features().is_empty() {
            return Ok(());
        }
        match arms.iter().find(|a| a.value != 1.0) {
            Some(a) => Err(invalid(format!(
                "arm {:?}: value is for Thompson, epsilon-greedy and uniform campaigns; a contextual campaign learns the value itself (send the revenue as the reward)",
                a.id
            ))),
            None => Ok(()),
        }
    }

    /// Indices of the arms that may still be chosen.
    pub fn active_arms(&self) -> impl Iterator<Item = usize> + '_ {
        self.arms
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.retired)
            .map(|(i, _)| i)
    }

    pub fn arm_index(&self, arm_id: &str) -> Option<usize> {
        self.arms.iter().position(|a| a.id == arm_id)
    }

    /// Appends arms that start exploring, validated against the existing ones.
    pub fn add_arms(&mut self, arms: Vec<ArmSpec>) -> Result<()> {
        validate_new_arms(&self.arms, &arms)?;
        self.contextual_values(&arms)?;
        self.arms.extend(arms.into_iter().map(|a| ArmSpec {
            retired: false,
            ..a
        }));
        Ok(())
    }

    /// Retires `arm_id`; `false` when it already was. The last active arm
    /// cannot be retired.
    pub fn retire(&mut self, arm_id: &str) -> Result<bool> {
        validate_id("arm_id", arm_id)?;
        let arm = self.arm_index(arm_id).ok_or_else(|| {
            crate::error::Error::NotFound(format!("arm {arm_id:?} in campaign {:?}", self.id))
        })?;
        if self.arms[arm].retired {
            return Ok(false);
        }
        if self.active_arms().count() == 1 {
            return Err(crate::error::Error::FailedPrecondition(format!(
                "arm {arm_id:?} is the last active arm of campaign {:?}",
                self.id
            )));
        }
        self.arms[arm].retired = true;
        Ok(true)
    }
}

/// The settings LinUCB and linear Thompson sampling share.
fn validate_linear(name: &str, lambda: f64, epsilon: f64, features: &[String]) -> Result<()> {
    if !(lambda.is_finite() && lambda > 0.0 && lambda <= 1e6) {
        return Err(invalid(format!(
            "{name}.lambda must be in (0, 1e6], got {lambda}"
        )));
    }
    if !(epsilon.is_finite() && (0.0..1.0).contains(&epsilon)) {
        return Err(invalid(format!(
            "{name}.epsilon must be in [0, 1), got {epsilon}"
        )));
    }
    if features.is_empty() || features.len() > limits::MAX_FEATURES {
        return Err(invalid(format!(
            "{name}.features must name 1 to {} features",
            limits::MAX_FEATURES
        )));
    }
    let mut seen = HashSet::new();
    for f in features {
        validate_id(&format!("{name}.features"), f)?;
        if f == INTERCEPT || !seen.insert(f.as_str()) {
            return Err(invalid(format!(
                "{name}.features: {f:?} is duplicated or reserved"
            )));
        }
    }
    Ok(())
}

/// Checks arms about to be added to `existing`: valid, unique ids, within limits.
pub fn validate_new_arms(existing: &[ArmSpec], new: &[ArmSpec]) -> Result<()> {
    if new.is_empty() {
        return Err(invalid("arms: at least one arm is required"));
    }
    if existing.len() + new.len() > limits::MAX_ARMS {
        return Err(invalid(format!(
            "arms: at most {} arms per campaign",
            limits::MAX_ARMS
        )));
    }
    let mut seen: HashSet<&str> = existing.iter().map(|a| a.id.as_str()).collect();
    for a in new {
        validate_id("arm.id", &a.id)?;
        if !seen.insert(a.id.as_str()) {
            return Err(invalid(format!("arm.id {:?} is duplicated", a.id)));
        }
        if !(a.value.is_finite() && a.value > 0.0 && a.value <= MAX_ARM_VALUE) {
            return Err(invalid(format!(
                "arm {:?}: value must be in (0, {MAX_ARM_VALUE:e}], got {}",
                a.id, a.value
            )));
        }
    }
    Ok(())
}

/// An id: 1..=128 bytes of letters, digits and `_ - . : / @ +`.
pub fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if id.len() > limits::MAX_ID_BYTES {
        return Err(invalid(format!(
            "{field} is longer than {} bytes",
            limits::MAX_ID_BYTES
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:/@+".contains(&b))
    {
        return Err(invalid(format!(
            "{field} may only contain letters, digits and _-.:/@+"
        )));
    }
    Ok(())
}

/// Whether a segment learns on its own (and takes part in pooling): the
/// segment "" is the campaign-wide view, learning from every decision, and
/// names starting with U+0001 are the engine's placeholders, which do too.
pub fn is_named_segment(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('\u{1}')
}

/// A segment name: empty (campaign-wide) or up to 128 bytes without control characters.
pub fn validate_segment(segment: &str) -> Result<()> {
    if segment.len() > limits::MAX_ID_BYTES {
        return Err(invalid(format!(
            "segment is longer than {} bytes",
            limits::MAX_ID_BYTES
        )));
    }
    if segment.chars().any(char::is_control) {
        return Err(invalid("segment must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CampaignSpec {
        CampaignSpec {
            id: "spring-sale".into(),
            arms: vec![
                ArmSpec {
                    id: "a".into(),
                    retired: false,
                    ..ArmSpec::default()
                },
                ArmSpec {
                    id: "b".into(),
                    retired: false,
                    ..ArmSpec::default()
                },
            ],
            policy: PolicySpec::thompson_default(),
            reward_timeout_seconds: 60,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        }
    }

    // A well-formed campaign passes; each kind of bad field is rejected.
    #[test]
    fn validation_rejects_each_bad_field() {
        assert!(spec().validate().is_ok());
        type Mutation = Box<dyn Fn(&mut CampaignSpec)>;
        let bad: Vec<Mutation> = vec![
            Box::new(|c| c.id.clear()),
            Box::new(|c| c.id = "x".repeat(129)),
            Box::new(|c| c.id = "has space".into()),
            Box::new(|c| c.arms.clear()),
            Box::new(|c| c.arms[1].id = "a".into()),
            Box::new(|c| c.default_reward = f64::NAN),
            Box::new(|c| c.default_reward = 1.5),
            Box::new(|c| c.reward_timeout_seconds = 0),
            Box::new(|c| {
                c.policy = PolicySpec::Thompson {
                    prior_alpha: -1.0,
                    prior_beta: 1.0,
                    pooling: Pooling::EmpiricalBayes,
                    exploration_floor: 0.0,
                }
            }),
            Box::new(|c| {
                c.policy = PolicySpec::Thompson {
                    prior_alpha: 1.0,
                    prior_beta: f64::INFINITY,
                    pooling: Pooling::Off,
                    exploration_floor: 0.0,
                }
            }),
            Box::new(|c| {
                c.policy = PolicySpec::Thompson {
                    prior_alpha: 1.0,
                    prior_beta: 1.0,
                    pooling: Pooling::Fixed { strength: f64::NAN },
                    exploration_floor: 0.0,
                }
            }),
            Box::new(|c| {
                c.policy = PolicySpec::Thompson {
                    prior_alpha: 1.0,
                    prior_beta: 1.0,
                    pooling: Pooling::Off,
                    exploration_floor: 0.6,
                }
            }),
            Box::new(|c| c.decay_half_life_seconds = Some(10)),
        ];
        for (i, mutate) in bad.iter().enumerate() {
            let mut c = spec();
            mutate(&mut c);
            assert!(
                matches!(c.validate(), Err(crate::Error::InvalidArgument(_))),
                "case {i}"
            );
        }
    }
}
