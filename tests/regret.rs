//! Textbook-quality learning: campaign-wide Thompson sampling through the
//! engine (the arm drawn from a cached P(best) vector, remade by the
//! refresh rule, the exploration floor at its default) against a plain
//! Thompson sampler (one Beta draw per arm, the argmax, no floor, its
//! posterior updated after every reward; Thompson 1933, Chapelle & Li 2011
//! "An Empirical Evaluation of Thompson Sampling") on the same stationary
//! Bernoulli streams with immediate rewards.
//!
//! "The same streams": decision t's outcome on arm a is `u_t < rate_a` for
//! one sequence of uniforms per run, shared by both samplers (common
//! random numbers), so the comparison is paired. Regret is the pseudo-regret
//! Σ_t (best rate − rate of the arm chosen at t).
//!
//! `cargo test --release --test regret -- --nocapture` prints the medians
//! and spreads (the README's table).

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use banditd::engine::{ChooseRequest, Clock, Engine, EngineOptions};
use banditd::policy::thompson::{sample_argmax, BetaParams};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const DECISIONS: usize = 100_000;

/// Ten offers: the best at 10%, the next at 8%, the rest lower.
fn ten_offers() -> Vec<f64> {
    vec![0.10, 0.08, 0.07, 0.06, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01]
}

/// A hundred offers: the best at 10%, the next at 8%, 98 spread evenly
/// over 1–7%.
fn hundred_offers() -> Vec<f64> {
    let mut r = vec![0.10, 0.08];
    r.extend((0..98).map(|i| 0.01 + 0.06 * f64::from(i) / 97.0));
    r
}

fn uniforms(seed: u64) -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0000 + seed);
    (0..DECISIONS).map(|_| rng.random()).collect()
}

/// Regret of campaign-wide Thompson sampling through the engine (defaults:
/// prior Beta(1, 1), the default floor, empirical-Bayes pooling, which a
/// campaign-wide decision does not use).
fn engine_regret(rates: &[f64], seed: u64) -> f64 {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let engine = Engine::in_memory(EngineOptions {
        seed: Some(seed),
        clock: Clock::Manual(clock.clone()),
        ..EngineOptions::default()
    });
    engine
        .create_campaign(CampaignSpec {
            id: "regret".into(),
            arms: (0..rates.len())
                .map(|i| ArmSpec {
                    id: format!("offer-{i}"),
                    ..ArmSpec::default()
                })
                .collect(),
            policy: PolicySpec::thompson_default(),
            reward_timeout_seconds: 3600,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        })
        .expect("create");
    let best = rates.iter().copied().fold(0.0, f64::max);
    let req = ChooseRequest {
        campaign_id: "regret".into(),
        ..ChooseRequest::default()
    };
    let mut regret = 0.0;
    for u in uniforms(seed) {
        let c = engine.choose(&req).expect("choose");
        regret += best - rates[c.arm];
        let reward = f64::from(u8::from(u < rates[c.arm]));
        engine.reward(&c.decision_id, reward).expect("reward");
        clock.fetch_add(1_000, Ordering::Relaxed);
    }
    regret
}

/// Regret of the plain sampler: one Beta(1 + successes, 1 + failures)
/// draw per arm, the largest wins, no floor.
fn textbook_regret(rates: &[f64], seed: u64) -> f64 {
    let mut rng = SmallRng::seed_from_u64(0x7e47_0000 + seed);
    let mut posts = vec![
        BetaParams {
            alpha: 1.0,
            beta: 1.0
        };
        rates.len()
    ];
    let best = rates.iter().copied().fold(0.0, f64::max);
    let mut regret = 0.0;
    for u in uniforms(seed) {
        let a = sample_argmax(&posts, &mut rng);
        regret += best - rates[a];
        if u < rates[a] {
            posts[a].alpha += 1.0;
        } else {
            posts[a].beta += 1.0;
        }
    }
    regret
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let median = quantile(&xs, 0.5);
    println!(
        "{name}: median {median:.0}, 10th–90th percentile {:.0}–{:.0}, min–max {:.0}–{:.0}",
        quantile(&xs, 0.1),
        quantile(&xs, 0.9),
        xs[0],
        xs[xs.len() - 1]
    );
    median
}

/// Both samplers over `seeds` streams; the engine's median regret within
/// 10% of the plain sampler's.
fn compare(label: &str, rates: &[f64], seeds: u64) {
    let runs: Vec<(f64, f64)> = (0..seeds)
        .map(|s| (engine_regret(rates, s), textbook_regret(rates, s)))
        .collect();
    let engine = summary(
        &format!("{label}, banditd (engine)"),
        runs.iter().map(|r| r.0).collect(),
    );
    let plain = summary(
        &format!("{label}, plain Thompson"),
        runs.iter().map(|r| r.1).collect(),
    );
    let mut ratios: Vec<f64> = runs.iter().map(|r| r.0 / r.1).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "{label}: median ratio {:.3} (paired, 10th–90th {:.3}–{:.3}); ratio of medians {:.3}",
        quantile(&ratios, 0.5),
        quantile(&ratios, 0.1),
        quantile(&ratios, 0.9),
        engine / plain
    );
    assert!(
        engine <= 1.10 * plain,
        "{label}: the engine's median regret {engine:.0} is more than 10% above the plain sampler's {plain:.0}"
    );
}

// Ten offers, 100,000 decisions, 40 seeds (20 leave the medians ±10%
// apart by chance alone): within 10% of textbook.
#[test]
fn ten_offers_learn_like_textbook_thompson_sampling() {
    compare("10 offers", &ten_offers(), 40);
}

// A hundred offers (P(best) over 100 arms on every remade vector), 20
// seeds (the spread is narrower with many arms).
#[test]
fn a_hundred_offers_learn_like_textbook_thompson_sampling() {
    compare("100 offers", &hundred_offers(), 20);
}
