//! Black-box tests of the v1 gRPC contract against a real server on
//! 127.0.0.1:0 with a temporary sled directory.

mod common;

use banditd::api::pb;
use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

// Create → choose → reward → stats round trip, with the reply fields filled in.
#[tokio::test]
async fn round_trip_choose_reward_stats() {
    let server = TestServer::start(1).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    let created = create(&mut admin, thompson("spring", &["a", "b", "c"], 60)).await;
    assert_eq!(created.arms.len(), 3);
    let got = admin
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: "spring".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, created);

    let choice = bandit
        .choose(choose_req("spring", "vip"))
        .await
        .expect("choose")
        .into_inner();
    assert!(!choice.decision_id.is_empty());
    assert!(["a", "b", "c"].contains(&choice.arm_id.as_str()));
    assert!(choice.propensity > 0.0 && choice.propensity <= 1.0);
    // Three arms with equal posteriors: each is best with probability about 1/3.
    assert!(
        (choice.propensity - 1.0 / 3.0).abs() < 0.06,
        "{}",
        choice.propensity
    );

    let r = bandit
        .reward(pb::RewardRequest {
            decision_id: choice.decision_id.clone(),
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("reward")
        .into_inner();
    assert!(!r.duplicate);

    let s = stats(&mut admin, "spring", "").await;
    let all = arm(&s, "", &choice.arm_id);
    assert_eq!((all.pulls, all.pending), (1, 0));
    assert_eq!(all.reward_sum, 1.0);
    assert!((all.mean - 2.0 / 3.0).abs() < 1e-9);
    assert!(all.ci_low < all.mean && all.mean < all.ci_high);
    let vip = arm(&s, "vip", &choice.arm_id);
    assert_eq!(vip.pulls, 1);
    let total_best: f64 = s.segments[0].arms.iter().map(|a| a.prob_best).sum();
    assert!((total_best - 1.0).abs() < 1e-9);

    let list = admin
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.campaigns.len(), 1);
    server.stop().await;
}

// A repeated Reward is a no-op reported as duplicate; a repeated Choose with
// the caller's decision id returns the same answer and counts once.
#[tokio::test]
async fn retries_are_safe() {
    let server = TestServer::start(2).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    create(&mut admin, thompson("retry", &["a", "b", "c", "d"], 60)).await;
    let mut req = choose_req("retry", "s1");
    req.decision_id = "impression-42".into();
    let first = bandit
        .choose(req.clone())
        .await
        .expect("choose")
        .into_inner();
    for _ in 0..5 {
        let again = bandit
            .choose(req.clone())
            .await
            .expect("choose again")
            .into_inner();
        assert_eq!(again, first);
    }
    let reward = pb::RewardRequest {
        decision_id: "impression-42".into(),
        value: 0.5,
        slot: 0,
    };
    assert!(
        !bandit
            .reward(reward.clone())
            .await
            .expect("reward")
            .into_inner()
            .duplicate
    );
    for _ in 0..3 {
        assert!(
            bandit
                .reward(reward.clone())
                .await
                .expect("again")
                .into_inner()
                .duplicate
        );
    }
    // Still the same answer after it was rewarded.
    assert_eq!(
        bandit
            .choose(req.clone())
            .await
            .expect("choose")
            .into_inner(),
        first
    );
    let s = stats(&mut admin, "retry", "").await;
    let a = arm(&s, "", &first.arm_id);
    assert_eq!((a.pulls, a.reward_sum), (1, 0.5));
    // The same id for another segment is a conflict, not a silent reuse.
    req.segment = "s2".into();
    let err = bandit.choose(req).await.expect_err("reused id");
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

// Every kind of bad input gets its documented status and changes nothing.
#[tokio::test]
async fn bad_input_gets_the_right_status_and_changes_nothing() {
    let server = TestServer::start(3).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    create(&mut admin, thompson("c", &["a", "b"], 60)).await;
    let ok = bandit
        .choose(choose_req("c", ""))
        .await
        .expect("choose")
        .into_inner();

    let create_err = |c: pb::Campaign| {
        let mut admin = admin.clone();
        async move {
            admin
                .create_campaign(pb::CreateCampaignRequest { campaign: Some(c) })
                .await
                .expect_err("must fail")
                .code()
        }
    };
    assert_eq!(
        create_err(thompson("c", &["a"], 60)).await,
        Code::AlreadyExists
    );
    assert_eq!(
        create_err(thompson("", &["a"], 60)).await,
        Code::InvalidArgument
    );
    assert_eq!(
        create_err(thompson("no-arms", &[], 60)).await,
        Code::InvalidArgument
    );
    assert_eq!(
        create_err(thompson("dup", &["a", "a"], 60)).await,
        Code::InvalidArgument
    );
    assert_eq!(
        create_err(thompson("bad id!", &["a"], 60)).await,
        Code::InvalidArgument
    );
    assert_eq!(
        create_err(thompson(&"x".repeat(200), &["a"], 60)).await,
        Code::InvalidArgument
    );
    let many: Vec<String> = (0..1001).map(|i| format!("arm{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        create_err(thompson("many", &many, 60)).await,
        Code::InvalidArgument
    );
    let mut nan_prior = thompson("nan", &["a"], 60);
    nan_prior.policy = Some(pb::campaign::Policy::Thompson(pb::ThompsonSampling {
        prior_alpha: f64::NAN,
        ..Default::default()
    }));
    assert_eq!(create_err(nan_prior).await, Code::InvalidArgument);
    let mut bad_default = thompson("bad-default", &["a"], 60);
    bad_default.default_reward = 2.0;
    assert_eq!(create_err(bad_default).await, Code::InvalidArgument);
    let missing = admin
        .create_campaign(pb::CreateCampaignRequest { campaign: None })
        .await
        .expect_err("no campaign");
    assert_eq!(missing.code(), Code::InvalidArgument);

    let choose_err = |r: pb::ChooseRequest| {
        let mut bandit = bandit.clone();
        async move { bandit.choose(r).await.expect_err("must fail").code() }
    };
    assert_eq!(choose_err(choose_req("nope", "")).await, Code::NotFound);
    assert_eq!(choose_err(choose_req("", "")).await, Code::InvalidArgument);
    assert_eq!(
        choose_err(choose_req("c", &"s".repeat(200))).await,
        Code::InvalidArgument
    );
    assert_eq!(
        choose_err(choose_req("c", "bad\nsegment")).await,
        Code::InvalidArgument
    );
    let mut ctx = choose_req("c", "");
    ctx.context = HashMap::from([("age".to_string(), f64::NAN)]);
    assert_eq!(choose_err(ctx.clone()).await, Code::InvalidArgument);
    ctx.context = HashMap::from([("age".to_string(), 1.0)]);
    assert_eq!(choose_err(ctx).await, Code::InvalidArgument);
    let mut bad_id = choose_req("c", "");
    bad_id.decision_id = "has space".into();
    assert_eq!(choose_err(bad_id).await, Code::InvalidArgument);

    let reward_err = |id: &str, value: f64| {
        let mut bandit = bandit.clone();
        let id = id.to_string();
        async move {
            bandit
                .reward(pb::RewardRequest {
                    decision_id: id,
                    value,
                    slot: 0,
                })
                .await
                .expect_err("must fail")
                .code()
        }
    };
    assert_eq!(reward_err("unknown", 1.0).await, Code::NotFound);
    assert_eq!(reward_err("", 1.0).await, Code::InvalidArgument);
    assert_eq!(
        reward_err(&ok.decision_id, f64::NAN).await,
        Code::InvalidArgument
    );
    assert_eq!(
        reward_err(&ok.decision_id, f64::INFINITY).await,
        Code::InvalidArgument
    );
    assert_eq!(
        reward_err(&ok.decision_id, 1.5).await,
        Code::InvalidArgument
    );
    assert_eq!(
        reward_err(&ok.decision_id, -0.1).await,
        Code::InvalidArgument
    );

    let get = admin
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(get.code(), Code::NotFound);
    let del = admin
        .delete_campaign(pb::DeleteCampaignRequest {
            campaign_id: String::new(),
        })
        .await
        .expect_err("empty");
    assert_eq!(del.code(), Code::InvalidArgument);
    let stats_err = admin
        .get_stats(pb::GetStatsRequest {
            campaign_id: "nope".into(),
            segment: String::new(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(stats_err.code(), Code::NotFound);

    // An oversize message is refused by the transport.
    let mut huge = choose_req("c", "");
    huge.decision_id = "x".repeat(2 << 20);
    assert_eq!(choose_err(huge).await, Code::ResourceExhausted);

    // Nothing above changed state: one campaign, one pending decision, no reward.
    let list = admin
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.campaigns.len(), 1);
    let s = stats(&mut admin, "c", "").await;
    let pulls: u64 = s.segments[0].arms.iter().map(|a| a.pulls).sum();
    let sum: f64 = s.segments[0].arms.iter().map(|a| a.reward_sum).sum();
    assert_eq!((pulls, sum), (1, 0.0));
    // The decision is still pending and can be rewarded normally.
    let r = bandit
        .reward(pb::RewardRequest {
            decision_id: ok.decision_id,
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("reward");
    assert!(!r.into_inner().duplicate);
    server.stop().await;
}

// An unrewarded decision learns the default reward once at its timeout; a
// reward after that is FAILED_PRECONDITION and changes nothing. The
// server's clock is moved by hand; only its 50 ms sweep runs on its own.
#[tokio::test]
async fn expiry_learns_default_reward_exactly_once() {
    let clock = Arc::new(AtomicU64::new(1_750_000_000_000));
    let dir = tempfile::tempdir().expect("dir");
    let store = banditd::store::SledStore::open(&banditd::store::SledOptions {
        path: dir.path().join("db"),
        cache_bytes: 16 << 20,
    })
    .expect("sled");
    let options = banditd::engine::EngineOptions {
        seed: Some(4),
        clock: banditd::engine::Clock::Manual(clock.clone()),
        ..Default::default()
    };
    let server = TestServer::start_with(Arc::new(store), options, dir).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    let mut c = thompson("expiring", &["a"], 1);
    c.default_reward = 0.25;
    create(&mut admin, c).await;
    let d1 = bandit
        .choose(choose_req("expiring", ""))
        .await
        .expect("choose")
        .into_inner();
    let d2 = bandit
        .choose(choose_req("expiring", ""))
        .await
        .expect("choose")
        .into_inner();
    bandit
        .reward(pb::RewardRequest {
            decision_id: d2.decision_id.clone(),
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("reward in time");
    let s = stats(&mut admin, "expiring", "").await;
    assert_eq!(arm(&s, "", "a").pending, 1);

    clock.fetch_add(1_001, Ordering::SeqCst);
    // The sweep (every 50 ms of real time) learns the default: poll for it.
    let mut s = stats(&mut admin, "expiring", "").await;
    for _ in 0..400 {
        if arm(&s, "", "a").pending == 0 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        s = stats(&mut admin, "expiring", "").await;
    }
    let a = arm(&s, "", "a");
    assert_eq!((a.pulls, a.pending, a.reward_sum), (2, 0, 1.25));
    let late = bandit
        .reward(pb::RewardRequest {
            decision_id: d1.decision_id.clone(),
            value: 1.0,
            slot: 0,
        })
        .await
        .expect_err("late");
    assert_eq!(late.code(), Code::FailedPrecondition);
    // The rewarded one is still a duplicate, not an error, after its deadline.
    let dup = bandit
        .reward(pb::RewardRequest {
            decision_id: d2.decision_id,
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("duplicate");
    assert!(dup.into_inner().duplicate);
    // Long past the deadline (and several sweeps later) nothing is learned twice.
    clock.fetch_add(60_000, Ordering::SeqCst);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let s = stats(&mut admin, "expiring", "").await;
        assert_eq!(arm(&s, "", "a").reward_sum, 1.25);
    }
    server.stop().await;
}

// Added arms are chosen at once; a retired arm is never chosen again but
// stays in the stats; the last active arm cannot be retired.
#[tokio::test]
async fn arms_added_and_retired_at_runtime() {
    let server = TestServer::start(5).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    create(&mut admin, thompson("arms", &["old"], 60)).await;
    for _ in 0..20 {
        let d = bandit
            .choose(choose_req("arms", ""))
            .await
            .expect("choose")
            .into_inner();
        assert_eq!(d.propensity, 1.0);
        bandit
            .reward(pb::RewardRequest {
                decision_id: d.decision_id,
                value: 0.0,
                slot: 0,
            })
            .await
            .expect("reward");
    }
    let err = admin
        .retire_arm(pb::RetireArmRequest {
            campaign_id: "arms".into(),
            arm_id: "old".into(),
        })
        .await
        .expect_err("last arm");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let dup = admin
        .add_arms(pb::AddArmsRequest {
            campaign_id: "arms".into(),
            arms: vec![pb::Arm {
                id: "old".into(),
                retired: false,
                ..Default::default()
            }],
        })
        .await
        .expect_err("duplicate arm");
    assert_eq!(dup.code(), Code::InvalidArgument);
    let c = admin
        .add_arms(pb::AddArmsRequest {
            campaign_id: "arms".into(),
            arms: vec![pb::Arm {
                id: "new".into(),
                retired: false,
                ..Default::default()
            }],
        })
        .await
        .expect("add")
        .into_inner();
    assert_eq!(c.arms.len(), 2);
    // "old" never converted, so the fresh arm must be explored right away.
    let mut new_count = 0;
    for _ in 0..20 {
        let d = bandit
            .choose(choose_req("arms", ""))
            .await
            .expect("choose")
            .into_inner();
        new_count += usize::from(d.arm_id == "new");
    }
    assert!(new_count >= 15, "new arm chosen {new_count}/20");
    let c = admin
        .retire_arm(pb::RetireArmRequest {
            campaign_id: "arms".into(),
            arm_id: "new".into(),
        })
        .await
        .expect("retire")
        .into_inner();
    assert!(c.arms[1].retired);
    for _ in 0..50 {
        let d = bandit
            .choose(choose_req("arms", ""))
            .await
            .expect("choose")
            .into_inner();
        assert_eq!(d.arm_id, "old");
    }
    let s = stats(&mut admin, "arms", "").await;
    let new = arm(&s, "", "new");
    assert!(new.retired && new.pulls == new_count as u64 && new.prob_best == 0.0);
    let unknown = admin
        .retire_arm(pb::RetireArmRequest {
            campaign_id: "arms".into(),
            arm_id: "ghost".into(),
        })
        .await
        .expect_err("unknown arm");
    assert_eq!(unknown.code(), Code::NotFound);
    server.stop().await;
}

// Campaigns, posteriors and pending decisions survive a graceful restart;
// a deleted campaign and its decisions are gone.
#[tokio::test]
async fn state_survives_restart_and_delete_removes_it() {
    let server = TestServer::start(6).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    create(&mut admin, thompson("keep", &["a", "b"], 600)).await;
    create(&mut admin, thompson("drop", &["a"], 600)).await;
    let pending = bandit
        .choose(choose_req("keep", "vip"))
        .await
        .expect("choose")
        .into_inner();
    let rewarded = bandit
        .choose(choose_req("keep", "vip"))
        .await
        .expect("choose")
        .into_inner();
    bandit
        .reward(pb::RewardRequest {
            decision_id: rewarded.decision_id.clone(),
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("reward");
    let dropped = bandit
        .choose(choose_req("drop", ""))
        .await
        .expect("choose")
        .into_inner();
    admin
        .delete_campaign(pb::DeleteCampaignRequest {
            campaign_id: "drop".into(),
        })
        .await
        .expect("delete");
    let before = stats(&mut admin, "keep", "").await;
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, 6).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    // The same counts; the posteriors move only as the pending decision
    // ages (the wall clock runs on between the two reports).
    let after = stats(&mut admin, "keep", "").await;
    assert_eq!(after.segments.len(), before.segments.len());
    for (b, a) in before.segments.iter().zip(&after.segments) {
        assert_eq!(b.segment, a.segment);
        for (x, y) in b.arms.iter().zip(&a.arms) {
            assert_eq!(
                (&x.arm_id, x.pulls, x.pending, x.reward_sum),
                (&y.arm_id, y.pulls, y.pending, y.reward_sum)
            );
            assert!((x.mean - y.mean).abs() < 1e-3, "{x:?} vs {y:?}");
        }
    }
    let list = admin
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.campaigns.len(), 1);
    let gone = bandit
        .reward(pb::RewardRequest {
            decision_id: dropped.decision_id,
            value: 1.0,
            slot: 0,
        })
        .await
        .expect_err("deleted campaign's decision");
    assert_eq!(gone.code(), Code::NotFound);
    let dup = bandit
        .reward(pb::RewardRequest {
            decision_id: rewarded.decision_id,
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("dup");
    assert!(dup.into_inner().duplicate);
    let ok = bandit
        .reward(pb::RewardRequest {
            decision_id: pending.decision_id,
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("pending reward after restart");
    assert!(!ok.into_inner().duplicate);
    let after = stats(&mut admin, "keep", "vip").await;
    let sum: f64 = after.segments[0].arms.iter().map(|a| a.reward_sum).sum();
    assert_eq!(sum, 2.0);
    server.stop().await;
}

// The standard health service answers SERVING for the v1 services.
#[tokio::test]
async fn health_service_reports_serving() {
    let server = TestServer::start(7).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    for service in ["banditd.v1.Bandit", "banditd.v1.Campaigns"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    server.stop().await;
}

// Server reflection (v1 and v1alpha) lists the banditd services, so grpcurl
// and older clients work without the .proto files.
#[tokio::test]
async fn reflection_lists_services_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::start(8).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1 reflection")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("message")
        .expect("one response");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected v1 reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"banditd.v1.Bandit".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"banditd.v1.Campaigns".to_string()),
        "{names:?}"
    );

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("message")
        .expect("one response");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected v1alpha reflection response");
    };
    assert!(list.service.iter().any(|s| s.name == "banditd.v1.Bandit"));
    server.stop().await;
}

// An ε-greedy campaign over the wire: the default ε is filled in, a bad ε is
// INVALID_ARGUMENT, the leader gets ~(1−ε)+ε/K of traffic with the exact
// propensity logged, and a segment learns only from its own outcomes.
#[tokio::test]
async fn epsilon_greedy_campaign_over_grpc() {
    let server = TestServer::start(5).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    let mut bad = thompson("eg-bad", &["a", "b"], 60);
    bad.policy = Some(pb::campaign::Policy::EpsilonGreedy(pb::EpsilonGreedy {
        epsilon: Some(1.5),
    }));
    let err = admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(bad),
        })
        .await
        .expect_err("epsilon 1.5");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("epsilon"), "{}", err.message());

    let mut c = thompson("eg", &["a", "b", "c", "d"], 60);
    c.policy = Some(pb::campaign::Policy::EpsilonGreedy(pb::EpsilonGreedy {
        epsilon: None,
    }));
    let created = create(&mut admin, c).await;
    assert_eq!(
        created.policy,
        Some(pb::campaign::Policy::EpsilonGreedy(pb::EpsilonGreedy {
            epsilon: Some(0.1)
        }))
    );
    // Teach segment "s": "c" always converts, the others never.
    let mut seen = HashMap::new();
    for _ in 0..200 {
        let d = bandit
            .choose(choose_req("eg", "s"))
            .await
            .expect("choose")
            .into_inner();
        let v = if d.arm_id == "c" { 1.0 } else { 0.0 };
        bandit
            .reward(pb::RewardRequest {
                decision_id: d.decision_id,
                value: v,
                slot: 0,
            })
            .await
            .expect("reward");
        *seen.entry(d.arm_id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 4, "every arm is tried: {seen:?}");
    let (mut leader, mut n) = (0, 0);
    for _ in 0..1000 {
        let d = bandit
            .choose(choose_req("eg", "s"))
            .await
            .expect("choose")
            .into_inner();
        n += 1;
        if d.arm_id == "c" {
            leader += 1;
            assert!(
                (d.propensity - (0.9 + 0.1 / 4.0)).abs() < 1e-12,
                "{}",
                d.propensity
            );
        } else {
            assert!((d.propensity - 0.1 / 4.0).abs() < 1e-12, "{}", d.propensity);
        }
    }
    let share = f64::from(leader) / f64::from(n);
    assert!((share - 0.925).abs() < 0.04, "leader share {share}");
    // Another segment has no outcomes of its own: its first decisions try
    // untried arms (propensity (1−ε)/4 + ε/4 = 0.25 each), not "c" alone.
    let d = bandit
        .choose(choose_req("eg", "fresh"))
        .await
        .expect("choose")
        .into_inner();
    assert!((d.propensity - 0.25).abs() < 1e-12, "{}", d.propensity);
}

// The additive v1 fields: linear Thompson sampling, the exploration floor
// and the decay half-life round-trip through CreateCampaign/GetCampaign,
// a LinTS campaign decides with a logged propensity in (0, 1], and bad
// values are INVALID_ARGUMENT without creating anything.
#[tokio::test]
async fn lints_floor_and_decay_over_grpc() {
    let server = TestServer::start(21).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    let lints = pb::Campaign {
        id: "lin".into(),
        arms: vec![
            pb::Arm {
                id: "a".into(),
                retired: false,
                ..Default::default()
            },
            pb::Arm {
                id: "b".into(),
                retired: false,
                ..Default::default()
            },
        ],
        policy: Some(pb::campaign::Policy::Lints(pb::LinTs {
            features: vec!["f".into()],
            lambda: 0.0,
            exploration: 0.0,
            epsilon: 0.1,
            missing: 0,
        })),
        reward_timeout_seconds: 60,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    };
    let created = create(&mut admin, lints.clone()).await;
    match created.policy {
        Some(pb::campaign::Policy::Lints(l)) => {
            assert_eq!((l.lambda, l.exploration), (1.0, 1.0), "defaults applied")
        }
        other => panic!("{other:?}"),
    }
    let mut req = choose_req("lin", "");
    req.context.insert("f".into(), 0.5);
    let d = bandit.choose(req).await.expect("choose").into_inner();
    assert!(d.propensity > 0.0 && d.propensity <= 1.0);
    let mut decaying = thompson("decay", &["a", "b"], 60);
    decaying.decay_half_life_seconds = Some(3600);
    if let Some(pb::campaign::Policy::Thompson(t)) = &mut decaying.policy {
        t.exploration_floor = Some(0.05);
    }
    let got = create(&mut admin, decaying).await;
    assert_eq!(got.decay_half_life_seconds, Some(3600));
    match got.policy {
        Some(pb::campaign::Policy::Thompson(t)) => {
            assert_eq!(t.exploration_floor, Some(0.05));
            assert_eq!(t.segment_prior_strength, None, "empirical Bayes by default");
        }
        other => panic!("{other:?}"),
    }
    let mut bad_floor = thompson("bad1", &["a"], 60);
    if let Some(pb::campaign::Policy::Thompson(t)) = &mut bad_floor.policy {
        t.exploration_floor = Some(0.7);
    }
    let mut bad_decay = thompson("bad2", &["a"], 60);
    bad_decay.decay_half_life_seconds = Some(5);
    let mut contextual_decay = lints.clone();
    contextual_decay.id = "bad3".into();
    contextual_decay.decay_half_life_seconds = Some(3600);
    let mut no_features = lints;
    no_features.id = "bad4".into();
    if let Some(pb::campaign::Policy::Lints(l)) = &mut no_features.policy {
        l.features.clear();
    }
    for bad in [bad_floor, bad_decay, contextual_decay, no_features] {
        let id = bad.id.clone();
        let e = admin
            .create_campaign(pb::CreateCampaignRequest {
                campaign: Some(bad),
            })
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{id}");
    }
    let list = admin
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.campaigns.len(), 2);
}

// The marketer's fields over the wire: an arm's value, caps and cap period
// round-trip; a capped arm is never chosen once its cap is reached
// (GetStats shows it capped), the holdout flag comes back in Choose and
// GetStats reports the uplift; a campaign restarted from its directory
// keeps the cap. Bad values are INVALID_ARGUMENT and create nothing.
#[tokio::test]
async fn value_caps_and_holdout_over_grpc() {
    let server = TestServer::start(14).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    let mut c = thompson("shop", &["coupon", "gift", "bundle"], 600);
    c.arms[0].max_impressions = 5;
    c.arms[1].max_conversions = 1000;
    c.arms[1].cap_period = pb::CapPeriod::Day as i32;
    c.arms[2].value = 4.0;
    c.holdout_fraction = 0.25;
    let created = create(&mut admin, c.clone()).await;
    assert_eq!(created.arms[0].max_impressions, 5);
    assert_eq!(created.arms[0].value, 1.0, "0 means 1");
    assert_eq!(created.arms[1].cap_period, pb::CapPeriod::Day as i32);
    assert_eq!(created.arms[2].value, 4.0);
    assert_eq!(created.holdout_fraction, 0.25);
    let (mut coupon, mut held) = (0, 0);
    for i in 0..200 {
        let d = bandit
            .choose(choose_req("shop", ""))
            .await
            .expect("choose")
            .into_inner();
        coupon += u32::from(d.arm_id == "coupon");
        held += u32::from(d.holdout);
        assert!(d.propensity >= 0.25 / 3.0 - 1e-12 || d.arm_id == "coupon");
        bandit
            .reward(pb::RewardRequest {
                decision_id: d.decision_id,
                value: f64::from(u8::from(i % 3 == 0)),
                slot: 0,
            })
            .await
            .expect("reward");
    }
    assert_eq!(coupon, 5, "the cap holds exactly");
    assert!((25..=75).contains(&held), "{held} holdout decisions of 200");
    let s = stats(&mut admin, "shop", "").await;
    let wide = &s.segments[0];
    let by = |id: &str| wide.arms.iter().find(|a| a.arm_id == id).expect("arm");
    assert!(by("coupon").capped && !by("gift").capped);
    assert_eq!(by("coupon").period_impressions, 5);
    assert_eq!(by("bundle").value, 4.0);
    assert!((by("bundle").expected_value - 4.0 * by("bundle").mean).abs() < 1e-12);
    let u = wide.uplift.as_ref().expect("uplift");
    assert_eq!(u.holdout_decisions + u.policy_decisions, 200);
    assert_eq!(u64::from(held), u.holdout_decisions);
    assert!(u.ci_low <= u.uplift && u.uplift <= u.ci_high);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, 14).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    for _ in 0..30 {
        let d = bandit
            .choose(choose_req("shop", ""))
            .await
            .expect("choose")
            .into_inner();
        assert_ne!(d.arm_id, "coupon", "still capped after the restart");
    }
    let s = stats(&mut admin, "shop", "").await;
    assert!(s.segments[0].arms[0].capped);
    for (what, bad) in [
        ("negative value", {
            let mut b = thompson("bad", &["a", "b"], 60);
            b.arms[0].value = -1.0;
            b
        }),
        ("NaN value", {
            let mut b = thompson("bad", &["a", "b"], 60);
            b.arms[1].value = f64::NAN;
            b
        }),
        ("unknown cap period", {
            let mut b = thompson("bad", &["a", "b"], 60);
            b.arms[1].cap_period = 7;
            b
        }),
        ("holdout above 0.5", {
            let mut b = thompson("bad", &["a", "b"], 60);
            b.holdout_fraction = 0.6;
            b
        }),
    ] {
        let err = admin
            .create_campaign(pb::CreateCampaignRequest {
                campaign: Some(bad),
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    let listed = admin
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.campaigns.len(), 1, "nothing bad was created");
}

// Ranked slates over gRPC: count = 3 gives 3 distinct arms in slot order,
// the first repeated in arm_id and propensity; count 0 is one slot. A
// reward names its slot and updates that slot's arm; the decision log has
// one record per slot under the slate's id; a pending slot is rewarded
// after a restart. A slot the slate lacks, or more slots than arms or than
// the limit, is INVALID_ARGUMENT and changes nothing.
#[tokio::test]
async fn ranked_slates_over_grpc() {
    let server = TestServer::start(15).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    create(
        &mut admin,
        thompson("page", &["a", "b", "c", "d", "e"], 600),
    )
    .await;
    let slate = |count: u32| pb::ChooseRequest {
        count,
        ..choose_req("page", "mobile")
    };
    let one = bandit.choose(slate(0)).await.expect("count 0").into_inner();
    assert_eq!(one.slate.len(), 1);
    assert_eq!(
        (&one.slate[0].arm_id, one.slate[0].propensity),
        (&one.arm_id, one.propensity)
    );
    let d = bandit.choose(slate(3)).await.expect("slate").into_inner();
    assert_eq!(d.slate.len(), 3);
    assert_eq!(d.slate[0].arm_id, d.arm_id);
    assert_eq!(d.slate[0].propensity, d.propensity);
    let mut ids: Vec<&str> = d.slate.iter().map(|s| s.arm_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{:?}", d.slate);
    assert!(d
        .slate
        .iter()
        .all(|s| s.propensity > 0.0 && s.propensity <= 1.0));
    let resolved = |s: &pb::GetStatsResponse, arm: &str| {
        let a = s.segments[0]
            .arms
            .iter()
            .find(|a| a.arm_id == arm)
            .expect("arm");
        a.pulls - a.pending
    };
    let reward = |slot: u32, value: f64| pb::RewardRequest {
        decision_id: d.decision_id.clone(),
        value,
        slot,
    };
    bandit.reward(reward(1, 1.0)).await.expect("slot 1");
    let s = stats(&mut admin, "page", "").await;
    assert_eq!(resolved(&s, &d.slate[1].arm_id), 1);
    assert_eq!(
        s.segments[0].arms.iter().map(|a| a.reward_sum).sum::<f64>(),
        1.0
    );
    for (what, req, code) in [
        ("slot 3 of 3", reward(3, 1.0), Code::InvalidArgument),
        (
            "slot u32::MAX",
            reward(u32::MAX, 1.0),
            Code::InvalidArgument,
        ),
    ] {
        let err = bandit.reward(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
    }
    for (what, count) in [("6 of 5 arms", 6), ("17 slots", 17)] {
        let err = bandit.choose(slate(count)).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    assert_eq!(
        stats(&mut admin, "page", "").await,
        s,
        "refused calls change nothing"
    );
    let mut stream = admin
        .export_decisions(pb::ExportDecisionsRequest {
            campaign_id: "page".into(),
            include_pending: true,
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    let mut records = Vec::new();
    while let Some(m) = stream.message().await.expect("message") {
        records.extend(m.decisions);
    }
    let mut mine: Vec<&pb::LoggedDecision> = records
        .iter()
        .filter(|r| r.decision_id == d.decision_id)
        .collect();
    mine.sort_by_key(|r| r.slot);
    assert_eq!(
        mine.iter().map(|r| r.slot).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    for (r, s) in mine.iter().zip(&d.slate) {
        assert_eq!((&r.arm_id, r.propensity), (&s.arm_id, s.propensity));
    }
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, 15).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    bandit
        .reward(reward(2, 1.0))
        .await
        .expect("slot 2 after the restart");
    let s = stats(&mut admin, "page", "").await;
    assert_eq!(resolved(&s, &d.slate[2].arm_id), 1);
}
