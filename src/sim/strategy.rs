//! Strategies: who picks the offer for each simulated customer.
//!
//! Owns the strategy list, the engine-backed deciders (uniform, Thompson
//! campaign-wide and per segment, LinUCB: each through a real [`Engine`]
//! over a `MemoryStore` with a manual clock) and the sim-only baselines
//! (A/B test, ε-greedy, oracle). It decides and learns; it does not draw
//! customers or keep metrics (see `population` and `runner`).

use super::abtest;
use super::population::Customer;
use super::scenario::Scenario;
use crate::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use crate::engine::{ChooseRequest, Clock, Engine, EngineOptions};
use crate::store::MemoryStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
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
    /// The engine's decision id, for engine-backed deciders.
    pub decision: Option<String>,
    /// Whether this customer belongs to an A/B test phase.
    pub in_test: bool,
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

type SimResult<T> = Result<T, crate::Error>;

/// A/B test state, reported at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct AbState {
    pub per_arm: u64,
    pub assigned: u64,
    pub resolved: u64,
    pub successes: Vec<u64>,
    pub trials: Vec<u64>,
    /// Σ true p per offer over the test customers (to name the true best).
    pub true_sum: Vec<f64>,
    pub decision: Option<abtest::AbDecision>,
    pub decided_at: Option<u64>,
}

pub enum Decider {
    Engine {
        engine: Engine,
        clock: Arc<AtomicU64>,
        per_segment: bool,
        contextual: bool,
        next_expiry: u64,
    },
    Ab {
        rng: SmallRng,
        state: AbState,
    },
    Epsilon {
        rng: SmallRng,
        successes: Vec<u64>,
        trials: Vec<u64>,
    },
    Oracle,
}

const CAMPAIGN: &str = "sim";

impl Decider {
    pub fn new(kind: StrategyKind, setup: &Setup, seed: u64) -> SimResult<Self> {
        let s = setup.scenario;
        let k = s.offers.len();
        let policy = match kind {
            StrategyKind::AbTest => {
                let alpha = abtest::corrected_alpha(0.05, k);
                let per_arm =
                    abtest::sample_size_per_arm(setup.baseline_rate, setup.mde, alpha, 0.8);
                return Ok(Decider::Ab {
                    rng: SmallRng::seed_from_u64(seed),
                    state: AbState {
                        per_arm,
                        successes: vec![0; k],
                        trials: vec![0; k],
                        true_sum: vec![0.0; k],
                        ..AbState::default()
                    },
                });
            }
            StrategyKind::EpsilonGreedy => {
                return Ok(Decider::Epsilon {
                    rng: SmallRng::seed_from_u64(seed),
                    successes: vec![0; k],
                    trials: vec![0; k],
                })
            }
            StrategyKind::Oracle => return Ok(Decider::Oracle),
            StrategyKind::Uniform => PolicySpec::Uniform,
            StrategyKind::ThompsonCampaign | StrategyKind::ThompsonSegment => {
                PolicySpec::thompson_default()
            }
            StrategyKind::LinUcb => PolicySpec::LinUcb {
                alpha: 0.5,
                lambda: 1.0,
                epsilon: 0.0,
                features: s.features.clone(),
                missing_zero: false,
            },
        };
        let clock = Arc::new(AtomicU64::new(0));
        let engine = Engine::open(
            Arc::new(MemoryStore::new()),
            EngineOptions {
                seed: Some(seed),
                clock: Clock::Manual(clock.clone()),
            },
        )?;
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
            reward_timeout_seconds: s.delay.attribution_window_minutes * 60,
            default_reward: 0.0,
        })?;
        Ok(Decider::Engine {
            engine,
            clock,
            per_segment: kind == StrategyKind::ThompsonSegment,
            contextual: kind == StrategyKind::LinUcb,
            next_expiry: 60_000,
        })
    }

    /// Moves simulated time to `now_ms` (expiring overdue engine decisions once a simulated minute).
    pub fn advance(&mut self, now_ms: u64) -> SimResult<()> {
        if let Decider::Engine {
            engine,
            clock,
            next_expiry,
            ..
        } = self
        {
            clock.store(now_ms, Ordering::Relaxed);
            if now_ms >= *next_expiry {
                engine.expire_due()?;
                *next_expiry = now_ms + 60_000;
            }
        }
        Ok(())
    }

    /// Picks an offer for `c`, whose true probabilities are `probs`.
    pub fn choose(&mut self, setup: &Setup, c: &Customer, probs: &[f64]) -> SimResult<Pick> {
        let k = probs.len();
        let plain = |offer| Pick {
            offer,
            decision: None,
            in_test: false,
        };
        match self {
            Decider::Engine {
                engine,
                per_segment,
                contextual,
                ..
            } => {
                let context = if *contextual {
                    setup
                        .scenario
                        .features
                        .iter()
                        .zip(&c.x)
                        .zip(&setup.feature_stats)
                        .map(|((n, x), (m, sd))| (n.clone(), (x - m) / sd))
                        .collect()
                } else {
                    Vec::new()
                };
                let segment = if *per_segment {
                    setup.scenario.segments[c.segment].name.clone()
                } else {
                    String::new()
                };
                let choice = engine.choose(&ChooseRequest {
                    campaign_id: CAMPAIGN.into(),
                    segment,
                    context,
                    decision_id: None,
                })?;
                let offer = setup
                    .scenario
                    .offers
                    .iter()
                    .position(|o| o.id == choice.arm_id)
                    .unwrap_or(0);
                Ok(Pick {
                    offer,
                    decision: Some(choice.decision_id),
                    in_test: false,
                })
            }
            Decider::Ab { rng, state } => {
                if let Some(d) = state.decision {
                    return Ok(plain(d.winner));
                }
                let offer = rng.random_range(0..k);
                let in_test = state.assigned < state.per_arm.saturating_mul(k as u64);
                if in_test {
                    state.assigned += 1;
                    for (s, p) in state.true_sum.iter_mut().zip(probs) {
                        *s += p;
                    }
                }
                Ok(Pick {
                    offer,
                    decision: None,
                    in_test,
                })
            }
            Decider::Epsilon {
                rng,
                successes,
                trials,
            } => {
                if rng.random::<f64>() < 0.1 {
                    return Ok(plain(rng.random_range(0..k)));
                }
                let mean = |i: usize| {
                    if trials[i] == 0 {
                        f64::INFINITY
                    } else {
                        successes[i] as f64 / trials[i] as f64
                    }
                };
                let best = (0..k).map(mean).fold(f64::NEG_INFINITY, f64::max);
                let ties: Vec<usize> = (0..k).filter(|i| mean(*i) == best).collect();
                Ok(plain(ties[rng.random_range(0..ties.len())]))
            }
            Decider::Oracle => Ok(plain(argmax(probs))),
        }
    }

    /// Learns one outcome at its report time: a conversion inside the
    /// attribution window, or (sim-only deciders) a non-conversion once the
    /// window closes. Engine deciders learn non-conversions by timeout.
    pub fn learn(&mut self, pick: &Pick, converted: bool, now_ms: u64) -> SimResult<()> {
        match self {
            Decider::Engine { engine, .. } => {
                if let (true, Some(id)) = (converted, &pick.decision) {
                    match engine.reward(id, 1.0) {
                        Ok(_) | Err(crate::Error::FailedPrecondition(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Decider::Ab { state, .. } => {
                if pick.in_test {
                    state.trials[pick.offer] += 1;
                    state.successes[pick.offer] += u64::from(converted);
                    state.resolved += 1;
                    let k = state.trials.len() as u64;
                    if state.resolved == state.per_arm.saturating_mul(k) && state.decision.is_none()
                    {
                        state.decision =
                            Some(abtest::decide(&state.successes, &state.trials, 0.05));
                        state.decided_at = Some(now_ms);
                    }
                }
            }
            Decider::Epsilon {
                successes, trials, ..
            } => {
                trials[pick.offer] += 1;
                successes[pick.offer] += u64::from(converted);
            }
            Decider::Oracle => {}
        }
        Ok(())
    }

    pub fn ab_state(&self) -> Option<&AbState> {
        match self {
            Decider::Ab { state, .. } => Some(state),
            _ => None,
        }
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
