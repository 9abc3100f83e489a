//! Load generator for the gRPC `Choose` path: C concurrent callers on one
//! HTTP/2 connection each, for a fixed time, against a running daemon on
//! loopback. Prints throughput and latency percentiles.
//!
//! ```sh
//! taskset -c 0 target/release/banditd serve --data-dir /tmp/load &   # server on one core
//! taskset -c 1 cargo run --release --example loadgen -- http://127.0.0.1:50051 100 10
//! ```
//! Arguments: target URL (loopback only), requests in flight, seconds (≤ 60).

use banditd::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let target = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    if !(target.starts_with("http://127.") || target.starts_with("http://localhost")) {
        return Err("loadgen only targets loopback addresses (http://127.x.x.x:PORT)".into());
    }
    let in_flight: usize = args.get(2).map_or(Ok(100), |s| s.parse())?;
    let seconds: u64 = args.get(3).map_or(Ok(10), |s| s.parse())?;
    let seconds = seconds.clamp(1, 60);
    let connections = in_flight.div_ceil(50).max(1);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(Channel::from_shared(target.clone())?.connect().await?);
    }
    let mut admin = CampaignsClient::new(channels[0].clone());
    let campaign = format!("loadgen-{}", std::process::id());
    admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(pb::Campaign {
                id: campaign.clone(),
                arms: (0..10)
                    .map(|i| pb::Arm {
                        id: format!("offer-{i}"),
                        retired: false,
                    })
                    .collect(),
                policy: Some(pb::campaign::Policy::Thompson(
                    pb::ThompsonSampling::default(),
                )),
                reward_timeout_seconds: 5,
                default_reward: 0.0,
            }),
        })
        .await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..in_flight {
        let mut client = BanditClient::new(channels[i % connections].clone());
        let campaign = campaign.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let start = Instant::now();
                let r = client
                    .choose(pb::ChooseRequest {
                        campaign_id: campaign.clone(),
                        segment: format!("segment-{}", i % 20),
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => latencies.push(start.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{} Choose in {seconds}s with {in_flight} in flight: {:.0}/s, p50 {:?}, p99 {:?}, errors {errors}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.99)
    );
    admin
        .delete_campaign(pb::DeleteCampaignRequest {
            campaign_id: campaign,
        })
        .await?;
    Ok(())
}
