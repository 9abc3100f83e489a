//! Contextual LinUCB over gRPC: learning from features with delayed rewards,
//! the status of every bad context, and a restart that changes nothing.

mod common;

use banditd::api::pb;
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use tonic::Code;

fn contextual(id: &str, missing: pb::MissingFeature) -> pb::Campaign {
    pb::Campaign {
        id: id.to_string(),
        arms: ["app-coupon", "email-discount"]
            .iter()
            .map(|a| pb::Arm {
                id: a.to_string(),
                retired: false,
                ..Default::default()
            })
            .collect(),
        policy: Some(pb::campaign::Policy::Linucb(pb::LinUcb {
            alpha: 0.5,
            features: vec!["recency".into(), "is_mobile".into()],
            lambda: 1.0,
            epsilon: 0.0,
            missing: missing as i32,
        })),
        reward_timeout_seconds: 600,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    }
}

fn ctx(recency: f64, mobile: f64) -> HashMap<String, f64> {
    HashMap::from([
        ("recency".to_string(), recency),
        ("is_mobile".to_string(), mobile),
    ])
}

/// Mobile customers convert on the app coupon, the others on the email discount.
fn click_rate(arm: &str, mobile: bool) -> f64 {
    match (arm, mobile) {
        ("app-coupon", true) | ("email-discount", false) => 0.25,
        _ => 0.05,
    }
}

// LinUCB learns which offer suits which customer from their features, with
// rewards arriving 50 decisions late; then a restart changes neither the
// statistics nor the next decision, and a pending decision is rewarded with
// the context it was made with.
#[tokio::test]
async fn linucb_learns_from_context_with_delayed_rewards_and_survives_restart() {
    let server = TestServer::start(21).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    create(&mut admin, contextual("nbo", pb::MissingFeature::Reject)).await;
    let mut rng = SmallRng::seed_from_u64(2024);
    let mut in_flight: VecDeque<(String, f64)> = VecDeque::new();
    let (mut late, mut late_right) = (0u32, 0u32);
    for round in 0..3000 {
        let mobile = rng.random_bool(0.5);
        let mut req = choose_req("nbo", "");
        req.context = ctx(rng.random::<f64>(), if mobile { 1.0 } else { 0.0 });
        let d = bandit.choose(req).await.expect("choose").into_inner();
        assert!(d.propensity > 0.0 && d.propensity <= 1.0);
        let click = rng.random_bool(click_rate(&d.arm_id, mobile));
        in_flight.push_back((d.decision_id, if click { 1.0 } else { 0.0 }));
        if in_flight.len() > 50 {
            let (id, value) = in_flight.pop_front().expect("queued");
            bandit
                .reward(pb::RewardRequest {
                    decision_id: id,
                    value,
                    slot: 0,
                })
                .await
                .expect("reward");
        }
        if round >= 2500 {
            late += 1;
            late_right += u32::from(click_rate(&d.arm_id, mobile) > 0.1);
        }
    }
    let share = f64::from(late_right) / f64::from(late);
    eprintln!("LinUCB picked the right offer for {share:.3} of the last 500 customers");
    assert!(share > 0.8, "right offer only {share:.3} of the time");

    let s = stats(&mut admin, "nbo", "").await;
    let app = arm(&s, "", "app-coupon");
    let names: Vec<&str> = app.theta.iter().map(|w| w.feature.as_str()).collect();
    assert_eq!(names, ["intercept", "recency", "is_mobile"]);
    let email = arm(&s, "", "email-discount");
    assert!(
        app.theta[2].weight > 0.05 && email.theta[2].weight < app.theta[2].weight,
        "{app:?} {email:?}"
    );
    assert!(app.exploration_bonus > 0.0);

    // A decision left pending across the restart, and the next decision for a fixed context.
    let mut probe = choose_req("nbo", "");
    probe.context = ctx(0.3, 1.0);
    let pending = bandit
        .choose(probe.clone())
        .await
        .expect("choose")
        .into_inner();
    let before = stats(&mut admin, "nbo", "").await;
    let next_before = bandit
        .choose(probe.clone())
        .await
        .expect("choose")
        .into_inner()
        .arm_id;
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, 21).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    let after = stats(&mut admin, "nbo", "").await;
    // Same statistics: A and b are stored bit for bit and A⁻¹ is
    // recomputed from A on load, so θ and the bonus agree to rounding.
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(1.0);
    for (b, a) in before.segments[0].arms.iter().zip(&after.segments[0].arms) {
        for (tb, ta) in b.theta.iter().zip(&a.theta) {
            assert_eq!(tb.feature, ta.feature);
            assert!(close(tb.weight, ta.weight), "{b:?} vs {a:?}");
        }
        assert!(close(b.exploration_bonus, a.exploration_bonus));
        assert_eq!(b.reward_sum, a.reward_sum);
    }
    let next_after = bandit
        .choose(probe)
        .await
        .expect("choose")
        .into_inner()
        .arm_id;
    assert_eq!(
        next_before, next_after,
        "a restart changed the next decision"
    );
    let r = bandit
        .reward(pb::RewardRequest {
            decision_id: pending.decision_id,
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("reward after restart")
        .into_inner();
    assert!(!r.duplicate);
    let s = stats(&mut admin, "nbo", "").await;
    let chosen = arm(&s, "", &pending.arm_id);
    let was = arm(&after, "", &pending.arm_id);
    assert_eq!(chosen.reward_sum, was.reward_sum + 1.0);
    assert_ne!(chosen.theta, was.theta, "the delayed reward must update θ");
    server.stop().await;
}

// Every bad context is INVALID_ARGUMENT and changes nothing; a campaign with
// `missing = zero` accepts a missing feature; bad LinUCB parameters are refused.
#[tokio::test]
async fn bad_contexts_get_invalid_argument() {
    let server = TestServer::start(22).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    create(&mut admin, contextual("strict", pb::MissingFeature::Reject)).await;
    create(&mut admin, contextual("lenient", pb::MissingFeature::Zero)).await;
    let cases: Vec<HashMap<String, f64>> = vec![
        HashMap::from([("recency".to_string(), 0.5)]),
        {
            let mut c = ctx(0.5, 1.0);
            c.insert("shoe_size".into(), 42.0);
            c
        },
        ctx(f64::NAN, 1.0),
        ctx(0.5, f64::INFINITY),
        ctx(f64::NEG_INFINITY, 0.0),
        HashMap::new(),
    ];
    for (i, context) in cases.into_iter().enumerate() {
        let mut req = choose_req("strict", "");
        req.context = context;
        let err = bandit.choose(req).await.expect_err("bad context");
        assert_eq!(err.code(), Code::InvalidArgument, "case {i}");
    }
    let s = stats(&mut admin, "strict", "").await;
    assert!(s.segments[0].arms.iter().all(|a| a.pulls == 0));

    let mut req = choose_req("lenient", "");
    req.context = HashMap::from([("recency".to_string(), 0.5)]);
    bandit.choose(req.clone()).await.expect("missing is zero");
    req.context.insert("shoe_size".into(), 42.0);
    assert_eq!(
        bandit.choose(req).await.expect_err("unknown").code(),
        Code::InvalidArgument
    );

    let bad_params = [
        pb::LinUcb {
            alpha: -1.0,
            features: vec!["x".into()],
            ..Default::default()
        },
        pb::LinUcb {
            lambda: f64::NAN,
            features: vec!["x".into()],
            ..Default::default()
        },
        pb::LinUcb {
            epsilon: 1.0,
            features: vec!["x".into()],
            ..Default::default()
        },
        pb::LinUcb {
            features: vec![],
            ..Default::default()
        },
        pb::LinUcb {
            features: vec!["x".into(), "x".into()],
            ..Default::default()
        },
        pb::LinUcb {
            features: vec!["intercept".into()],
            ..Default::default()
        },
        pb::LinUcb {
            features: vec!["x".into()],
            missing: 7,
            ..Default::default()
        },
    ];
    for (i, p) in bad_params.into_iter().enumerate() {
        let mut c = contextual(&format!("bad-{i}"), pb::MissingFeature::Reject);
        c.policy = Some(pb::campaign::Policy::Linucb(p));
        let err = admin
            .create_campaign(pb::CreateCampaignRequest { campaign: Some(c) })
            .await
            .expect_err("bad parameters");
        assert_eq!(err.code(), Code::InvalidArgument, "case {i}");
    }
    // LinUCB takes any finite reward, but not NaN.
    let mut req = choose_req("strict", "");
    req.context = ctx(0.1, 0.0);
    let d = bandit.choose(req).await.expect("choose").into_inner();
    let nan = bandit
        .reward(pb::RewardRequest {
            decision_id: d.decision_id.clone(),
            value: f64::NAN,
            slot: 0,
        })
        .await
        .expect_err("nan");
    assert_eq!(nan.code(), Code::InvalidArgument);
    bandit
        .reward(pb::RewardRequest {
            decision_id: d.decision_id,
            value: 37.5,
            slot: 0,
        })
        .await
        .expect("revenue reward");
    server.stop().await;
}
