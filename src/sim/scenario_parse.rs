//! Parsing and validating the header, offers and segments of a scenario
//! file (the format is documented in [`super::scenario`]).
//!
//! Owns the raw serde types mirroring the TOML and the line-numbered error
//! helper; the response model, delay and drift are checked in
//! `scenario_model`. No randomness, no engine.

use super::scenario::{Offer, Scenario, ScenarioError, Segment, LIFECYCLES};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// One segment's `[rates.<segment>]` table: offer → rate.
pub(super) type RateRow = BTreeMap<String, Spanned<f64>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: String,
    pub(super) customers_per_day: Spanned<u64>,
    pub(super) days: Spanned<u32>,
    pub(super) segments: Vec<RawSegment>,
    pub(super) offers: Vec<RawOffer>,
    pub(super) rates: Option<BTreeMap<String, Spanned<RateRow>>>,
    pub(super) logistic: Option<BTreeMap<String, Spanned<RawLogistic>>>,
    pub(super) delay: Option<Spanned<RawDelay>>,
    #[serde(default)]
    pub(super) drift: Vec<Spanned<RawDrift>>,
    pub(super) campaign: Option<RawCampaign>,
    pub(super) ab: Option<RawAb>,
}

/// `[ab]`: the A/B designs' settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAb {
    pub(super) control: Option<Spanned<String>>,
    pub(super) looks: Option<Spanned<i64>>,
    pub(super) max_test_share: Option<Spanned<f64>>,
    pub(super) prior_mean: Option<Spanned<f64>>,
    pub(super) prior_sd: Option<Spanned<f64>>,
}

/// `[campaign]`: settings applied to every bandit strategy's campaign.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCampaign {
    pub(super) decay_half_life_hours: Option<Spanned<f64>>,
    pub(super) exploration_floor: Option<Spanned<f64>>,
    pub(super) segment_prior_strength: Option<Spanned<f64>>,
    pub(super) holdout_fraction: Option<Spanned<f64>>,
    pub(super) compare_value: Option<bool>,
    pub(super) slots: Option<Spanned<i64>>,
    pub(super) slot_attention: Option<Spanned<Vec<f64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    pub(super) name: Spanned<String>,
    pub(super) share: Spanned<f64>,
    pub(super) age_band: Option<String>,
    pub(super) region: Option<String>,
    pub(super) income: Option<String>,
    pub(super) lifecycle: Option<Spanned<String>>,
    pub(super) channel: Option<String>,
    pub(super) device: Option<String>,
    pub(super) features: Option<Spanned<BTreeMap<String, Spanned<f64>>>>,
    pub(super) feature_noise: Option<Spanned<Noise>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOffer {
    pub(super) id: Spanned<String>,
    pub(super) revenue: Option<Spanned<f64>>,
    pub(super) max_impressions: Option<Spanned<i64>>,
    pub(super) max_conversions: Option<Spanned<i64>>,
    pub(super) cap_period: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogistic {
    pub(super) intercept: f64,
    #[serde(default)]
    pub(super) weights: BTreeMap<String, Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelay {
    pub(super) kind: String,
    pub(super) mean_minutes: Option<f64>,
    pub(super) minutes: Option<f64>,
    pub(super) attribution_window_minutes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDrift {
    pub(super) day: u32,
    pub(super) offer: String,
    pub(super) segment: Option<String>,
    pub(super) multiply: f64,
}

pub(super) struct Ctx<'a> {
    pub(super) src: &'a str,
}

impl Ctx<'_> {
    pub(super) fn line(&self, offset: usize) -> usize {
        self.src
            .get(..offset)
            .map_or(0, |s| s.bytes().filter(|b| *b == b'\n').count())
            + 1
    }
    pub(super) fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        why: impl AsRef<str>,
    ) -> Result<T, ScenarioError> {
        Err(ScenarioError(format!(
            "line {}: {field}: {}",
            self.line(span.start),
            why.as_ref()
        )))
    }
}

/// `feature_noise`: one sd for every feature, or a table feature → sd.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Noise {
    All(f64),
    Per(BTreeMap<String, f64>),
}

/// Parses and validates scenario text.
pub(super) fn parse(src: &str) -> Result<Scenario, ScenarioError> {
    let raw: Raw =
        toml::from_str(src).map_err(|e| ScenarioError(e.to_string().trim_end().to_string()))?;
    let cx = Ctx { src };
    let name = raw.name.get_ref().clone();
    if crate::campaign::validate_id("name", &name).is_err()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return cx.err(raw.name.span(), "name", "must be 1 to 128 of [A-Za-z0-9_-]");
    }
    let cpd = *raw.customers_per_day.get_ref();
    if !(1..=10_000_000).contains(&cpd) {
        return cx.err(
            raw.customers_per_day.span(),
            "customers_per_day",
            "must be in 1..=10000000",
        );
    }
    let days = *raw.days.get_ref();
    if !(1..=3650).contains(&days) {
        return cx.err(raw.days.span(), "days", "must be in 1..=3650");
    }
    // Offers.
    let mut offers = Vec::new();
    for (i, o) in raw.offers.iter().enumerate() {
        let id = o.id.get_ref();
        if crate::campaign::validate_id("id", id).is_err()
            || offers.iter().any(|x: &Offer| &x.id == id)
        {
            return cx.err(
                o.id.span(),
                &format!("offers[{i}].id"),
                format!("{id:?} is empty, too long or duplicated"),
            );
        }
        let revenue = match &o.revenue {
            Some(r) if !(r.get_ref().is_finite() && *r.get_ref() >= 0.0) => {
                return cx.err(
                    r.span(),
                    &format!("offers[{i}].revenue"),
                    "must be a finite number >= 0",
                );
            }
            r => r.as_ref().map(|r| *r.get_ref()),
        };
        let mut budget = crate::campaign::Budget::default();
        for (field, raw, slot) in [
            (
                "max_impressions",
                &o.max_impressions,
                &mut budget.max_impressions,
            ),
            (
                "max_conversions",
                &o.max_conversions,
                &mut budget.max_conversions,
            ),
        ] {
            if let Some(v) = raw {
                if *v.get_ref() < 1 {
                    return cx.err(v.span(), &format!("offers[{i}].{field}"), "must be >= 1");
                }
                *slot = *v.get_ref() as u64;
            }
        }
        if let Some(p) = &o.cap_period {
            budget.period = match p.get_ref().as_str() {
                "lifetime" => crate::campaign::CapPeriod::Lifetime,
                "day" => crate::campaign::CapPeriod::Day,
                other => {
                    return cx.err(
                        p.span(),
                        &format!("offers[{i}].cap_period"),
                        format!("{other:?} is not \"lifetime\" or \"day\""),
                    )
                }
            };
        }
        offers.push(Offer {
            id: id.clone(),
            revenue,
            budget,
        });
    }
    if !offers.is_empty() && offers.iter().all(|o| !o.budget.is_none()) {
        return Err(ScenarioError(
            "offers: every offer has a cap; leave one uncapped (what customers see once the budgets are spent)".into(),
        ));
    }
    if offers.len() < 2 || offers.len() > crate::campaign::limits::MAX_ARMS {
        return Err(ScenarioError(format!(
            "offers: a scenario needs 2 to {} [[offers]], got {}",
            crate::campaign::limits::MAX_ARMS,
            offers.len()
        )));
    }
    // Segments and features.
    let features: Vec<String> = raw
        .segments
        .iter()
        .flat_map(|s| s.features.iter().flat_map(|f| f.get_ref().keys().cloned()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Some(f) = features.iter().find(|f| {
        *f == crate::campaign::INTERCEPT || crate::campaign::validate_id("feature", f).is_err()
    }) {
        return Err(ScenarioError(format!(
            "segments.features: {f:?} is reserved or not a valid feature name"
        )));
    }
    if features.len() > crate::campaign::limits::MAX_FEATURES {
        return Err(ScenarioError(format!(
            "segments.features: at most {} distinct features, got {}",
            crate::campaign::limits::MAX_FEATURES,
            features.len()
        )));
    }
    let mut segments: Vec<Segment> = Vec::new();
    let mut share_sum = 0.0;
    for (i, s) in raw.segments.iter().enumerate() {
        let name = s.name.get_ref();
        if crate::campaign::validate_segment(name).is_err()
            || name.is_empty()
            || segments.iter().any(|x| &x.name == name)
        {
            return cx.err(
                s.name.span(),
                &format!("segments[{i}].name"),
                format!("{name:?} is empty, too long or duplicated"),
            );
        }
        let share = *s.share.get_ref();
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            return cx.err(
                s.share.span(),
                &format!("segments[{i}].share"),
                format!("must be in (0, 1], got {share}"),
            );
        }
        share_sum += share;
        let mut traits = BTreeMap::new();
        for (k, v) in [
            ("age_band", &s.age_band),
            ("region", &s.region),
            ("income", &s.income),
            ("channel", &s.channel),
            ("device", &s.device),
        ] {
            if let Some(v) = v {
                traits.insert(k.to_string(), v.clone());
            }
        }
        if let Some(l) = &s.lifecycle {
            if !LIFECYCLES.contains(&l.get_ref().as_str()) {
                return cx.err(
                    l.span(),
                    &format!("segments[{i}].lifecycle"),
                    format!("{:?} is not one of new, active, at_risk, vip", l.get_ref()),
                );
            }
            traits.insert("lifecycle".into(), l.get_ref().clone());
        }
        let mut fv = Vec::with_capacity(features.len());
        for f in &features {
            match s.features.as_ref().and_then(|t| t.get_ref().get(f)) {
                Some(v) if v.get_ref().is_finite() => fv.push(*v.get_ref()),
                Some(v) => {
                    return cx.err(
                        v.span(),
                        &format!("segments[{i}].features.{f}"),
                        "must be finite",
                    )
                }
                None => {
                    return cx.err(
                        s.name.span(),
                        &format!("segments[{i}].features"),
                        format!(
                            "missing feature {f:?} (every segment must name the same features)"
                        ),
                    )
                }
            }
        }
        let mut feature_noise = vec![0.0; features.len()];
        if let Some(n) = &s.feature_noise {
            let field = format!("segments[{i}].feature_noise");
            match n.get_ref() {
                Noise::All(sd) => feature_noise.iter_mut().for_each(|x| *x = *sd),
                Noise::Per(t) => {
                    for (f, sd) in t {
                        let Some(fi) = features.iter().position(|x| x == f) else {
                            return cx.err(
                                n.span(),
                                &format!("{field}.{f}"),
                                format!("unknown feature {f:?}"),
                            );
                        };
                        feature_noise[fi] = *sd;
                    }
                }
            }
            if feature_noise
                .iter()
                .any(|sd| !(sd.is_finite() && *sd >= 0.0))
            {
                return cx.err(n.span(), &field, "every sd must be a finite number >= 0");
            }
        }
        segments.push(Segment {
            name: name.clone(),
            share,
            traits,
            features: fv,
            feature_noise,
        });
    }
    if segments.is_empty() {
        return Err(ScenarioError(
            "segments: a scenario needs at least one [[segments]]".into(),
        ));
    }
    if (share_sum - 1.0).abs() > 1e-6 {
        return cx.err(
            raw.segments[0].share.span(),
            "segments[*].share",
            format!("shares must sum to 1 (± 1e-6), they sum to {share_sum}"),
        );
    }
    let response = super::scenario_model::response(&cx, &raw, &offers, &segments, &features)?;
    let (delay, drift) =
        super::scenario_model::delay_and_drift(&cx, &raw, &offers, &segments, days)?;
    let campaign = campaign_settings(&cx, raw.campaign.as_ref(), offers.len())?;
    let ab = ab_settings(&cx, raw.ab.as_ref(), &offers)?;
    Ok(Scenario {
        name,
        description: raw.description,
        customers_per_day: cpd,
        days,
        segments,
        offers,
        features,
        response,
        delay,
        drift,
        campaign,
        ab,
    })
}

fn ab_settings(
    cx: &Ctx<'_>,
    raw: Option<&RawAb>,
    offers: &[Offer],
) -> Result<super::abrun::AbSettings, ScenarioError> {
    let mut out = super::abrun::AbSettings::default();
    let Some(raw) = raw else {
        return Ok(out);
    };
    if let Some(c) = &raw.control {
        match offers.iter().position(|o| o.id == *c.get_ref()) {
            Some(i) => out.control = i,
            None => {
                return cx.err(
                    c.span(),
                    "ab.control",
                    format!("unknown offer {:?}", c.get_ref()),
                )
            }
        }
    }
    if let Some(l) = &raw.looks {
        let v = *l.get_ref();
        if !(1..=20).contains(&v) {
            return cx.err(l.span(), "ab.looks", "must be in 1..=20");
        }
        out.looks = v as usize;
    }
    if let Some(m) = &raw.max_test_share {
        let v = *m.get_ref();
        if !(v.is_finite() && v > 0.0 && v <= 1.0) {
            return cx.err(m.span(), "ab.max_test_share", "must be in (0, 1]");
        }
        out.max_test_share = v;
    }
    if let Some(m) = &raw.prior_mean {
        let v = *m.get_ref();
        if !(v.is_finite() && v > 0.0 && v < 1.0) {
            return cx.err(m.span(), "ab.prior_mean", "must be in (0, 1)");
        }
        out.prior_mean = Some(v);
    }
    if let Some(m) = &raw.prior_sd {
        let v = *m.get_ref();
        if !(v.is_finite() && v > 0.0 && v < 1.0) {
            return cx.err(m.span(), "ab.prior_sd", "must be in (0, 1)");
        }
        out.prior_sd = Some(v);
    }
    Ok(out)
}

fn campaign_settings(
    cx: &Ctx<'_>,
    raw: Option<&RawCampaign>,
    offers: usize,
) -> Result<super::scenario::CampaignSettings, ScenarioError> {
    let mut out = super::scenario::CampaignSettings::default();
    let Some(raw) = raw else {
        return Ok(out);
    };
    if let Some(h) = &raw.decay_half_life_hours {
        let v = *h.get_ref();
        if !(v.is_finite() && (1.0 / 60.0..=87_600.0).contains(&v)) {
            return cx.err(
                h.span(),
                "campaign.decay_half_life_hours",
                "must be in [1/60, 87600]",
            );
        }
        out.decay_half_life_seconds = Some((v * 3600.0).round() as u32);
    }
    if let Some(f) = &raw.exploration_floor {
        let v = *f.get_ref();
        if !(v.is_finite() && (0.0..=0.5).contains(&v)) {
            return cx.err(
                f.span(),
                "campaign.exploration_floor",
                "must be in [0, 0.5]",
            );
        }
        out.exploration_floor = Some(v);
    }
    if let Some(m) = &raw.segment_prior_strength {
        let v = *m.get_ref();
        if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
            return cx.err(
                m.span(),
                "campaign.segment_prior_strength",
                "must be in [0, 1e6] (0: no pooling)",
            );
        }
        out.pooling = Some(crate::campaign::Pooling::from_strength(Some(v)));
    }
    if let Some(h) = &raw.holdout_fraction {
        let v = *h.get_ref();
        let max = crate::campaign::MAX_HOLDOUT_FRACTION;
        if !(v.is_finite() && (0.0..=max).contains(&v)) {
            return cx.err(
                h.span(),
                "campaign.holdout_fraction",
                format!("must be in [0, {max}]"),
            );
        }
        out.holdout_fraction = v;
    }
    out.compare_value = raw.compare_value.unwrap_or(false);
    if let Some(k) = &raw.slots {
        let v = *k.get_ref();
        let max = crate::policy::slate::MAX_SLOTS.min(offers) as i64;
        if !(1..=max).contains(&v) {
            return cx.err(
                k.span(),
                "campaign.slots",
                format!("must be in [1, {max}] (at most 16, and at most the offers)"),
            );
        }
        out.slots = v as usize;
        out.slot_attention = (0..out.slots).map(|j| 1.0 / (j + 1) as f64).collect();
    }
    if let Some(a) = &raw.slot_attention {
        let v = a.get_ref();
        if v.len() != out.slots {
            return cx.err(
                a.span(),
                "campaign.slot_attention",
                format!(
                    "needs one share per slot ({} for slots = {}), it has {}",
                    out.slots,
                    out.slots,
                    v.len()
                ),
            );
        }
        if let Some(bad) = v
            .iter()
            .find(|x| !(x.is_finite() && **x > 0.0 && **x <= 1.0))
        {
            return cx.err(
                a.span(),
                "campaign.slot_attention",
                format!("each share must be in (0, 1], found {bad}"),
            );
        }
        out.slot_attention = v.clone();
    }
    Ok(out)
}
