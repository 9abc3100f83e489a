//! Validation of a scenario's response model (`[rates]` or `[logistic]`),
//! `[delay]` and `[[drift]]`, with line-numbered errors.
//!
//! Owns only these checks; the raw types and the rest of the file are in
//! `scenario_parse`. No randomness, no engine.

use super::scenario::{Delay, DelayKind, Drift, Offer, Response, ScenarioError, Segment};
use super::scenario_parse::{Ctx, Raw};

/// Checks `[rates]` / `[logistic]` against the offers, segments and features.
pub(super) fn response(
    cx: &Ctx,
    raw: &Raw,
    offers: &[Offer],
    segments: &[Segment],
    features: &[String],
) -> Result<Response, ScenarioError> {
    let offer_index = |id: &str| offers.iter().position(|o| o.id == id);
    let segment_index = |n: &str| segments.iter().position(|s| s.name == n);
    Ok(match (&raw.rates, &raw.logistic) {
        (Some(rates), None) => {
            let mut table = vec![vec![f64::NAN; offers.len()]; segments.len()];
            for (seg, row) in rates {
                let Some(si) = segment_index(seg) else {
                    return cx.err(
                        row.span(),
                        &format!("rates.{seg}"),
                        format!("unknown segment {seg:?}"),
                    );
                };
                for (offer, rate) in row.get_ref() {
                    let Some(oi) = offer_index(offer) else {
                        return cx.err(
                            rate.span(),
                            &format!("rates.{seg}.{offer}"),
                            format!("unknown offer {offer:?}"),
                        );
                    };
                    let r = *rate.get_ref();
                    if !(0.0..=1.0).contains(&r) {
                        return cx.err(
                            rate.span(),
                            &format!("rates.{seg}.{offer}"),
                            format!("a rate must be in [0, 1], got {r}"),
                        );
                    }
                    table[si][oi] = r;
                }
            }
            for (si, row) in table.iter().enumerate() {
                if let Some(oi) = row.iter().position(|r| r.is_nan()) {
                    let field = format!("rates.{}.{}", segments[si].name, offers[oi].id);
                    return match rates.get(&segments[si].name) {
                        Some(r) => cx.err(
                            r.span(),
                            &field,
                            "missing (every segment needs a rate for every offer)",
                        ),
                        None => Err(ScenarioError(format!(
                            "{field}: missing (every segment needs a rate for every offer)"
                        ))),
                    };
                }
            }
            Response::Rates(table)
        }
        (None, Some(logistic)) => {
            let mut models = vec![None; offers.len()];
            for (offer, m) in logistic {
                let Some(oi) = offer_index(offer) else {
                    return cx.err(
                        m.span(),
                        &format!("logistic.{offer}"),
                        format!("unknown offer {offer:?}"),
                    );
                };
                let m = m.get_ref();
                if !m.intercept.is_finite() {
                    return Err(ScenarioError(format!(
                        "logistic.{offer}.intercept: must be finite"
                    )));
                }
                let mut w = vec![0.0; features.len()];
                for (f, v) in &m.weights {
                    let Some(fi) = features.iter().position(|x| x == f) else {
                        return cx.err(
                            v.span(),
                            &format!("logistic.{offer}.weights.{f}"),
                            format!("unknown feature {f:?}"),
                        );
                    };
                    if !v.get_ref().is_finite() {
                        return cx.err(
                            v.span(),
                            &format!("logistic.{offer}.weights.{f}"),
                            "must be finite",
                        );
                    }
                    w[fi] = *v.get_ref();
                }
                models[oi] = Some((m.intercept, w));
            }
            let mut out = Vec::new();
            for (oi, m) in models.into_iter().enumerate() {
                match m {
                    Some(m) => out.push(m),
                    None => {
                        return Err(ScenarioError(format!(
                            "logistic.{}: missing (every offer needs a model)",
                            offers[oi].id
                        )))
                    }
                }
            }
            Response::Logistic(out)
        }
        _ => {
            return Err(ScenarioError(
                "rates/logistic: give exactly one of [rates] or [logistic]".into(),
            ))
        }
    })
}

/// Checks `[delay]` and every `[[drift]]` event.
pub(super) fn delay_and_drift(
    cx: &Ctx,
    raw: &Raw,
    offers: &[Offer],
    segments: &[Segment],
    days: u32,
) -> Result<(Delay, Vec<Drift>), ScenarioError> {
    let offer_index = |id: &str| offers.iter().position(|o| o.id == id);
    let segment_index = |n: &str| segments.iter().position(|s| s.name == n);
    let delay = match &raw.delay {
        None => Delay {
            kind: DelayKind::None,
            attribution_window_minutes: 60,
        },
        Some(d) => {
            let span = d.span();
            let d = d.get_ref();
            let w = d.attribution_window_minutes;
            if w == 0
                || u64::from(w) * 60
                    > u64::from(crate::campaign::limits::MAX_REWARD_TIMEOUT_SECONDS)
            {
                return cx.err(
                    span,
                    "delay.attribution_window_minutes",
                    "must be in 1..=43200 (30 days)",
                );
            }
            let pos = |v: Option<f64>, f: &str| match v {
                Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => cx.err(
                    span.clone(),
                    f,
                    "required for this kind, a finite number >= 0",
                ),
            };
            let kind = match d.kind.as_str() {
                "none" => DelayKind::None,
                "fixed" => DelayKind::Fixed {
                    minutes: pos(d.minutes, "delay.minutes")?,
                },
                "exponential" => DelayKind::Exponential {
                    mean_minutes: pos(d.mean_minutes, "delay.mean_minutes")?,
                },
                k => {
                    return cx.err(
                        span,
                        "delay.kind",
                        format!("{k:?} is not one of none, fixed, exponential"),
                    )
                }
            };
            Delay {
                kind,
                attribution_window_minutes: w,
            }
        }
    };
    let mut drift = Vec::new();
    for (i, d) in raw.drift.iter().enumerate() {
        let span = d.span();
        let d = d.get_ref();
        let Some(offer) = offer_index(&d.offer) else {
            return cx.err(
                span,
                &format!("drift[{i}].offer"),
                format!("unknown offer {:?}", d.offer),
            );
        };
        let segment = match &d.segment {
            None => None,
            Some(s) => match segment_index(s) {
                Some(si) => Some(si),
                None => {
                    return cx.err(
                        span,
                        &format!("drift[{i}].segment"),
                        format!("unknown segment {s:?}"),
                    )
                }
            },
        };
        if d.day >= days {
            return cx.err(
                span,
                &format!("drift[{i}].day"),
                format!("must be below days ({days}); days count from 0"),
            );
        }
        if !(d.multiply.is_finite() && d.multiply >= 0.0) {
            return cx.err(
                span,
                &format!("drift[{i}].multiply"),
                "must be a finite number >= 0",
            );
        }
        drift.push(Drift {
            day: d.day,
            offer,
            segment,
            multiply: d.multiply,
        });
    }
    Ok((delay, drift))
}
