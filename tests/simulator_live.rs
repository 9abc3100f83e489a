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
    let opts = LiveOptions {
        target: Connect {
            target: format!("http://{}", server.addr),
            ..Connect::default()
        },
        concurrency: 16,
        rate: None,
        speedup: 36_000.0,
        seed: 5,
    };
    let report = run_live(&scenario, &opts).await.expect("live run");
    eprintln!("{}", report.summary());
    assert_eq!(report.customers, 3000);
    assert_eq!(report.errors, 0);
    let sent: u64 = report.sent.values().map(|v| v.0).sum();
    let conversions: u64 = report.sent.values().map(|v| v.1).sum();
    assert_eq!(sent, 3000);
    assert!(conversions > 30, "too few conversions: {conversions}");
    assert!(report.agrees(), "{}", report.summary());
    let pulls: u64 = report.daemon.values().map(|v| v.0).sum();
    assert_eq!(pulls, 3000);
    server.stop().await;
}

// Live mode refuses targets that are not on this machine.
#[tokio::test]
async fn live_mode_only_targets_loopback() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/simulations/segmented.toml");
    let scenario = Scenario::from_file(std::path::Path::new(path)).expect("scenario");
    let opts = LiveOptions {
        target: Connect {
            target: "http://10.0.0.5:50051".into(),
            ..Connect::default()
        },
        concurrency: 1,
        rate: None,
        speedup: 1.0,
        seed: 1,
    };
    let err = run_live(&scenario, &opts)
        .await
        .expect_err("non-loopback target");
    assert!(err.contains("loopback"), "{err}");
}
