//! Strategies: who picks the offer for each simulated customer.
//!
//! Owns the strategy list and the deciders. Every strategy but the oracle
//! runs through a real in-memory [`Engine`] with a manual clock,
//! the code the daemon serves with: uniform, ε-greedy, Thompson sampling
//! campaign-wide and per segment, LinUCB, and the A/B test (a uniform
//! campaign whose losers are retired once the test concludes). It decides
//! and learns; it does not draw customers or keep metrics (see `population`
//! and `runner`).

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
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 7] = [
        StrategyKind::AbTest,
        StrategyKind::Uniform,
        StrategyKind::ThompsonCampaign,
        StrategyKind::ThompsonSegment,
        StrategyKind::LinUcb,
        StrategyKind::EpsilonGreedy,
        StrategyKind::Oracle,
    ];

    /// Short name used on the command line and in metrics.csv.
    pub fn key(self) -> &'static str {
        match self {
            StrategyKind::AbTest => "ab_test",
            StrategyKind::Uniform => "uniform",
            StrategyKind::ThompsonCampaign => "thompson",
            StrategyKind::ThompsonSegment => "thompson_segment",
            StrategyKind::LinUcb => "linucb",
            StrategyKind::EpsilonGreedy => "epsilon_greedy",
            StrategyKind::Oracle => "oracle",
        }
    }

    /// Plain-words name for reports.
    pub fn label(self) -> &'static str {
        match self {
            StrategyKind::AbTest => "A/B test then roll out",
            StrategyKind::Uniform => "uniform split forever",
            StrategyKind::ThompsonCampaign => "Thompson sampling (campaign-wide)",
            StrategyKind::ThompsonSegment => "Thompson sampling per segment",
            StrategyKind::LinUcb => "LinUCB on customer features",
            StrategyKind::EpsilonGreedy => "epsilon-greedy (10%)",
            StrategyKind::Oracle => "oracle (knows the true rates)",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == s)
    }

    /// The default set for a scenario: everything, LinUCB only with features.
    pub fn defaults_for(scenario: &Scenario) -> Vec<Self> {
        Self::ALL
            .into_iter()
            .filter(|k| *k != StrategyKind::LinUcb || !scenario.features.is_empty())
            .collect()
    }
}

/// What a decider picked for one customer.
pub struct Pick {
    pub offer: usize,
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
        }
    }
}

type SimResult<T> = Result<T, crate::Error>;

/// The A/B test as a marketer runs it on banditd: a uniform campaign whose
/// first `per_arm × offers` decisions are tagged with segment
/// [`AB_SEGMENT`]; once the last of them is resolved (rewarded or timed
/// out), the test reads that segment's counts from the engine's stats,
/// runs the z-tests, and retires every offer but the winner.
#[derive(Debug, Clone, Default)]
pub struct AbState {
    /// Customers per offer in the test phase (the power calculation).
    pub per_arm: u64,
    /// Test customers assigned so far.
    pub assigned: u64,
    /// Per offer: conversions and customers in the test, from the engine.
    pub successes: Vec<u64>,
    pub trials: Vec<u64>,
    pub decision: Option<abtest::AbDecision>,
    /// Simulated time (ms) of the decision.
    pub decided_at: Option<u64>,
    /// Deadline of the last test decision: its outcome is known after it.
    closes_at: Option<u64>,
}

/// Segment of the A/B test's test-phase decisions.
pub const AB_SEGMENT: &str = "ab-test";

/// A strategy backed by a real in-memory [`Engine`], moved
/// through simulated time by a manual clock.
pub struct EngineDecider {
    engine: Engine,
    clock: Arc<AtomicU64>,
    per_segment: bool,
    contextual: bool,
    next_expiry: u64,
    timeout_ms: u64,
    /// One request reused for every customer (no allocation per decision).
    request: ChooseRequest,
    ab: Option<AbState>,
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
        let k = s.offers.len();
        let policy = match kind {
            StrategyKind::Oracle => return Ok(Decider::Oracle),
            StrategyKind::AbTest | StrategyKind::Uniform => PolicySpec::Uniform,
            StrategyKind::EpsilonGreedy => PolicySpec::EpsilonGreedy { epsilon: 0.1 },
            StrategyKind::ThompsonCampaign | StrategyKind::ThompsonSegment => {
                PolicySpec::Thompson {
                    prior_alpha: 1.0,
                    prior_beta: 1.0,
                    pooling: s.campaign.pooling.unwrap_or(Pooling::EmpiricalBayes),
                    exploration_floor: s
                        .campaign
                        .exploration_floor
                        .unwrap_or(DEFAULT_EXPLORATION_FLOOR),
                }
            }
            StrategyKind::LinUcb => PolicySpec::LinUcb {
                alpha: 0.5,
                lambda: 1.0,
                epsilon: 0.0,
                features: s.features.clone(),
                missing_zero: false,
            },
        };
        let ab = (kind == StrategyKind::AbTest).then(|| {
            let alpha = abtest::corrected_alpha(0.05, k);
            AbState {
                per_arm: abtest::sample_size_per_arm(setup.baseline_rate, setup.mde, alpha, 0.8),
                ..AbState::default()
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
        engine.create_campaign(CampaignSpec {
            id: CAMPAIGN.into(),
            arms: s
                .offers
                .iter()
                .map(|o| ArmSpec {
                    id: o.id.clone(),
                    retired: false,
                })
                .collect(),
            policy,
            reward_timeout_seconds: timeout_seconds,
            default_reward: 0.0,
            decay_half_life_seconds: match kind {
                StrategyKind::ThompsonCampaign
                | StrategyKind::ThompsonSegment
                | StrategyKind::EpsilonGreedy => s.campaign.decay_half_life_seconds,
                _ => None,
            },
        })?;
        let contextual = kind == StrategyKind::LinUcb;
        Ok(Decider::Engine(Box::new(EngineDecider {
            engine,
            clock,
            per_segment: kind == StrategyKind::ThompsonSegment,
            contextual,
            next_expiry: 60_000,
            timeout_ms: u64::from(timeout_seconds) * 1000,
            request: ChooseRequest {
                campaign_id: CAMPAIGN.into(),
                segment: String::new(),
                context: if contextual {
                    s.features.iter().map(|f| (f.clone(), 0.0)).collect()
                } else {
                    Vec::new()
                },
                decision_id: None,
            },
            ab,
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
            d.conclude_ab(now_ms)?;
        }
        Ok(())
    }

    /// Picks an offer for `c`, whose true probabilities are `probs` (only
    /// the oracle looks at them).
    pub fn choose(&mut self, setup: &Setup, c: &Customer, probs: &[f64]) -> SimResult<Pick> {
        let Decider::Engine(d) = self else {
            return Ok(Pick {
                offer: argmax(probs),
                decision: None,
            });
        };
        let segment = if d.per_segment {
            setup.scenario.segments[c.segment].name.as_str()
        } else {
            d.ab_segment(setup.scenario.offers.len(), c.t_ms)
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
        let choice = d.engine.choose(&d.request)?;
        Ok(Pick {
            offer: choice.arm,
            decision: Some(choice.decision_id),
        })
    }

    /// Reports a conversion inside the attribution window. Non-conversions
    /// are never reported: the engine learns them when the reward timeout
    /// passes, as it does in production.
    pub fn convert(&mut self, decision: &str) -> SimResult<()> {
        if let Decider::Engine(d) = self {
            match d.engine.reward(decision, 1.0) {
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
            let mut failed = None;
            d.engine
                .export_decisions(CAMPAIGN, 0, None, false, &mut |h, r| match writeln!(
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
        out.flush().map_err(io)
    }

    pub fn ab_state(&self) -> Option<&AbState> {
        match self {
            Decider::Engine(d) => d.ab.as_ref(),
            Decider::Oracle => None,
        }
    }
}

impl EngineDecider {
    /// The segment of the next decision: the A/B test's test phase tags its
    /// customers, everything else is campaign-wide.
    fn ab_segment(&mut self, offers: usize, now_ms: u64) -> &'static str {
        let Some(ab) = self.ab.as_mut() else {
            return "";
        };
        let quota = ab.per_arm.saturating_mul(offers as u64);
        if ab.decision.is_some() || ab.assigned >= quota {
            return "";
        }
        ab.assigned += 1;
        if ab.assigned == quota {
            ab.closes_at = Some(now_ms + self.timeout_ms);
        }
        AB_SEGMENT
    }

    /// Once every test decision is resolved: the z-tests on the engine's
    /// counts, then every offer but the winner is retired.
    fn conclude_ab(&mut self, now_ms: u64) -> SimResult<()> {
        let Some(ab) = self.ab.as_mut() else {
            return Ok(());
        };
        if ab.decision.is_some() || ab.closes_at.is_none_or(|t| now_ms <= t) {
            return Ok(());
        }
        let stats = self.engine.stats(CAMPAIGN, AB_SEGMENT)?;
        let Some(test) = stats.iter().find(|s| s.segment == AB_SEGMENT) else {
            return Ok(());
        };
        if test.arms.iter().any(|a| a.pending > 0) {
            return Ok(());
        }
        ab.trials = test.arms.iter().map(|a| a.pulls).collect();
        ab.successes = test
            .arms
            .iter()
            .map(|a| a.reward_sum.round() as u64)
            .collect();
        let decision = abtest::decide(&ab.successes, &ab.trials, 0.05);
        ab.decision = Some(decision);
        ab.decided_at = Some(now_ms);
        for (i, arm) in test.arms.iter().enumerate() {
            if i != decision.winner {
                self.engine.retire_arm(CAMPAIGN, &arm.arm_id)?;
            }
        }
        Ok(())
    }
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
