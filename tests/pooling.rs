//! Pooling that pools: 200 sparse segments (40 customers each) borrow
//! strength through the empirical-Bayes prior, the default.

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec, Pooling, DEFAULT_EXPLORATION_FLOOR};
use banditd::engine::{ChooseRequest, Clock, Engine, EngineOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

const RATES: [f64; 5] = [0.02, 0.03, 0.04, 0.05, 0.12];

/// How the campaign is asked.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    /// Each request names its segment; this pooling.
    PerSegment(Pooling),
    /// No request names a segment (campaign-wide Thompson sampling).
    CampaignWide,
}

/// Runs 200 segments × 40 customers each (round robin) and returns the
/// share of the last 20 customers of each segment that got that segment's
/// best offer. With `disagree`, odd segments swap the two best offers'
/// rates (12% and 5%).
fn best_share(setup: Setup, disagree: bool, seed: u64) -> f64 {
    let engine = Engine::in_memory(EngineOptions {
        seed: Some(seed),
        clock: Clock::Manual(Arc::new(AtomicU64::new(1_000))),
        ..EngineOptions::default()
    });
    let pooling = match setup {
        Setup::PerSegment(p) => p,
        Setup::CampaignWide => Pooling::EmpiricalBayes,
    };
    engine
        .create_campaign(CampaignSpec {
            id: "pool".into(),
            arms: (0..RATES.len())
                .map(|i| ArmSpec {
                    id: format!("offer-{i}"),
                    retired: false,
                    ..ArmSpec::default()
                })
                .collect(),
            policy: PolicySpec::Thompson {
                prior_alpha: 1.0,
                prior_beta: 1.0,
                pooling,
                exploration_floor: DEFAULT_EXPLORATION_FLOOR,
            },
            reward_timeout_seconds: 3600,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        })
        .expect("create");
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xdead_beef);
    let (mut late, mut late_best) = (0u32, 0u32);
    for round in 0..40 {
        for s in 0..200 {
            let swapped = disagree && s % 2 == 1;
            let rate = |arm: usize| match (swapped, arm) {
                (true, 3) => RATES[4],
                (true, 4) => RATES[3],
                _ => RATES[arm],
            };
            let best = if swapped { 3 } else { 4 };
            let d = engine
                .choose(&ChooseRequest {
                    campaign_id: "pool".into(),
                    segment: if setup == Setup::CampaignWide {
                        String::new()
                    } else {
                        format!("segment-{s}")
                    },
                    ..ChooseRequest::default()
                })
                .expect("choose");
            let arm: usize = d.arm_id["offer-".len()..].parse().expect("arm index");
            let click = rng.random_bool(rate(arm));
            engine
                .reward(&d.decision_id, if click { 1.0 } else { 0.0 })
                .expect("reward");
            if round >= 20 {
                late += 1;
                late_best += u32::from(arm == best);
            }
        }
    }
    f64::from(late_best) / f64::from(late)
}

// When the segments agree, the default (empirical Bayes) sends at least 90%
// of the late traffic of 200 sparse segments to the best offer, for every
// seed; no pooling stays far below.
#[test]
fn agreeing_segments_pool_strongly() {
    for seed in [1u64, 2, 3, 4] {
        let eb = best_share(Setup::PerSegment(Pooling::EmpiricalBayes), false, seed);
        let off = best_share(Setup::PerSegment(Pooling::Off), false, seed);
        eprintln!("agree, seed {seed}: empirical Bayes {eb:.3}, no pooling {off:.3}");
        assert!(eb >= 0.9, "seed {seed}: {eb:.3}");
        assert!(eb > off + 0.2, "seed {seed}: {eb:.3} vs {off:.3}");
    }
}

// When half the segments prefer another offer, empirical Bayes does better
// than no pooling for every seed, and better than campaign-wide Thompson
// sampling (which can only serve one offer to everyone) on average over
// eight seeds: with about four customers per arm and segment the data
// cannot tell 12% from 5% within a segment, so the gain is small.
#[test]
fn disagreeing_segments_pool_weakly_but_still_gain() {
    let (mut eb_all, mut off_all, mut wide_all) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 1u64..=8 {
        let eb = best_share(Setup::PerSegment(Pooling::EmpiricalBayes), true, seed);
        let off = best_share(Setup::PerSegment(Pooling::Off), true, seed);
        let wide = best_share(Setup::CampaignWide, true, seed);
        eprintln!("disagree, seed {seed}: empirical Bayes {eb:.3}, no pooling {off:.3}, campaign-wide {wide:.3}");
        assert!(eb > off + 0.1, "seed {seed}: eb {eb:.3}, off {off:.3}");
        eb_all.push(eb);
        off_all.push(off);
        wide_all.push(wide);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (eb, wide) = (mean(&eb_all), mean(&wide_all));
    eprintln!("disagree, mean of 8 seeds: empirical Bayes {eb:.3}, no pooling {:.3}, campaign-wide {wide:.3}", mean(&off_all));
    assert!(eb > wide + 0.01, "eb {eb:.3} vs campaign-wide {wide:.3}");
}
