//! Seeded simulated traffic over gRPC: Thompson sampling finds the best offer.

mod common;

use banditd::api::pb;
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

// With click rates 3%, 5% and 8%, the 8% offer receives the majority of the
// last 20% of traffic, for every seed tried (server and traffic seeded).
#[tokio::test]
async fn thompson_converges_to_the_best_offer_over_grpc() {
    const ROUNDS: usize = 6_000;
    let rates = [("three", 0.03), ("five", 0.05), ("eight", 0.08)];
    for seed in [11u64, 12, 13] {
        let server = TestServer::start(seed).await;
        let mut admin = server.campaigns().await;
        let mut bandit = server.bandit().await;
        create(
            &mut admin,
            thompson("conv", &["three", "five", "eight"], 600),
        )
        .await;
        let mut rng = SmallRng::seed_from_u64(seed * 7919);
        let mut late_best = 0usize;
        for round in 0..ROUNDS {
            let d = bandit
                .choose(choose_req("conv", ""))
                .await
                .expect("choose")
                .into_inner();
            let rate = rates
                .iter()
                .find(|(id, _)| *id == d.arm_id)
                .map(|(_, r)| *r)
                .expect("known arm");
            let click = rng.random_bool(rate);
            bandit
                .reward(pb::RewardRequest {
                    decision_id: d.decision_id,
                    value: if click { 1.0 } else { 0.0 },
                    slot: 0,
                })
                .await
                .expect("reward");
            if round >= ROUNDS * 4 / 5 && d.arm_id == "eight" {
                late_best += 1;
            }
        }
        let share = late_best as f64 / (ROUNDS / 5) as f64;
        eprintln!("seed {seed}: best arm share of the last 20% = {share:.3}");
        assert!(
            share > 0.5,
            "seed {seed}: best arm got {share:.3} of the last 20%"
        );
        let s = stats(&mut admin, "conv", "").await;
        assert!(arm(&s, "", "eight").prob_best > arm(&s, "", "three").prob_best);
        server.stop().await;
    }
}
