//! Scenario files: the TOML format, parsed and validated into a [`Scenario`].
//!
//! This module owns the scenario format and its validation only; it draws no
//! random numbers and never touches the engine. Every validation error names
//! the field and the line it is on (`line 12: segments[1].share: ...`).
//!
//! # Format
//!
//! ```toml
//! name = "segmented"                 # also the campaign id and the output folder name
//! description = "what it teaches"
//! customers_per_day = 4000
//! days = 14
//!
//! [[segments]]
//! name = "young_mobile"              # passed as `segment` to per-segment strategies
//! share = 0.4                        # shares must sum to 1 ± 1e-6
//! age_band = "18-24"                 # descriptive, optional: age_band, region, income,
//! lifecycle = "active"               #   lifecycle (new|active|at_risk|vip), channel, device
//! features = { recency_days = 5.0, is_mobile = 1.0 }  # numeric; every segment names the same ones
//! feature_noise = 0.5                # sd of Normal noise added to each feature, per customer;
//!                                    #   or a table: { recency_days = 10.0, is_mobile = 0.3 }
//!
//! [[offers]]
//! id = "ten_percent"
//! revenue = 12.5                     # optional, per conversion
//! max_conversions = 2000             # optional caps of every engine strategy's campaign
//! max_impressions = 50000            #   (at least one offer stays uncapped)
//! cap_period = "lifetime"            # lifetime | day (a daily impression cap is paced)
//!
//! # Response model: exactly one of [rates] or [logistic].
//! [rates.young_mobile]               # segment → offer → conversion rate in [0, 1]
//! ten_percent = 0.031
//!
//! [logistic.ten_percent]             # p = sigmoid(intercept + Σ weights[f] · x[f]) on raw features
//! intercept = -3.5
//! weights = { recency_days = -0.02, is_mobile = 0.4 }
//!
//! [delay]
//! kind = "exponential"               # exponential (mean_minutes) | fixed (minutes) | none
//! mean_minutes = 90
//! attribution_window_minutes = 1440  # the campaigns' reward timeout; later conversions are not reported
//!
//! [campaign]                         # every bandit strategy's campaign (all optional)
//! decay_half_life_hours = 72
//! exploration_floor = 0.0001
//! segment_prior_strength = 10        # per-segment Thompson; 0: no pooling
//! holdout_fraction = 0.05            # a uniform holdout, never learned from: the uplift is reported
//! compare_value = true               # also run Thompson on revenue (rate × value) by default
//! slots = 3                          # a page of 3 offers: a ranked slate (Choose with count); no A/B designs
//! slot_attention = [1.0, 0.5, 0.33]  # chance a customer looks at each slot (default 1/(slot+1))
//!
//! [ab]                               # the A/B designs (all optional)
//! control = "ten_percent"            # kept unless another offer beats it significantly (default: the first offer)
//! looks = 5                          # looks of the group-sequential designs (1..=20)
//! max_test_share = 0.5               # a test takes at most this share of its customers
//! prior_mean = 0.03                  # test-and-roll's Normal prior on the rates (default: the baseline)
//! prior_sd = 0.0075                  #   and its sd (default: a quarter of the mean)
//!
//! [[drift]]                          # from day `day` (days count from 0) the rate is multiplied
//! day = 7
//! offer = "ten_percent"
//! segment = "young_mobile"           # optional; all segments when absent
//! multiply = 0.5
//! ```

use std::collections::BTreeMap;

/// Lifecycle stages a segment may declare.
pub const LIFECYCLES: [&str; 4] = ["new", "active", "at_risk", "vip"];

/// A validated scenario. Fields are public so tests can shrink the horizon.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub customers_per_day: u64,
    pub days: u32,
    pub segments: Vec<Segment>,
    pub offers: Vec<Offer>,
    /// Names of the numeric features, in a fixed order (sorted).
    pub features: Vec<String>,
    pub response: Response,
    pub delay: Delay,
    pub drift: Vec<Drift>,
    /// `[campaign]`: settings of every bandit strategy's campaign.
    pub campaign: CampaignSettings,
    /// `[ab]`: settings of the A/B designs.
    pub ab: super::abrun::AbSettings,
}

/// Campaign settings a scenario applies to every bandit strategy (unset:
/// the daemon's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignSettings {
    /// Thompson, per-segment Thompson and ε-greedy (not LinUCB).
    pub decay_half_life_seconds: Option<u32>,
    /// Thompson strategies.
    pub exploration_floor: Option<f64>,
    /// Per-segment Thompson.
    pub pooling: Option<crate::campaign::Pooling>,
    /// The bandit strategies' holdout share (0: none).
    pub holdout_fraction: f64,
    /// Also run value-aware Thompson sampling (arm value = offer revenue)
    /// by default.
    pub compare_value: bool,
    /// Offers on each customer's page (1: one offer; more: a ranked slate
    /// from `Choose` with `count`).
    pub slots: usize,
    /// Per slot, the chance a customer looks at it (default `1/(slot+1)`):
    /// a customer converts on slot j's offer o iff they look at j and their
    /// coin for j is below p(o).
    pub slot_attention: Vec<f64>,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        CampaignSettings {
            decay_half_life_seconds: None,
            exploration_floor: None,
            pooling: None,
            holdout_fraction: 0.0,
            compare_value: false,
            slots: 1,
            slot_attention: vec![1.0],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub share: f64,
    /// Descriptive fields (age_band, region, ...) as written.
    pub traits: BTreeMap<String, String>,
    /// Feature means, indexed like [`Scenario::features`].
    pub features: Vec<f64>,
    /// Per-customer Normal noise sd of each feature (indexed like the features).
    pub feature_noise: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct Offer {
    pub id: String,
    pub revenue: Option<f64>,
    /// Caps every engine strategy's campaign applies to this offer.
    pub budget: crate::campaign::Budget,
}

/// How a customer responds to an offer.
#[derive(Debug, Clone)]
pub enum Response {
    /// `rates[segment][offer]`.
    Rates(Vec<Vec<f64>>),
    /// Per offer: intercept and weights indexed like [`Scenario::features`].
    Logistic(Vec<(f64, Vec<f64>)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DelayKind {
    None,
    Fixed { minutes: f64 },
    Exponential { mean_minutes: f64 },
}

#[derive(Debug, Clone, Copy)]
pub struct Delay {
    pub kind: DelayKind,
    pub attribution_window_minutes: u32,
}

#[derive(Debug, Clone)]
pub struct Drift {
    pub day: u32,
    pub offer: usize,
    pub segment: Option<usize>,
    pub multiply: f64,
}

/// A problem with a scenario file, with the line it is on when known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&src).map_err(|e| ScenarioError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and validates scenario text.
    pub fn parse(src: &str) -> Result<Self, ScenarioError> {
        super::scenario_parse::parse(src)
    }

    /// Customers over the whole horizon.
    pub fn total_customers(&self) -> u64 {
        self.customers_per_day * u64::from(self.days)
    }

    /// Whether any offer has a revenue.
    pub fn has_revenue(&self) -> bool {
        self.offers.iter().any(|o| o.revenue.is_some())
    }
}
