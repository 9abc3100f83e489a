//! A store that fails, seen from a client: the request whose change was
//! applied but not made durable hears `DATA_LOSS` (not "nothing was
//! applied"), health turns `NOT_SERVING`, every later change is
//! `UNAVAILABLE` and changes nothing, and reads still work.

mod common;

use banditd::api::pb;
use banditd::engine::EngineOptions;
use banditd::journal::{JournalOptions, Mode};
use banditd::store::MemoryStore;
use common::{choose_req, stats, thompson, TestServer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

async fn health(server: &TestServer) -> Vec<i32> {
    let mut h = HealthClient::new(server.channel().await);
    let mut out = Vec::new();
    for service in ["", "banditd.v1.Bandit", "banditd.v1.Campaigns"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers");
        out.push(r.into_inner().status);
    }
    out
}

// Strict durability over gRPC: DATA_LOSS for the change caught by the
// failure, then NOT_SERVING, UNAVAILABLE for every change, reads intact.
#[tokio::test]
async fn a_failed_store_is_reported_honestly_and_refuses_changes() {
    let store = Arc::new(MemoryStore::new());
    let options = EngineOptions {
        seed: Some(1),
        journal: JournalOptions {
            mode: Mode::Strict,
            ..JournalOptions::default()
        },
        ..EngineOptions::default()
    };
    let server =
        TestServer::start_with(store.clone(), options, tempfile::tempdir().expect("dir")).await;
    let mut admin = server.campaigns().await;
    let mut bandit = server.bandit().await;
    common::create(&mut admin, thompson("c", &["a", "b"], 60)).await;
    let d = bandit
        .choose(choose_req("c", ""))
        .await
        .expect("choose")
        .into_inner();
    let serving = ServingStatus::Serving as i32;
    assert_eq!(health(&server).await, [serving; 3]);

    store.fail_after(0);
    let caught = bandit
        .reward(pb::RewardRequest {
            decision_id: d.decision_id.clone(),
            value: 1.0,
            slot: 0,
        })
        .await
        .expect_err("the store failed");
    assert_eq!(caught.code(), Code::DataLoss, "{caught:?}");

    let not_serving = ServingStatus::NotServing as i32;
    let start = Instant::now();
    while health(&server).await != [not_serving; 3] {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "health stays SERVING"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = stats(&mut admin, "c", "").await;
    let refused = bandit
        .choose(choose_req("c", ""))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable);
    let refused = bandit
        .reward(pb::RewardRequest {
            decision_id: d.decision_id,
            value: 1.0,
            slot: 0,
        })
        .await;
    // Applied in memory before the failure but never durable: not a promise.
    assert!(
        matches!(&refused, Err(s) if matches!(s.code(), Code::Unavailable | Code::DataLoss)),
        "{refused:?}"
    );
    let refused = admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(thompson("d", &["a"], 60)),
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable);
    let refused = admin
        .delete_campaign(pb::DeleteCampaignRequest {
            campaign_id: "c".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        stats(&mut admin, "c", "").await,
        before,
        "refused calls changed nothing"
    );
    assert_eq!(
        admin
            .list_campaigns(pb::ListCampaignsRequest {})
            .await
            .expect("reads work")
            .into_inner()
            .campaigns
            .len(),
        1
    );
}
