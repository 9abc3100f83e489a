//! Evaluation policies: the "what if" whose value the estimators compute.
//!
//! A policy only answers π(action at the event's position | event). Three are
//! built in: [`Uniform`], [`FixedArm`] and [`ActionDistribution`] (a
//! position-wise distribution from an `action,position,prob` CSV, as Open
//! Bandit Pipeline's `action_dist`). They are parsed against a [`Log`] so
//! that an arm the log never heard of fails here, before anything runs.
//! [`EvalPolicy`] is a trait because callers (a simulator strategy, a
//! learned model) can bring their own.

use std::path::Path;

use super::read::{read_text, CsvTable, LogFormat};
use super::{Log, LoggedEvent, OpeError};

/// An evaluation policy.
pub trait EvalPolicy {
    /// π(action at `event.position` | `event`), a probability; summed over
    /// the log's actions it must be 1 at every event.
    fn prob(&self, log: &Log, event: &LoggedEvent, action: usize) -> f64;
    /// π(· | event `t` of `log`) over the log's actions; by default from
    /// [`EvalPolicy::prob`]. A policy fitted on the log overrides it to
    /// score each event with a fit that has not seen it.
    fn distribution(&self, log: &Log, t: usize) -> Vec<f64> {
        let event = &log.events[t];
        (0..log.actions.len())
            .map(|a| self.prob(log, event, a))
            .collect()
    }
    /// The name the reports use.
    fn name(&self) -> String;
}

/// Every action with probability 1 / (number of actions), at every position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uniform;

impl EvalPolicy for Uniform {
    fn prob(&self, log: &Log, _event: &LoggedEvent, _action: usize) -> f64 {
        1.0 / log.actions.len() as f64
    }

    fn name(&self) -> String {
        "uniform".to_string()
    }
}

/// Always the same arm, at every position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedArm {
    pub action: usize,
    pub arm: String,
}

impl FixedArm {
    /// The arm named `arm` of `log` (an arm id, or an OBP action integer).
    pub fn new(log: &Log, arm: &str) -> Result<Self, OpeError> {
        let action = log.actions.iter().position(|a| a == arm).ok_or_else(|| {
            OpeError::Policy(format!(
                "unknown arm `{arm}`; the log's actions are {}",
                list_actions(&log.actions)
            ))
        })?;
        Ok(FixedArm {
            action,
            arm: arm.to_string(),
        })
    }
}

impl EvalPolicy for FixedArm {
    fn prob(&self, _log: &Log, _event: &LoggedEvent, action: usize) -> f64 {
        if action == self.action {
            1.0
        } else {
            0.0
        }
    }

    fn name(&self) -> String {
        format!("fixed:{}", self.arm)
    }
}

fn list_actions(actions: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut s = actions
        .iter()
        .take(SHOWN)
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if actions.len() > SHOWN {
        s += &format!(", … ({} in all)", actions.len());
    }
    s
}

/// Parses `uniform` or `fixed:ARM` against `log`.
pub fn parse_policy(spec: &str, log: &Log) -> Result<Box<dyn EvalPolicy>, OpeError> {
    match spec {
        "uniform" => Ok(Box::new(Uniform)),
        _ => match spec.strip_prefix("fixed:") {
            Some(arm) => Ok(Box::new(FixedArm::new(log, arm)?)),
            None => Err(OpeError::Policy(format!(
                "unknown policy `{spec}`; expected `uniform`, `fixed:ARM` or `campaign:FILE.toml`"
            ))),
        },
    }
}

/// π(action | position) from a table, the same for every context.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionDistribution {
    /// `probs[position][action]`.
    pub probs: Vec<Vec<f64>>,
    pub name: String,
}

impl ActionDistribution {
    /// Reads an `action,position,prob` CSV file for `log`; the policy is
    /// named after the file (errors name the whole path).
    pub fn from_file(path: &Path, log: &Log) -> Result<Self, OpeError> {
        let text = read_text(path)?;
        let mut dist = Self::from_csv(&text, &path.display().to_string(), log)?;
        if let Some(file_name) = path.file_name() {
            dist.name = file_name.to_string_lossy().into_owned();
        }
        Ok(dist)
    }

    /// Parses `action,position,prob` CSV text; `source` names it in errors
    /// and in the reports. Missing (action, position) pairs are 0; each of
    /// the log's positions must sum to 1 within 1e-6; a pair given twice, a
    /// position beyond the log's or an action the log does not have is an
    /// error (OBP logs: an integer below the action count; banditd logs: an
    /// arm id).
    pub fn from_csv(text: &str, source: &str, log: &Log) -> Result<Self, OpeError> {
        let table = CsvTable::parse(text, source)?;
        let (c_action, c_position, c_prob) = (
            table.column("action")?,
            table.column("position")?,
            table.column("prob")?,
        );
        let k = log.actions.len();
        let mut probs = vec![vec![f64::NAN; k]; log.positions];
        for row in &table.rows {
            let located = |col: usize, message: String| {
                super::read::parse_error(
                    source,
                    row.line,
                    Some(format!("column {} ({})", col + 1, table.header[col])),
                    message,
                )
            };
            let action = match log.format {
                LogFormat::ObpCsv => {
                    let a = table.index(row, c_action)?;
                    if a >= k {
                        return Err(located(
                            c_action,
                            format!("action {a}, but the log has actions 0..={}", k - 1),
                        ));
                    }
                    a
                }
                LogFormat::Banditd => {
                    let name = row.fields[c_action].trim();
                    log.actions.iter().position(|a| a == name).ok_or_else(|| {
                        located(
                            c_action,
                            format!(
                                "unknown arm `{name}`; the log's arms are {}",
                                list_actions(&log.actions)
                            ),
                        )
                    })?
                }
            };
            let position = table.index(row, c_position)?;
            if position >= log.positions {
                return Err(located(
                    c_position,
                    format!(
                        "position {position}, but the log has positions 0..={}",
                        log.positions - 1
                    ),
                ));
            }
            let p = table.number(row, c_prob)?;
            if !(0.0..=1.0).contains(&p) {
                return Err(located(
                    c_prob,
                    format!("{p} is not a probability in [0, 1]"),
                ));
            }
            let slot = &mut probs[position][action];
            if !slot.is_nan() {
                return Err(located(
                    c_action,
                    format!("action {action} at position {position} is given twice"),
                ));
            }
            *slot = p;
        }
        for (position, row) in probs.iter_mut().enumerate() {
            for p in row.iter_mut() {
                if p.is_nan() {
                    *p = 0.0;
                }
            }
            let sum: f64 = row.iter().sum();
            if (sum - 1.0).abs() > 1e-6 {
                return Err(OpeError::File {
                    file: source.to_string(),
                    message: format!(
                        "the probabilities of position {position} sum to {sum}, not 1"
                    ),
                });
            }
        }
        Ok(ActionDistribution {
            probs,
            name: source.to_string(),
        })
    }
}

impl EvalPolicy for ActionDistribution {
    fn prob(&self, _log: &Log, event: &LoggedEvent, action: usize) -> f64 {
        self.probs[event.position][action]
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ope::read::parse_obp_csv;

    fn obp_log() -> Log {
        // 3 actions, 2 positions.
        let csv = "action,position,reward,pscore\n0,0,1,0.5\n2,1,0,0.25\n1,0,0,0.5\n";
        match parse_obp_csv(csv, "log.csv") {
            Ok(log) => log,
            Err(e) => panic!("{e}"),
        }
    }

    fn event(position: usize) -> LoggedEvent {
        LoggedEvent {
            action: 0,
            position,
            reward: 0.0,
            pscore: 1.0,
            context: vec![],
            timestamp_ms: None,
            logged_probs: None,
            segment: 0,
        }
    }

    // Uniform gives 1/k to every action at every position.
    #[test]
    fn uniform_is_one_over_k() {
        let log = obp_log();
        for a in 0..3 {
            assert_eq!(Uniform.prob(&log, &event(1), a), 1.0 / 3.0);
        }
        assert_eq!(Uniform.name(), "uniform");
    }

    // `fixed:ARM` puts all mass on ARM; an unknown arm is rejected with the known list.
    #[test]
    fn fixed_arm_and_unknown_arm() {
        let log = obp_log();
        let p = parse_policy("fixed:2", &log).map_err(|e| e.to_string());
        let p = p.as_ref().map(|p| {
            (0..3)
                .map(|a| p.prob(&log, &event(0), a))
                .collect::<Vec<_>>()
        });
        assert_eq!(p, Ok(vec![0.0, 0.0, 1.0]));
        let err = parse_policy("fixed:7", &log).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("policy: unknown arm `7`; the log's actions are `0`, `1`, `2`")
        );
        assert!(matches!(
            parse_policy("greedy", &log),
            Err(OpeError::Policy(_))
        ));
    }

    // A distribution file: missing pairs are 0, positions must sum to 1.
    #[test]
    fn distribution_file_missing_pairs_are_zero() {
        let log = obp_log();
        let csv = "action,position,prob\n0,0,0.25\n1,0,0.75\n2,1,1\n";
        let d = ActionDistribution::from_csv(csv, "pi.csv", &log).map_err(|e| e.to_string());
        assert_eq!(
            d.map(|d| d.probs),
            Ok(vec![vec![0.25, 0.75, 0.0], vec![0.0, 0.0, 1.0]])
        );
    }

    // A position whose probabilities do not sum to 1 is named with its sum.
    #[test]
    fn distribution_sum_error_names_position() {
        let log = obp_log();
        let csv = "action,position,prob\n0,0,0.25\n1,0,0.75\n2,1,0.5\n";
        let err = ActionDistribution::from_csv(csv, "pi.csv", &log).err();
        assert!(
            matches!(&err, Some(OpeError::File { message, .. }) if message.contains("position 1 sum to 0.5")),
            "{err:?}"
        );
    }

    // Bad numbers, out-of-range actions and positions, and duplicates carry row and column.
    #[test]
    fn distribution_row_errors_are_located() {
        let log = obp_log();
        let cases = [
            ("action,position,prob\n0,0,1\n1,1,x\n", 3, "column 3 (prob)"),
            ("action,position,prob\n3,0,1\n", 2, "column 1 (action)"),
            ("action,position,prob\n0,2,1\n", 2, "column 2 (position)"),
            (
                "action,position,prob\n0,0,1\n0,0,1\n",
                3,
                "column 1 (action)",
            ),
            ("action,position,prob\n0,0,1.5\n", 2, "column 3 (prob)"),
            ("action,position,prob\n-1,0,1\n", 2, "column 1 (action)"),
        ];
        for (csv, want_row, want_col) in cases {
            match ActionDistribution::from_csv(csv, "pi.csv", &log) {
                Err(OpeError::Parse { row, column, .. }) => {
                    assert_eq!(
                        (row, column.as_deref()),
                        (want_row, Some(want_col)),
                        "{csv}"
                    )
                }
                other => panic!("{csv}: {other:?}"),
            }
        }
    }

    // For banditd logs the file's actions are arm ids, matched by name.
    #[test]
    fn distribution_matches_banditd_arm_ids() {
        let mut log = obp_log();
        log.format = LogFormat::Banditd;
        log.actions = vec!["red".into(), "blue".into(), "green".into()];
        let csv = "action,position,prob\nblue,0,1\ngreen,1,1\n";
        let d = ActionDistribution::from_csv(csv, "pi.csv", &log).map_err(|e| e.to_string());
        assert_eq!(
            d.map(|d| d.probs),
            Ok(vec![vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]])
        );
        let err = ActionDistribution::from_csv("action,position,prob\npink,0,1\n", "pi.csv", &log);
        assert!(matches!(err, Err(OpeError::Parse { row: 2, .. })));
    }

    // The BTS action distribution of the Open Bandit Dataset parses and sums to 1 per slot.
    #[test]
    fn obd_bts_action_distribution() {
        let dir = Path::new("/work/shared/data/obd");
        if !dir.exists() {
            eprintln!("skipping: {} is absent", dir.display());
            return;
        }
        let log = match crate::ope::read_log(&dir.join("obd_all_random.csv"), LogFormat::ObpCsv) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        match ActionDistribution::from_file(&dir.join("obd_all_bts_action_dist.csv"), &log) {
            Ok(d) => {
                assert_eq!(d.probs.len(), 3);
                assert!(d.probs.iter().all(|p| p.len() == 80));
            }
            Err(e) => panic!("{e}"),
        }
    }
}
