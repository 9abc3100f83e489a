//! Partial pooling: sparse segments borrow strength from the campaign.

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use banditd::engine::{ChooseRequest, Clock, Engine, EngineOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Runs 200 segments × 40 customers each (round robin) and returns the share
/// of each segment's last 20 customers that got the best offer.
fn best_share(pooling: f64, seed: u64) -> f64 {
    let rates = [0.02, 0.03, 0.04, 0.05, 0.12];
    let engine = Engine::in_memory(EngineOptions {
        seed: Some(seed),
        clock: Clock::Manual(Arc::new(AtomicU64::new(1_000))),
        ..EngineOptions::default()
    });
    engine
        .create_campaign(CampaignSpec {
            id: "pool".into(),
            arms: (0..rates.len())
                .map(|i| ArmSpec {
                    id: format!("offer-{i}"),
                    retired: false,
                })
                .collect(),
            policy: PolicySpec::Thompson {
                prior_alpha: 1.0,
                prior_beta: 1.0,
                segment_prior_strength: pooling,
            },
            reward_timeout_seconds: 3600,
            default_reward: 0.0,
        })
        .expect("create");
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xdead_beef);
    let (mut late, mut late_best) = (0u32, 0u32);
    for round in 0..40 {
        for s in 0..200 {
            let d = engine
                .choose(&ChooseRequest {
                    campaign_id: "pool".into(),
                    segment: format!("segment-{s}"),
                    ..ChooseRequest::default()
                })
                .expect("choose");
            let arm: usize = d.arm_id["offer-".len()..].parse().expect("arm index");
            let click = rng.random_bool(rates[arm]);
            engine
                .reward(&d.decision_id, if click { 1.0 } else { 0.0 })
                .expect("reward");
            if round >= 20 {
                late += 1;
                late_best += u32::from(arm == rates.len() - 1);
            }
        }
    }
    f64::from(late_best) / f64::from(late)
}

// With pooling, 200 sparse segments send a clearly larger share of their
// later traffic to the best offer than without, for every seed tried.
#[test]
fn sparse_segments_learn_faster_with_pooling() {
    for seed in [1u64, 2, 3, 4] {
        let with = best_share(10.0, seed);
        let without = best_share(0.0, seed);
        eprintln!("seed {seed}: best-offer share with pooling {with:.3}, without {without:.3}");
        assert!(
            with > without + 0.08 && with > 1.3 * without,
            "seed {seed}: with {with:.3} vs without {without:.3}"
        );
    }
}
