//! Live mode: simulated customers as real gRPC traffic against a daemon the
//! test starts on 127.0.0.1:0, with delayed rewards.

mod common;

use banditd::client::Connect;
use banditd::sim::live::{run_live, LiveOptions};
use banditd::sim::scenario::Scenario;
use common::TestServer;

// The daemon's GetStats agrees with what the simulator sent: every customer
// is one pull of the offer it received, every acknowledged conversion one
// reward, even though conversions arrive after delays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_stats_agree_with_simulated_traffic() {
    let server = TestServer::start(31).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/simulations/segmented.toml");
    let mut scenario = Scenario::from_file(std::path::Path::new(path)).expect("scenario");
    scenario.days = 1;
    scenario.customers_per_day = 3000;
    let mut opts = LiveOptions::new(vec![Connect {
        target: format!("http://{}", server.addr),
        ..Connect::default()
    }]);
    opts.concurrency = 16;
    opts.speedup = 36_000.0;
    opts.seed = 5;
    let report = run_live(&scenario, &opts).await.expect("live run");
    eprintln!("{}", report.summary());
    assert_eq!(report.customers, 3000);
    assert_eq!(report.errors, 0);
    let campaign = |(seg, _): &&(String, String)| seg.is_empty();
    let sent: u64 = report
        .sent
        .iter()
        .filter(|(k, _)| campaign(k))
        .map(|(_, v)| v.0)
        .sum();
    let conversions: u64 = report
        .sent
        .iter()
        .filter(|(k, _)| campaign(k))
        .map(|(_, v)| v.1)
        .sum();
    assert_eq!(sent, 3000);
    assert!(conversions > 30, "too few conversions: {conversions}");
    // Per segment and offer, not only in total.
    assert!(report.sent.len() > 3, "{:?}", report.sent.keys());
    assert!(report.agrees(), "{}", report.summary());
    let pulls: u64 = report
        .daemon
        .iter()
        .filter(|(k, _)| campaign(k))
        .map(|(_, v)| v.0)
        .sum();
    assert_eq!(pulls, 3000);
    server.stop().await;
}

// Live mode refuses targets that are not on this machine.
#[tokio::test]
async fn live_mode_only_targets_loopback() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/simulations/segmented.toml");
    let scenario = Scenario::from_file(std::path::Path::new(path)).expect("scenario");
    let mut opts = LiveOptions::new(vec![Connect {
        target: "http://10.0.0.5:50051".into(),
        ..Connect::default()
    }]);
    opts.concurrency = 1;
    opts.speedup = 1.0;
    let err = run_live(&scenario, &opts)
        .await
        .expect_err("non-loopback target");
    assert!(err.contains("loopback"), "{err}");
}
