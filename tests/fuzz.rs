//! Bounded fuzzing in CI: 20,000 structure-aware hostile calls against a
//! real server (see `fuzzer/mod.rs`): never `UNKNOWN` or `INTERNAL`, no panic,
//! and no refused call changes the state. `examples/fuzz.rs` runs the same
//! inputs by the million.

mod fuzzer;
use fuzzer as fuzz;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_get_client_errors_and_change_nothing() {
    let inputs = std::env::var("BANDITD_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let target = fuzz::Target::start(7).await;
    let report = fuzz::run(&target, inputs, 20261202, &|_| {}).await;
    eprintln!("{}", report.summary());
    for e in &report.examples {
        eprintln!("  {e}");
    }
    assert_eq!(report.inputs, inputs);
    assert_eq!(report.bad(), 0, "{}", report.summary());
    // The inputs reach the handlers and their checks, not only the decoder:
    // a fuzzer that only ever produced garbage would prove little.
    let ok = report.codes.get(&0).copied().unwrap_or(0);
    let invalid = report.codes.get(&3).copied().unwrap_or(0);
    assert!(
        ok > inputs / 20,
        "too few accepted calls: {}",
        report.summary()
    );
    assert!(invalid > inputs / 5, "{}", report.summary());
    target.stop().await;
}
