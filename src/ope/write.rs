//! Decision-log writers: an export as Vowpal Wabbit's DSJSON (the format
//! [`super::read`] reads back as `--log-format banditd`) and as an Open
//! Bandit Pipeline CSV.
//!
//! DSJSON, one decision per line (the fields VW's `--dsjson` parser reads,
//! as in its `cb_adf` examples):
//!
//! | field | value |
//! |---|---|
//! | `EventId` | the decision's server-generated id (a slate's, for each of its slots) |
//! | `Timestamp` | when it was made, RFC 3339 UTC with milliseconds |
//! | `Version` | `"1"` |
//! | `c` | `{"segment", "features": {name: value}, "_multi": [{"arm": id}, ...]}`, every arm of the campaign by index |
//! | `a` | 1-based action indices into `_multi`, the chosen first |
//! | `p` | their probabilities, aligned with `a` |
//! | `_label_cost` | −reward (VW minimises cost) |
//! | `_label_probability` | the chosen arm's propensity |
//! | `_label_Action`, `_labelIndex` | the chosen action, 1-based and 0-based |
//! | `o` | `[{"v": reward, "EventId", "ActionTaken": false}]` when a reward arrived, `[]` for the default at timeout |
//! | `_banditd` | `{"campaign", "outcome": "reward"/"default", "outcome_at", "position": the slot (0 for a single arm), "probabilities": "full"/"chosen-only"}` |
//!
//! Every policy the engine serves logs its whole vector (Thompson's P(best)
//! with the floor, uniform, ε-greedy, LinUCB's ε/K plus the leaders' share,
//! LinTS's sampled vector); where a decision has none (more than 256 arms),
//! `p` holds the exact
//! propensity for the chosen arm and spreads the rest evenly over the others
//! (VW reads only the chosen one); `"probabilities": "chosen-only"` says so
//! and the reader then keeps no vector.
//!
//! CSV: `timestamp` (ms since the epoch), `action` (the arm's index in the
//! campaign, as `_multi` lists them), `position` (the slot of a slate, 0 for
//! a single arm), `reward`, `pscore` (position-wise for a slate: the
//! probability of this arm in this slot, as Open Bandit Pipeline logs it),
//! then one column per context feature.
//!
//! A slate is one record per slot, each with its slot's vector in `p`.

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::engine::{ExportHeader, ExportOutcome, ExportRecord};

/// The DSJSON line of one exported decision (no trailing newline).
pub fn dsjson_line(header: &ExportHeader, r: &ExportRecord) -> String {
    let k = header.arms.len().max(r.arm_index + 1);
    let chosen = r.arm_index;
    let full = !r.probabilities.is_empty();
    let prob = |i: usize| -> f64 {
        if i == chosen {
            r.propensity
        } else if full {
            r.probabilities.get(i).copied().unwrap_or(0.0)
        } else if k > 1 {
            ((1.0 - r.propensity) / (k - 1) as f64).max(0.0)
        } else {
            0.0
        }
    };
    let order: Vec<usize> = std::iter::once(chosen)
        .chain((0..k).filter(|&i| i != chosen))
        .collect();
    let (reward, outcome, outcome_at, observed) = match r.outcome {
        ExportOutcome::Rewarded { value, at_ms } => (value, "reward", Some(at_ms), true),
        ExportOutcome::Default { value, at_ms } => (value, "default", Some(at_ms), false),
        ExportOutcome::Pending => (0.0, "pending", None, false),
    };
    let features: Map<String, Value> = r
        .context
        .iter()
        .map(|(name, v)| (name.clone(), json!(v)))
        .collect();
    let multi: Vec<Value> = (0..k)
        .map(|i| json!({ "arm": header.arms.get(i).map_or(r.arm_id.as_str(), String::as_str) }))
        .collect();
    let o = if observed {
        json!([{ "v": reward, "EventId": &*r.decision_id, "ActionTaken": false }])
    } else {
        json!([])
    };
    let v = json!({
        "_label_cost": -reward,
        "_label_probability": r.propensity,
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "o": o,
        "Timestamp": format_rfc3339_ms(r.created_ms),
        "Version": "1",
        "EventId": &*r.decision_id,
        "a": order.iter().map(|&i| i + 1).collect::<Vec<_>>(),
        "c": { "segment": &*r.segment, "features": features, "_multi": multi },
        "p": order.iter().map(|&i| prob(i)).collect::<Vec<_>>(),
        "VWState": { "m": "banditd" },
        "_banditd": {
            "campaign": header.campaign_id,
            "outcome": outcome,
            "outcome_at": outcome_at.map(format_rfc3339_ms),
            "position": r.slot,
            "probabilities": if full { "full" } else { "chosen-only" },
        },
    });
    v.to_string()
}

/// Writes an export as an Open Bandit Pipeline CSV; the header row is
/// written with the first record (its features name the columns).
pub struct CsvWriter<W: Write> {
    out: W,
    started: bool,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> Self {
        CsvWriter {
            out,
            started: false,
        }
    }

    pub fn write(&mut self, header: &ExportHeader, r: &ExportRecord) -> std::io::Result<()> {
        if !self.started {
            self.write_header(header)?;
        }
        let reward = match r.outcome {
            ExportOutcome::Rewarded { value, .. } | ExportOutcome::Default { value, .. } => value,
            ExportOutcome::Pending => 0.0,
        };
        write!(
            self.out,
            "{},{},{},{},{}",
            r.created_ms, r.arm_index, r.slot, reward, r.propensity
        )?;
        for (_, v) in &r.context {
            write!(self.out, ",{v}")?;
        }
        writeln!(self.out)
    }

    fn write_header(&mut self, header: &ExportHeader) -> std::io::Result<()> {
        self.started = true;
        write!(self.out, "timestamp,action,position,reward,pscore")?;
        for f in &header.features {
            write!(self.out, ",{}", csv_field(f))?;
        }
        writeln!(self.out)
    }

    /// Ends the file (an export with no decisions still gets its header)
    /// and hands the writer back.
    pub fn finish(mut self, header: &ExportHeader) -> std::io::Result<W> {
        if !self.started {
            self.write_header(header)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `2024-05-01T12:34:56.789Z` for milliseconds since the Unix epoch.
pub fn format_rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H.
/// Hinnant's algorithm, the inverse of the reader's `days_from_civil`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
