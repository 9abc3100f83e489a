//! Off-policy evaluation: what another policy would have earned, estimated
//! from a log of decisions that a different (behaviour) policy made.
//!
//! This module owns:
//!
//! - [`read`](crate::ope::read): decision logs, Open Bandit Pipeline CSV and
//!   banditd's DSJSON export, both parsed by hand (the crate has no `csv`
//!   dependency);
//! - [`policy`](crate::ope::policy): the evaluation policies (uniform, one
//!   fixed arm, an action distribution from a file);
//! - [`estimators`](crate::ope::estimators): IPS, SNIPS, the direct method
//!   and doubly robust with a cross-fitted ridge model;
//! - [`write`](crate::ope::write): the same two formats written from the
//!   daemon's export (`banditd log export`, the simulator's logs);
//! - here: [`evaluate`](crate::ope::evaluate) and the two reports,
//!   [`EvalReport::to_table`](crate::ope::EvalReport::to_table) for a
//!   marketer and [`EvalReport::to_json`](crate::ope::EvalReport::to_json)
//!   for scripts.
//!
//! It is offline and pure: it reads the files it is given and never touches
//! the engine, the store or the daemon's configuration.
//!
//! Design decisions: no weight clipping (an estimate is either unbiased or
//! says how little it rests on, through ESS and the maximum weight); every
//! interval is the normal 95% interval of the mean of per-event terms; bad
//! input is rejected with the file, the 1-based row and the column, never
//! skipped or clamped.

pub mod campaign;
pub mod estimators;
pub mod policy;
pub mod read;
pub mod write;

use serde_json::json;
use thiserror::Error;

pub use campaign::CampaignPolicy;
pub use policy::{parse_policy, ActionDistribution, EvalPolicy, FixedArm, Uniform};
pub use read::{parse_banditd, parse_obp_csv, read_log, LogFormat};

/// One logged decision and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// The chosen action, a 0-based index into [`Log::actions`].
    pub action: usize,
    /// The 0-based slot it was shown in (0 when the log has no positions).
    pub position: usize,
    /// The observed reward.
    pub reward: f64,
    /// The behaviour policy's probability of (action, position), in (0, 1].
    pub pscore: f64,
    /// Numeric context, one value per [`Log::context_names`] entry.
    pub context: Vec<f64>,
    /// Milliseconds since the Unix epoch, when the log says.
    pub timestamp_ms: Option<u64>,
    /// The behaviour policy's full probability vector over [`Log::actions`],
    /// when the log records it (banditd's DSJSON `p`); arms not offered at
    /// this decision have probability 0.
    pub logged_probs: Option<Vec<f64>>,
    /// The customer segment, an index into [`Log::segments`] (0 when the
    /// log has none).
    pub segment: usize,
}

/// A whole decision log, validated: every event's action and position are in
/// range and every context has `context_names.len()` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub events: Vec<LoggedEvent>,
    /// Action names; the index is [`LoggedEvent::action`].
    pub actions: Vec<String>,
    /// Number of slots (1 when the log has no positions).
    pub positions: usize,
    pub context_names: Vec<String>,
    /// Segment names (`[""]` when the log has no segments).
    pub segments: Vec<String>,
    /// The file the log came from, for messages.
    pub source: String,
    /// Which reader produced it (decides how policy files name actions).
    pub format: LogFormat,
}

/// Options of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Ridge penalty λ of the direct model (> 0).
    pub ridge_lambda: f64,
    /// What one unit of reward is called in the marketer's sentences.
    pub reward_unit: String,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            ridge_lambda: 1.0,
            reward_unit: "conversions".to_string(),
        }
    }
}

/// A point estimate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl Estimate {
    /// Half the width of the interval (the "±" a marketer reads).
    pub fn half_width(&self) -> f64 {
        (self.ci_high - self.ci_low) / 2.0
    }

    fn to_json(self) -> serde_json::Value {
        json!({ "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high })
    }
}

/// Everything [`evaluate`] estimates about one evaluation policy.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    pub policy: String,
    /// Number of logged events.
    pub n: usize,
    pub ips: Estimate,
    pub snips: Estimate,
    pub dr: Estimate,
    /// The direct method alone: the mean of Σ_a π(a|x) q̂(x, a).
    pub dm: f64,
    /// The behaviour policy's own value: the log's mean reward.
    pub logged: Estimate,
    /// IPS minus the logged value, paired on the same decisions (the mean
    /// of wₜrₜ − rₜ): whether the candidate beats what was done, with an
    /// interval that accounts for the two sharing their data.
    pub ips_minus_logged: Estimate,
    /// Effective sample size (Σw)² / Σw².
    pub ess: f64,
    pub max_weight: f64,
    /// The unit of reward in the sentences of [`EvalReport::to_table`].
    pub reward_unit: String,
}

/// What can go wrong in off-policy evaluation. Each variant renders as one
/// line naming the file, row and column where there is one.
#[derive(Debug, Error)]
pub enum OpeError {
    /// A file could not be read.
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// A row of a log or policy file is malformed. `row` is the 1-based line;
    /// `column` names the column or field when one is at fault.
    #[error("{file}:{row}{}: {message}", column_suffix(.column))]
    Parse {
        file: String,
        row: usize,
        column: Option<String>,
        message: String,
    },
    /// A whole file is wrong (no rows, missing header column, sums).
    #[error("{file}: {message}")]
    File { file: String, message: String },
    /// The evaluation policy is malformed or does not fit the log.
    #[error("policy: {0}")]
    Policy(String),
    /// An evaluation option is out of range.
    #[error("{0}")]
    Options(String),
    /// The log and policy are valid but give no estimate.
    #[error("{0}")]
    NoEstimate(String),
}

fn column_suffix(column: &Option<String>) -> String {
    match column {
        Some(c) => format!(", {c}"),
        None => String::new(),
    }
}

/// Estimates `policy`'s value on `log` with IPS, SNIPS, DM and DR, and the
/// log's own value. Fails when the log has fewer than two events, the policy
/// returns something that is not a probability distribution over the log's
/// actions, or no logged decision agrees with the policy (Σw = 0).
pub fn evaluate(
    log: &Log,
    policy: &dyn EvalPolicy,
    opts: &EvalOptions,
) -> Result<EvalReport, OpeError> {
    if !(opts.ridge_lambda.is_finite() && opts.ridge_lambda > 0.0) {
        return Err(OpeError::Options(format!(
            "the ridge penalty must be a positive number, got {}",
            opts.ridge_lambda
        )));
    }
    let n = log.events.len();
    if n < 2 {
        return Err(OpeError::NoEstimate(format!(
            "{}: the log has {n} events; at least 2 are needed for an interval",
            log.source
        )));
    }
    let probs = estimators::policy_probabilities(log, policy)?;
    let rewards: Vec<f64> = log.events.iter().map(|e| e.reward).collect();
    let weights: Vec<f64> = log
        .events
        .iter()
        .zip(&probs)
        .map(|(e, p)| p[e.action] / e.pscore)
        .collect();
    let ips = estimators::ips(&rewards, &weights);
    let snips = estimators::snips(&rewards, &weights)?;
    let direct = estimators::cross_fit_direct_model(log, &probs, opts.ridge_lambda)?;
    let dr = estimators::doubly_robust(&rewards, &weights, &direct.q_logged, &direct.q_policy);
    let dm = estimators::accurate_sum(direct.q_policy.iter().copied()) / n as f64;
    let logged = estimators::normal_interval(&rewards);
    let paired: Vec<f64> = rewards
        .iter()
        .zip(&weights)
        .map(|(r, w)| w * r - r)
        .collect();
    let ips_minus_logged = estimators::normal_interval(&paired);
    let sum_w = estimators::accurate_sum(weights.iter().copied());
    let sum_w2 = estimators::accurate_sum(weights.iter().map(|w| w * w));
    let max_weight = weights.iter().copied().fold(0.0, f64::max);
    Ok(EvalReport {
        policy: policy.name(),
        n,
        ips,
        snips,
        dr,
        dm,
        logged,
        ips_minus_logged,
        ess: sum_w * sum_w / sum_w2,
        max_weight,
        reward_unit: opts.reward_unit.clone(),
    })
}

impl EvalReport {
    /// The machine-readable report.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "policy": self.policy,
            "n": self.n,
            "ips": self.ips.to_json(),
            "snips": self.snips.to_json(),
            "dr": self.dr.to_json(),
            "dm": self.dm,
            "logged": self.logged.to_json(),
            "ips_minus_logged": self.ips_minus_logged.to_json(),
            "ess": self.ess,
            "max_weight": self.max_weight,
        })
    }

    /// True when the estimates rest on few logged decisions: ESS below 1% of
    /// n or a single decision weighing more than 100.
    pub fn weights_are_degenerate(&self) -> bool {
        self.ess < 0.01 * self.n as f64 || self.max_weight > 100.0
    }

    /// An aligned table of the estimates, then the sentences a marketer reads.
    pub fn to_table(&self) -> String {
        let rows: [(&str, f64, Option<Estimate>); 5] = [
            ("IPS", self.ips.value, Some(self.ips)),
            ("SNIPS", self.snips.value, Some(self.snips)),
            ("DR", self.dr.value, Some(self.dr)),
            ("DM", self.dm, None),
            ("logged policy", self.logged.value, Some(self.logged)),
        ];
        let mut out = format!(
            "Off-policy evaluation of {} on {} logged decisions\n\n",
            self.policy, self.n
        );
        out += &format!("{:<14} {:>12}   {}\n", "estimator", "value", "95% interval");
        for (name, value, interval) in rows {
            let interval = match interval {
                Some(e) => format!("[{:.6}, {:.6}]", e.ci_low, e.ci_high),
                None => "(no interval)".to_string(),
            };
            out += &format!("{name:<14} {value:>12.6}   {interval}\n");
        }
        out += &format!(
            "\neffective sample size {:.1} of {}; largest weight {:.2}\n\n",
            self.ess, self.n, self.max_weight
        );
        let per_k =
            |e: &Estimate| format!("{:.1} ± {:.1}", 1000.0 * e.value, 1000.0 * e.half_width());
        out += &format!(
            "{} would have earned {} {} per 1,000 customers (SNIPS; DR says {}); \
             the logged policy earned {}.\n",
            self.policy,
            per_k(&self.snips),
            self.reward_unit,
            per_k(&self.dr),
            per_k(&self.logged)
        );
        let d = &self.ips_minus_logged;
        let verdict = if d.ci_low > 0.0 {
            "more than the logged policy"
        } else if d.ci_high < 0.0 {
            "less than the logged policy"
        } else {
            "not distinguishable from the logged policy"
        };
        out += &format!(
            "Paired on the same decisions (IPS): {:+.1} ± {:.1} per 1,000 customers, {verdict}.\n",
            1000.0 * d.value,
            1000.0 * d.half_width()
        );
        if self.weights_are_degenerate() {
            out += &format!(
                "Warning: few logged decisions agree with this policy: the estimate rests on \
                 {:.0} effective decisions.\n",
                self.ess
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
