//! Decision-log readers: Open Bandit Pipeline CSV and banditd's DSJSON export.
//!
//! Each reader turns one file into a validated [`Log`] or fails on the first
//! bad row with the file, the 1-based line and the column (CSV: its number
//! and header name; DSJSON: the field path). Nothing is skipped, clamped or
//! padded except blank lines.
//!
//! - `csv`: the small CSV reader (shared with [`super::policy`]).
//! - `dsjson`: banditd's DSJSON export.
//! - here: the OBP CSV conventions and the path-level entry point.

mod csv;
mod dsjson;

use std::path::Path;

use super::{Log, LoggedEvent, OpeError};

#[cfg(test)]
use csv::csv_records;
pub(crate) use csv::CsvTable;
pub use dsjson::parse_banditd;
pub(crate) use dsjson::parse_rfc3339_ms;

/// Which reader a log needs; the caller says, nothing is guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Open Bandit Pipeline CSV: integer actions named "0", "1", ...
    ObpCsv,
    /// banditd's DSJSON export, one JSON object per line; actions are arm ids.
    Banditd,
}

/// Reads `path` with the reader `format` names.
pub fn read_log(path: &Path, format: LogFormat) -> Result<Log, OpeError> {
    let text = read_text(path)?;
    let source = path.display().to_string();
    match format {
        LogFormat::ObpCsv => parse_obp_csv(&text, &source),
        LogFormat::Banditd => parse_banditd(&text, &source),
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, OpeError> {
    std::fs::read_to_string(path).map_err(|e| OpeError::Io {
        file: path.display().to_string(),
        message: e.to_string(),
    })
}

pub(crate) fn parse_error(
    file: &str,
    row: usize,
    column: Option<String>,
    message: String,
) -> OpeError {
    OpeError::Parse {
        file: file.to_string(),
        row,
        column,
        message,
    }
}

/// Reads an Open Bandit Pipeline CSV log: required `action`, `position`,
/// `reward`, `pscore`; `round`, `timestamp` and `prob:*` columns ignored
/// (`timestamp` kept when it is an integer of milliseconds); every other
/// column is numeric context. Actions are named "0" ..= max(action).
pub fn parse_obp_csv(text: &str, source: &str) -> Result<Log, OpeError> {
    let table = CsvTable::parse(text, source)?;
    let action = table.column("action")?;
    let position = table.column("position")?;
    let reward = table.column("reward")?;
    let pscore = table.column("pscore")?;
    let timestamp = table.header.iter().position(|h| h == "timestamp");
    let context_cols: Vec<usize> = (0..table.header.len())
        .filter(|&c| {
            let h = table.header[c].as_str();
            ![action, position, reward, pscore].contains(&c)
                && h != "round"
                && h != "timestamp"
                && !h.starts_with("prob:")
        })
        .collect();
    let mut events = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let context = context_cols
            .iter()
            .map(|&c| table.number(row, c))
            .collect::<Result<Vec<f64>, _>>()?;
        events.push(LoggedEvent {
            action: table.index(row, action)?,
            position: table.index(row, position)?,
            reward: table.number(row, reward)?,
            pscore: table.propensity(row, pscore)?,
            context,
            timestamp_ms: timestamp.and_then(|c| row.fields[c].trim().parse::<u64>().ok()),
            logged_probs: None,
            segment: 0,
        });
    }
    if events.is_empty() {
        return Err(no_events(source));
    }
    let n_actions = events.iter().map(|e| e.action).max().unwrap_or(0) + 1;
    let positions = events.iter().map(|e| e.position).max().unwrap_or(0) + 1;
    Ok(Log {
        events,
        actions: (0..n_actions).map(|a| a.to_string()).collect(),
        positions,
        context_names: context_cols
            .iter()
            .map(|&c| table.header[c].clone())
            .collect(),
        segments: vec![String::new()],
        source: source.to_string(),
        format: LogFormat::ObpCsv,
    })
}

fn no_events(source: &str) -> OpeError {
    OpeError::File {
        file: source.to_string(),
        message: "the log has no events".to_string(),
    }
}

impl Log {
    /// Declares that an integer-action (OBP) log has `k` actions, for when
    /// the highest actions were never logged. `k` below the log's own count,
    /// or a banditd log (whose arms are named), is an error.
    pub fn with_action_count(mut self, k: usize) -> Result<Log, OpeError> {
        if self.format != LogFormat::ObpCsv {
            return Err(OpeError::Options(
                "the number of actions can only be set for an OBP log".to_string(),
            ));
        }
        if k < self.actions.len() {
            return Err(OpeError::Options(format!(
                "{} actions requested, but {} logs action {}",
                k,
                self.source,
                self.actions.len() - 1
            )));
        }
        self.actions = (0..k).map(|a| a.to_string()).collect();
        Ok(self)
    }
}

#[cfg(test)]
mod tests;
