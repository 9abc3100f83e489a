//! banditd's DSJSON export (one decision per line, as Vowpal Wabbit reads
//! it): line-by-line validation, then actions and features aligned across
//! lines. Also the small RFC 3339 parser its `Timestamp` needs.

use std::collections::HashMap;

use serde_json::Value;

use super::{no_events, parse_error, LogFormat};
use crate::ope::{Log, LoggedEvent, OpeError};

/// One DSJSON line, before actions and features are aligned across lines.
#[derive(Debug)]
struct RawEvent {
    segment: usize,
    line: usize,
    /// This line's arms, as indices into the log-wide action list.
    arms: Vec<usize>,
    /// Probability of each of this line's arms (aligned with `arms`).
    probs: Vec<f64>,
    chosen: usize,
    position: usize,
    reward: f64,
    pscore: f64,
    features: HashMap<String, f64>,
    timestamp_ms: Option<u64>,
    full_probs: bool,
}

/// Reads banditd's DSJSON export (one decision per line, as Vowpal Wabbit
/// reads it). Actions are the arm ids of `c._multi` in first-seen order
/// across the file, so arms added or retired mid-log keep one index (an arm
/// not offered at a decision has logged probability 0). Context is
/// `c.features`, columns in first-seen order (within a line, alphabetical:
/// serde_json's map order); a line lacking a column is an error. Lines must
/// all belong to one campaign (`_banditd.campaign`, when present).
pub fn parse_banditd(text: &str, source: &str) -> Result<Log, OpeError> {
    let mut actions: Vec<String> = Vec::new();
    let mut action_index: HashMap<String, usize> = HashMap::new();
    let mut context_names: Vec<String> = Vec::new();
    let mut campaign: Option<String> = None;
    let mut segments: Vec<String> = Vec::new();
    let mut segment_index: HashMap<String, usize> = HashMap::new();
    let mut raw = Vec::new();
    for (i, text_line) in text.lines().enumerate() {
        if text_line.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let ev = parse_dsjson_line(text_line, line, source, &mut campaign)?;
        let arms = ev
            .arm_ids
            .iter()
            .map(|id| {
                *action_index.entry(id.clone()).or_insert_with(|| {
                    actions.push(id.clone());
                    actions.len() - 1
                })
            })
            .collect();
        for (name, _) in &ev.features {
            if !context_names.contains(name) {
                context_names.push(name.clone());
            }
        }
        let segment = *segment_index.entry(ev.segment.clone()).or_insert_with(|| {
            segments.push(ev.segment.clone());
            segments.len() - 1
        });
        raw.push(RawEvent {
            segment,
            line,
            arms,
            probs: ev.probs,
            chosen: ev.chosen,
            position: ev.position,
            reward: ev.reward,
            pscore: ev.pscore,
            features: ev.features.into_iter().collect(),
            timestamp_ms: ev.timestamp_ms,
            full_probs: ev.full_probs,
        });
    }
    if raw.is_empty() {
        return Err(no_events(source));
    }
    let mut events = Vec::with_capacity(raw.len());
    for ev in raw {
        let context = context_names
            .iter()
            .map(|name| {
                ev.features.get(name).copied().ok_or_else(|| {
                    parse_error(
                        source,
                        ev.line,
                        Some(format!("c.features.{name}")),
                        format!("feature `{name}` is missing (other lines have it)"),
                    )
                })
            })
            .collect::<Result<Vec<f64>, _>>()?;
        let mut full = vec![0.0; actions.len()];
        for (&a, &p) in ev.arms.iter().zip(&ev.probs) {
            full[a] = p;
        }
        events.push(LoggedEvent {
            action: ev.arms[ev.chosen],
            position: ev.position,
            reward: ev.reward,
            pscore: ev.pscore,
            context,
            timestamp_ms: ev.timestamp_ms,
            logged_probs: ev.full_probs.then_some(full),
            segment: ev.segment,
        });
    }
    let positions = events.iter().map(|e| e.position).max().unwrap_or(0) + 1;
    Ok(Log {
        events,
        actions,
        positions,
        context_names,
        segments: if segments.is_empty() {
            vec![String::new()]
        } else {
            segments
        },
        source: source.to_string(),
        format: LogFormat::Banditd,
    })
}

/// One DSJSON line, validated on its own.
#[derive(Debug)]
struct DsjsonLine {
    arm_ids: Vec<String>,
    /// Probabilities aligned with `arm_ids` (0-based local index).
    probs: Vec<f64>,
    /// Local 0-based index of the chosen arm.
    chosen: usize,
    position: usize,
    reward: f64,
    pscore: f64,
    features: Vec<(String, f64)>,
    timestamp_ms: Option<u64>,
    /// `p` is the policy's whole vector (not only the chosen arm's).
    full_probs: bool,
    /// `c.segment` ("" when absent).
    segment: String,
}

fn parse_dsjson_line(
    text: &str,
    line: usize,
    file: &str,
    campaign: &mut Option<String>,
) -> Result<DsjsonLine, OpeError> {
    let err = |field: &str, message: String| {
        parse_error(
            file,
            line,
            (!field.is_empty()).then(|| field.to_string()),
            message,
        )
    };
    let v: Value =
        serde_json::from_str(text).map_err(|e| err("", format!("not a JSON object: {e}")))?;
    let field = |path: &str| -> Result<&Value, OpeError> {
        let mut cur = &v;
        for key in path.split('.') {
            cur = cur
                .get(key)
                .ok_or_else(|| err(path, format!("missing field `{path}`")))?;
        }
        Ok(cur)
    };
    let number = |path: &str| -> Result<f64, OpeError> {
        match field(path)?.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(err(path, "not a finite number".to_string())),
        }
    };
    let integer = |val: &Value, path: &str| -> Result<u64, OpeError> {
        val.as_u64()
            .ok_or_else(|| err(path, "not a non-negative integer".to_string()))
    };

    let reward = -number("_label_cost")?;
    let pscore = number("_label_probability")?;
    if !(pscore > 0.0 && pscore <= 1.0) {
        return Err(err(
            "_label_probability",
            format!("{pscore} is not a probability in (0, 1]"),
        ));
    }
    let label_action = integer(field("_label_Action")?, "_label_Action")?;
    let label_index = integer(field("_labelIndex")?, "_labelIndex")?;
    if label_action == 0 || label_index + 1 != label_action {
        return Err(err(
            "_labelIndex",
            format!("_labelIndex {label_index} is not _label_Action {label_action} - 1"),
        ));
    }

    let multi = field("c._multi")?
        .as_array()
        .ok_or_else(|| err("c._multi", "not an array".to_string()))?;
    let mut arm_ids: Vec<String> = Vec::with_capacity(multi.len());
    for (i, m) in multi.iter().enumerate() {
        let path = format!("c._multi[{i}].arm");
        let id = m
            .get("arm")
            .and_then(Value::as_str)
            .ok_or_else(|| err(&path, "missing or not a string".to_string()))?;
        if arm_ids.iter().any(|a| a == id) {
            return Err(err(&path, format!("arm `{id}` appears twice")));
        }
        arm_ids.push(id.to_string());
    }
    let k = arm_ids.len();
    if k == 0 {
        return Err(err("c._multi", "no arms".to_string()));
    }

    let a = field("a")?
        .as_array()
        .ok_or_else(|| err("a", "not an array".to_string()))?;
    let p = field("p")?
        .as_array()
        .ok_or_else(|| err("p", "not an array".to_string()))?;
    if a.len() != k || p.len() != k {
        return Err(err(
            "a",
            format!(
                "`a` has {} and `p` {} entries, but there are {k} arms",
                a.len(),
                p.len()
            ),
        ));
    }
    let mut probs = vec![f64::NAN; k];
    let mut sum = 0.0;
    for (i, (ai, pi)) in a.iter().zip(p).enumerate() {
        let action = integer(ai, &format!("a[{i}]"))? as usize;
        if action == 0 || action > k || !probs[action - 1].is_nan() {
            return Err(err(
                &format!("a[{i}]"),
                format!("`a` is not a permutation of 1..={k}"),
            ));
        }
        let prob = match pi.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => x,
            _ => {
                return Err(err(
                    &format!("p[{i}]"),
                    "not a probability in [0, 1]".to_string(),
                ))
            }
        };
        probs[action - 1] = prob;
        sum += prob;
    }
    if sum > 1.0 + 1e-9 {
        return Err(err("p", format!("the probabilities sum to {sum} > 1")));
    }
    if label_action as usize > k {
        return Err(err(
            "_label_Action",
            format!("action {label_action} but only {k} arms"),
        ));
    }
    let chosen = label_action as usize - 1;
    if (probs[chosen] - pscore).abs() > 1e-12 {
        return Err(err(
            "_label_probability",
            format!(
                "{pscore} differs from p = {} of the chosen action {label_action}",
                probs[chosen]
            ),
        ));
    }

    let segment = match v.get("c").and_then(|c| c.get("segment")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(err("c.segment", "not a string".to_string())),
    };
    let mut features = Vec::new();
    if let Some(f) = v.get("c").and_then(|c| c.get("features")) {
        let obj = f
            .as_object()
            .ok_or_else(|| err("c.features", "not an object".to_string()))?;
        for (name, val) in obj {
            match val.as_f64() {
                Some(x) if x.is_finite() => features.push((name.clone(), x)),
                _ => {
                    return Err(err(
                        &format!("c.features.{name}"),
                        "not a finite number".to_string(),
                    ))
                }
            }
        }
    }

    let timestamp_ms = match v.get("Timestamp") {
        None | Some(Value::Null) => None,
        Some(t) => {
            let s = t
                .as_str()
                .ok_or_else(|| err("Timestamp", "not a string".to_string()))?;
            Some(
                parse_rfc3339_ms(s)
                    .ok_or_else(|| err("Timestamp", format!("`{s}` is not an RFC 3339 time")))?,
            )
        }
    };

    let mut position = 0;
    let mut full_probs = true;
    if let Some(b) = v.get("_banditd") {
        if b.get("outcome").and_then(Value::as_str) == Some("pending") {
            return Err(err(
                "_banditd.outcome",
                "the decision's outcome is not known yet (pending): export without pending decisions"
                    .to_string(),
            ));
        }
        if b.get("probabilities").and_then(Value::as_str) == Some("chosen-only") {
            full_probs = false;
        }
        if let Some(pos) = b.get("position") {
            position = integer(pos, "_banditd.position")? as usize;
        }
        if let Some(c) = b.get("campaign") {
            let c = c
                .as_str()
                .ok_or_else(|| err("_banditd.campaign", "not a string".to_string()))?;
            match campaign {
                None => *campaign = Some(c.to_string()),
                Some(first) if first != c => {
                    return Err(err(
                        "_banditd.campaign",
                        format!("campaign `{c}`, but the log began with `{first}`: evaluate one campaign at a time"),
                    ))
                }
                Some(_) => {}
            }
        }
    }

    Ok(DsjsonLine {
        arm_ids,
        probs,
        chosen,
        position,
        reward,
        pscore,
        features,
        timestamp_ms,
        full_probs,
        segment,
    })
}

/// Milliseconds since the Unix epoch of an RFC 3339 time such as
/// `2024-05-01T12:34:56.789Z` or `2024-05-01T14:34:56+02:00`; `None` when
/// malformed or before 1970.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
