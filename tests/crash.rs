//! Crash safety: a real daemon process is SIGKILLed under load, restarted on
//! the same data directory, and its state is checked against what it had
//! acknowledged.

mod common;
mod daemon;

use banditd::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use common::{choose_req, thompson};
use daemon::Daemon;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Drives choose+reward(1.0) from `workers` tasks until killed; returns
/// (ack time, decision id) of every acknowledged reward.
async fn load_until_killed(daemon: Daemon, run_for: Duration) -> (Vec<(Instant, String)>, Instant) {
    let channel = connect(&daemon.url()).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut bandit = BanditClient::new(channel.clone());
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(d) = bandit.choose(choose_req("crash", "")).await else {
                    return;
                };
                let id = d.into_inner().decision_id;
                let r = bandit
                    .reward(pb::RewardRequest {
                        decision_id: id.clone(),
                        value: 1.0,
                    })
                    .await;
                if r.is_err() {
                    return;
                }
                acked.lock().expect("lock").push((Instant::now(), id));
            }
        }));
    }
    tokio::time::sleep(run_for).await;
    let killed_at = Instant::now();
    daemon.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    (acked, killed_at)
}

async fn total_rewards(url: &str) -> (f64, u64) {
    let mut admin = CampaignsClient::new(connect(url).await);
    let s = admin
        .get_stats(pb::GetStatsRequest {
            campaign_id: "crash".into(),
            segment: String::new(),
        })
        .await
        .expect("stats after restart")
        .into_inner();
    let all = &s.segments[0];
    (
        all.arms.iter().map(|a| a.reward_sum).sum(),
        all.arms.iter().map(|a| a.pulls).sum(),
    )
}

/// Kill cycles in one mode. `must_survive(ack, kill)` says which acknowledged
/// rewards must be present after the restart.
async fn kill_cycles(
    extra: &[&str],
    cycles: usize,
    must_survive: impl Fn(Instant, Instant) -> bool,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::spawn(dir.path(), extra);
    let mut admin = CampaignsClient::new(connect(&daemon.url()).await);
    admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(thompson("crash", &["a", "b", "c"], 3600)),
        })
        .await
        .expect("create");
    let mut daemon = daemon;
    let mut ever_acked = 0usize;
    for cycle in 0..cycles {
        let (acked, killed_at) = load_until_killed(daemon, Duration::from_millis(1200)).await;
        assert!(acked.len() > 50, "too little load: {}", acked.len());
        ever_acked += acked.len();
        daemon = Daemon::spawn(dir.path(), extra);
        let (sum, pulls) = total_rewards(&daemon.url()).await;
        // No outcome is learned twice: at most one reward per decision made.
        assert!(
            sum <= pulls as f64,
            "cycle {cycle}: reward_sum {sum} > pulls {pulls}"
        );
        let required: Vec<&String> = acked
            .iter()
            .filter(|(t, _)| must_survive(*t, killed_at))
            .map(|(_, id)| id)
            .collect();
        let mut bandit = BanditClient::new(connect(&daemon.url()).await);
        let mut lost = 0;
        for id in &required {
            let r = bandit
                .reward(pb::RewardRequest {
                    decision_id: (*id).clone(),
                    value: 1.0,
                })
                .await;
            if !matches!(r, Ok(ref resp) if resp.get_ref().duplicate) {
                lost += 1;
            }
        }
        eprintln!(
            "cycle {cycle}: acked {} (required {}), reward_sum after restart {sum}, lost {lost}",
            acked.len(),
            required.len()
        );
        assert_eq!(lost, 0, "cycle {cycle}: {lost} acknowledged rewards lost");
        assert!(sum >= required.len() as f64);
    }
    let (sum, _) = total_rewards(&daemon.url()).await;
    assert!(
        sum <= (ever_acked + 4 * cycles) as f64,
        "more rewards learned than sent"
    );
    assert_eq!(daemon.terminate(), Some(0));
}

// Strict mode: every acknowledged reward survives SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_loses_no_acknowledged_reward() {
    kill_cycles(
        &["--durability", "strict", "--flush-interval-ms", "1000"],
        3,
        |_, _| true,
    )
    .await;
}

// Default mode: every reward acknowledged more than a flush interval (plus
// margin) before the kill survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_mode_keeps_rewards_acknowledged_before_the_last_flush() {
    kill_cycles(&["--flush-interval-ms", "50"], 3, |ack, kill| {
        ack + Duration::from_millis(500) < kill
    })
    .await;
}
