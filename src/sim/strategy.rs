//! Strategies: who picks the offer for each simulated customer.
//!
//! Owns the strategy list and the deciders. Every strategy but the oracle
//! runs through a real in-memory [`Engine`] with a manual clock,
//! the code the daemon serves with: uniform, ε-greedy, Thompson sampling
//! campaign-wide and per segment, LinUCB, and the A/B designs (uniform
//! campaigns whose losers are retired once the test concludes, see
//! `abrun`). It decides and learns; it does not draw customers or keep
//! metrics (see `population` and `runner`).

use super::abrun::{self, AbUnit, Design, Plan};
use super::abtest;
use super::population::Customer;
use super::scenario::Scenario;
use crate::campaign::{ArmSpec, CampaignSpec, PolicySpec, Pooling, DEFAULT_EXPLORATION_FLOOR};
use crate::engine::{ChooseRequest, Clock, Engine, EngineOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The strategies the simulator compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StrategyKind {
    AbTest,
    Uniform,
    ThompsonCampaign,
    ThompsonSegment,
    LinUcb,
    EpsilonGreedy,
    Oracle,
    // After the others, so that their seeds (derived from the discriminant)
    // stay what they were.
    AbSequential,
    TestAndRoll,
    AbSegment,
    ThompsonValue,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 11] = [
        StrategyKind::AbTest,
        StrategyKind::AbSequential,
        StrategyKind::TestAndRoll,
        StrategyKind::AbSegment,
        StrategyKind::Uniform,
        StrategyKind::ThompsonCampaign,
        StrategyKind::ThompsonValue,
        StrategyKind::ThompsonSegment,
        StrategyKind::LinUcb,
        StrategyKind::EpsilonGreedy,
        StrategyKind::Oracle,
    ];

    /// Short name used on the command line and in metrics.csv.
    pub fn key(self) -> &'static str {
        match self {
            StrategyKind::AbTest => "ab_test",
            StrategyKind::AbSequential => "ab_sequential",
            StrategyKind::TestAndRoll => "test_and_roll",
            StrategyKind::AbSegment => "ab_segment",
            StrategyKind::Uniform => "uniform",
            StrategyKind::ThompsonCampaign => "thompson",
            StrategyKind::ThompsonValue => "thompson_value",
            StrategyKind::ThompsonSegment => "thompson_segment",
            StrategyKind::LinUcb => "linucb",
            StrategyKind::EpsilonGreedy => "epsilon_greedy",
            StrategyKind::Oracle => "oracle",
        }
    }

    /// Plain-words name for reports.
    pub fn label(self) -> &'static str {
        match self {
            StrategyKind::AbTest => "A/B test, fixed horizon (Holm)",
            StrategyKind::AbSequential => "A/B test, sequential (O'Brien-Fleming)",
            StrategyKind::TestAndRoll => "test & roll (Feit-Berman)",
            StrategyKind::AbSegment => "A/B test per segment (sequential)",
            StrategyKind::Uniform => "uniform split forever",
            StrategyKind::ThompsonCampaign => "Thompson sampling (campaign-wide)",
            StrategyKind::ThompsonValue => "Thompson on revenue (rate x value)",
            StrategyKind::ThompsonSegment => "Thompson sampling per segment",
            StrategyKind::LinUcb => "LinUCB on customer features",
            StrategyKind::EpsilonGreedy => "epsilon-greedy (10%)",
            StrategyKind::Oracle => "oracle (knows the true rates)",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == s)
    }

    /// The default set for a scenario: everything, LinUCB only with
    /// features, the per-segment A/B test only with several segments.
    pub fn defaults_for(scenario: &Scenario) -> Vec<Self> {
        Self::ALL
            .into_iter()
            .filter(|k| *k != StrategyKind::LinUcb || !scenario.features.is_empty())
            .filter(|k| *k != StrategyKind::AbSegment || scenario.segments.len() > 1)
            .filter(|k| *k != StrategyKind::ThompsonValue || scenario.campaign.compare_value)
            // A/B designs show one offer per customer: no pages of slots.
            .filter(|k| k.design().is_none() || scenario.campaign.slots == 1)
            .collect()
    }

    /// A learning policy (where a holdout applies): not an A/B design, the
    /// uniform split or the oracle.
    pub fn is_bandit(self) -> bool {
        matches!(
            self,
            StrategyKind::ThompsonCampaign
                | StrategyKind::ThompsonValue
                | StrategyKind::ThompsonSegment
                | StrategyKind::LinUcb
                | StrategyKind::EpsilonGreedy
        )
    }

    /// The A/B design this strategy runs, if it is one.
    pub fn design(self) -> Option<Design> {
        match self {
            StrategyKind::AbTest => Some(Design::Fixed),
            StrategyKind::AbSequential | StrategyKind::AbSegment => Some(Design::Sequential),
            StrategyKind::TestAndRoll => Some(Design::TestAndRoll),
            _ => None,
        }
    }
}

/// What a decider picked for one customer.
pub struct Pick {
    /// The offers on the customer's page, slot by slot (one for a
    /// scenario without slots).
    pub slate: Vec<usize>,
    /// A holdout decision (uniform, not learned from).
    pub holdout: bool,
    /// The engine's decision id (`None` for the oracle, which learns nothing).
    pub decision: Option<Arc<str>>,
}

/// Run-time knowledge the deciders share (no true rates except for the oracle).
pub struct Setup<'a> {
    pub scenario: &'a Scenario,
    /// Mean and sd of each feature (a feature pipeline's standardisation).
    pub feature_stats: Vec<(f64, f64)>,
    /// Baseline conversion rate for the A/B power calculation.
    pub baseline_rate: f64,
    /// Minimum detectable relative lift for the A/B test.
    pub mde: f64,
    /// The A/B designs' plans, computed when a design first needs them
    /// (the O'Brien–Fleming boundaries take a numerical integration).
    plans: std::sync::OnceLock<AbPlans>,
}

/// Every A/B design planned for a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct AbPlans {
    pub fixed: Plan,
    pub sequential: Plan,
    pub test_and_roll: Plan,
    /// The per-segment test: one sequential plan per segment.
    pub per_segment: Vec<Plan>,
}

impl AbPlans {
    pub fn new(scenario: &Scenario, baseline: f64, mde: f64) -> AbPlans {
        let k = scenario.offers.len();
        let total = scenario.total_customers();
        let s = &scenario.ab;
        let design = abtest::obrien_fleming(
            s.looks,
            abtest::corrected_alpha(abrun::ALPHA, k),
            abrun::POWER,
        );
        let plan = |d, customers| Plan::new(d, k, customers, baseline, mde, s, &design);
        AbPlans {
            fixed: plan(Design::Fixed, total),
            sequential: plan(Design::Sequential, total),
            test_and_roll: plan(Design::TestAndRoll, total),
            per_segment: scenario
                .segments
                .iter()
                .map(|g| plan(Design::Sequential, (g.share * total as f64) as u64))
                .collect(),
        }
    }

    /// The plans a strategy runs: one per unit (none for a bandit).
    pub fn of(&self, kind: StrategyKind) -> Vec<Plan> {
        match kind {
            StrategyKind::AbTest => vec![self.fixed.clone()],
            StrategyKind::AbSequential => vec![self.sequential.clone()],
            StrategyKind::TestAndRoll => vec![self.test_and_roll.clone()],
            StrategyKind::AbSegment => self.per_segment.clone(),
            _ => Vec::new(),
        }
    }
}

impl<'a> Setup<'a> {
    /// What every strategy of `scenario` is set up from, measured on a
    /// sample of its customers.
    pub fn new(scenario: &'a Scenario, mde: f64) -> Self {
        let (feature_stats, baseline_rate) =
            super::population::Population::new(scenario).sample_stats();
        Setup {
            scenario,
            feature_stats,
            baseline_rate,
            mde,
            plans: std::sync::OnceLock::new(),
        }
    }

    /// The A/B designs' plans.
    pub fn plans(&self) -> &AbPlans {
        self.plans
            .get_or_init(|| AbPlans::new(self.scenario, self.baseline_rate, self.mde))
    }

    /// The plans, if a design has needed them.
    pub fn plans_if_made(&self) -> Option<&AbPlans> {
        self.plans.get()
    }
}

type SimResult<T> = Result<T, crate::Error>;

/// The A/B tests of a strategy while they run: one unit per campaign.
struct AbRunning {
    plans: Vec<Plan>,
    units: Vec<AbUnit>,
    /// Segment tags of the stages (shared by the units).
    tags: Vec<String>,
    /// One unit per segment (the customer's segment picks its test).
    per_segment: bool,
}

/// A strategy backed by a real in-memory [`Engine`], moved
/// through simulated time by a manual clock.
pub struct EngineDecider {
    engine: Engine,
    clock: Arc<AtomicU64>,
    per_segment: bool,
    /// Some offer has a cap (the campaign may have nothing left to show).
    capped: bool,
    contextual: bool,
    next_expiry: u64,
    timeout_ms: u64,
    /// One request reused for every customer (no allocation per decision).
    request: ChooseRequest,
    ab: Option<AbRunning>,
    /// The engine campaigns (one per segment for the per-segment A/B test).
    campaigns: Vec<String>,
}

pub enum Decider {
    Engine(Box<EngineDecider>),
    /// Knows the true rates; a yardstick, not a policy, so it needs no engine.
    Oracle,
}

const CAMPAIGN: &str = "sim";

impl Decider {
    /// With `logged`, the engine keeps a decision log (over an in-memory
    /// store) for [`Decider::write_log`].
    pub fn new(kind: StrategyKind, setup: &Setup, seed: u64, logged: bool) -> SimResult<Self> {
        let s = setup.scenario;
        let policy = match kind {
            StrategyKind::Oracle => return Ok(Decider::Oracle),
            StrategyKind::AbTest
            | StrategyKind::AbSequential
            | StrategyKind::TestAndRoll
            | StrategyKind::AbSegment
            | StrategyKind::Uniform => PolicySpec::Uniform,
            StrategyKind::EpsilonGreedy => PolicySpec::EpsilonGreedy { epsilon: 0.1 },
            StrategyKind::ThompsonCampaign
            | StrategyKind::ThompsonSegment
            | StrategyKind::ThompsonValue => PolicySpec::Thompson {
                prior_alpha: 1.0,
                prior_beta: 1.0,
                pooling: s.campaign.pooling.unwrap_or(Pooling::EmpiricalBayes),
                exploration_floor: s
                    .campaign
                    .exploration_floor
                    .unwrap_or(DEFAULT_EXPLORATION_FLOOR),
            },
            StrategyKind::LinUcb => PolicySpec::LinUcb {
                alpha: 0.5,
                lambda: 1.0,
                epsilon: 0.0,
                features: s.features.clone(),
                missing_zero: false,
            },
        };
        let plans = if kind.design().is_some() {
            setup.plans().of(kind)
        } else {
            Vec::new()
        };
        let per_segment_ab = kind == StrategyKind::AbSegment;
        let campaigns: Vec<String> = if per_segment_ab {
            (0..s.segments.len())
                .map(|i| format!("{CAMPAIGN}-s{i}"))
                .collect()
        } else {
            vec![CAMPAIGN.to_string()]
        };
        let ab = (!plans.is_empty()).then(|| {
            let looks = plans.iter().map(|p| p.looks.len()).max().unwrap_or(1);
            AbRunning {
                units: campaigns
                    .iter()
                    .map(|c| AbUnit::new(c.clone(), looks))
                    .collect(),
                plans,
                tags: abrun::stage_tags(looks),
                per_segment: per_segment_ab,
            }
        });
        let clock = Arc::new(AtomicU64::new(0));
        let options = EngineOptions {
            seed: Some(seed),
            clock: Clock::Manual(clock.clone()),
            ..EngineOptions::default()
        };
        let engine = if logged {
            let mut options = options;
            // Everything the run decides, however long it lasts.
            options.journal.decision_log = crate::journal::log::LogOptions {
                retention_ms: (u64::from(s.days) + 2) * 86_400_000,
                max_bytes: u64::MAX,
            };
            Engine::open(Arc::new(crate::store::MemoryStore::new()), options)?
        } else {
            Engine::in_memory(options)
        };
        let timeout_seconds = s.delay.attribution_window_minutes * 60;
        for id in &campaigns {
            engine.create_campaign(CampaignSpec {
                id: id.clone(),
                arms: s
                    .offers
                    .iter()
                    .map(|o| ArmSpec {
                        id: o.id.clone(),
                        value: match (kind, o.revenue) {
                            (StrategyKind::ThompsonValue, Some(r)) if r > 0.0 => r,
                            _ => 1.0,
                        },
                        budget: o.budget,
                        ..ArmSpec::default()
                    })
                    .collect(),
                reward_timeout_seconds: timeout_seconds,
                default_reward: 0.0,
                decay_half_life_seconds: match kind {
                    StrategyKind::ThompsonCampaign
                    | StrategyKind::ThompsonValue
                    | StrategyKind::ThompsonSegment
                    | StrategyKind::EpsilonGreedy => s.campaign.decay_half_life_seconds,
                    _ => None,
                },
                policy: policy.clone(),
                holdout_fraction: if kind.is_bandit() {
                    s.campaign.holdout_fraction
                } else {
                    0.0
                },
            })?;
        }
        let contextual = kind == StrategyKind::LinUcb;
        Ok(Decider::Engine(Box::new(EngineDecider {
            engine,
            clock,
            per_segment: kind == StrategyKind::ThompsonSegment,
            capped: s.offers.iter().any(|o| !o.budget.is_none()),
            contextual,
            next_expiry: 60_000,
            timeout_ms: u64::from(timeout_seconds) * 1000,
            request: ChooseRequest {
                campaign_id: campaigns[0].clone(),
                segment: String::new(),
                context: if contextual {
                    s.features.iter().map(|f| (f.clone(), 0.0)).collect()
                } else {
                    Vec::new()
                },
                decision_id: None,
                count: s.campaign.slots,
            },
            ab,
            campaigns,
        })))
    }

    /// Moves simulated time to `now_ms`: once a simulated minute, the engine
    /// expires overdue decisions (learning their default reward) and the A/B
    /// test checks whether its results are in.
    pub fn advance(&mut self, now_ms: u64) -> SimResult<()> {
        let Decider::Engine(d) = self else {
            return Ok(());
        };
        d.clock.store(now_ms, Ordering::Relaxed);
        if now_ms >= d.next_expiry {
            d.engine.expire_due()?;
            d.next_expiry = now_ms + 60_000;
            if let Some(ab) = d.ab.as_mut() {
                for (unit, plan) in ab.units.iter_mut().zip(&ab.plans) {
                    unit.look(plan, &d.engine, &ab.tags, now_ms)?;
                }
            }
        }
        Ok(())
    }

    /// Picks an offer for `c`, whose true probabilities are `probs` (only
    /// the oracle looks at them).
    pub fn choose(&mut self, setup: &Setup, c: &Customer, probs: &[f64]) -> SimResult<Pick> {
        let slots = setup.scenario.campaign.slots;
        let Decider::Engine(d) = self else {
            return Ok(Pick {
                slate: top_offers(probs, slots),
                holdout: false,
                decision: None,
            });
        };
        let segment = if d.per_segment {
            setup.scenario.segments[c.segment].name.as_str()
        } else if let Some(ab) = d.ab.as_mut() {
            let u = if ab.per_segment { c.segment } else { 0 };
            if ab.per_segment {
                d.request.campaign_id.clear();
                d.request.campaign_id.push_str(&ab.units[u].campaign);
            }
            match ab.units[u].assign(&ab.plans[u], c.t_ms, d.timeout_ms) {
                Some(stage) => ab.tags[stage].as_str(),
                None => "",
            }
        } else {
            ""
        };
        d.request.segment.clear();
        d.request.segment.push_str(segment);
        if d.contextual {
            for ((slot, x), (m, sd)) in d
                .request
                .context
                .iter_mut()
                .zip(&c.x)
                .zip(&setup.feature_stats)
            {
                slot.1 = (x - m) / sd;
            }
        }
        let choice = match d.engine.choose(&d.request) {
            Ok(c) => c,
            // Every arm the campaign may still show is capped (an A/B
            // test that rolled out a capped offer): the ad server shows
            // its default, the scenario's first uncapped offer, without a
            // decision (nothing is learned).
            Err(crate::Error::ResourceExhausted(_)) if d.capped => {
                return Ok(Pick {
                    slate: fallback_page(setup.scenario),
                    holdout: false,
                    decision: None,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(Pick {
            slate: choice.slate.iter().map(|s| s.arm).collect(),
            holdout: choice.holdout,
            decision: Some(choice.decision_id),
        })
    }

    /// Reports a conversion inside the attribution window. Non-conversions
    /// are never reported: the engine learns them when the reward timeout
    /// passes, as it does in production.
    pub fn convert(&mut self, decision: &str, slot: usize) -> SimResult<()> {
        if let Decider::Engine(d) = self {
            match d.engine.reward_slot(decision, slot, 1.0) {
                Ok(_) | Err(crate::Error::FailedPrecondition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes the engine's decision log to `path` as DSJSON (the oracle
    /// decides nothing and writes an empty file).
    pub fn write_log(&self, path: &std::path::Path) -> SimResult<()> {
        use std::io::Write;
        let io = |e: std::io::Error| {
            crate::Error::InvalidArgument(format!("cannot write {}: {e}", path.display()))
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        if let Decider::Engine(d) = self {
            for campaign in &d.campaigns {
                let mut failed = None;
                d.engine
                    .export_decisions(campaign, 0, None, false, &mut |h, r| match writeln!(
                        out,
                        "{}",
                        crate::ope::write::dsjson_line(h, &r)
                    ) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    })?;
                if let Some(e) = failed {
                    return Err(io(e));
                }
            }
        }
        out.flush().map_err(io)
    }

    /// The last customer has arrived: an A/B test still filling a stage
    /// analyses it as it is once its outcomes are in.
    pub fn horizon_ends(&mut self, now_ms: u64) {
        if let Decider::Engine(d) = self {
            if let Some(ab) = d.ab.as_mut() {
                for u in &mut ab.units {
                    u.horizon_ends(now_ms, d.timeout_ms);
                }
            }
        }
    }

    /// The A/B tests' units (empty for a bandit).
    pub fn ab_units(&self) -> Vec<AbUnit> {
        match self {
            Decider::Engine(d) => d.ab.as_ref().map_or(Vec::new(), |ab| ab.units.clone()),
            Decider::Oracle => Vec::new(),
        }
    }
}

/// What an ad server shows when a campaign has nothing left to show: the
/// first offer without a cap (a scenario keeps one).
pub fn fallback_offer(s: &Scenario) -> usize {
    s.offers
        .iter()
        .position(|o| o.budget.is_none())
        .unwrap_or(0)
}

/// What the ad server fills a page with when the campaign cannot: the
/// scenario's uncapped offers first, then the others, in file order.
pub fn fallback_page(s: &Scenario) -> Vec<usize> {
    let mut order: Vec<usize> = (0..s.offers.len()).collect();
    order.sort_by_key(|&o| !s.offers[o].budget.is_none());
    order.truncate(s.campaign.slots);
    order
}

/// The `k` offers with the highest values, best first (the first on ties):
/// the oracle's page, which pairs the likeliest offers with the slots most
/// looked at when attention falls with the slot.
pub fn top_offers(v: &[f64], k: usize) -> Vec<usize> {
    if k <= 1 {
        return vec![argmax(v)];
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, x)| {
            if *x > bv {
                (i, *x)
            } else {
                (bi, bv)
            }
        })
        .0
}
