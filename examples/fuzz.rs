//! The long fuzz run: `cargo run --release --example fuzz -- [INPUTS] [SEED]`
//! (default 1,000,000 inputs). The same structure-aware inputs and checks as
//! `tests/fuzz.rs`; prints progress every 10,000 inputs and the summary, and
//! exits 1 if any answer was UNKNOWN or INTERNAL, a refused call changed
//! the state, or anything panicked. Figures: RELIABILITY.md.

#[path = "../tests/fuzzer/mod.rs"]
mod fuzz;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let inputs: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let started = std::time::Instant::now();
    let target = fuzz::Target::start(seed).await;
    let report = fuzz::run(&target, inputs, seed, &|r| {
        eprintln!(
            "[{:>6.0}s] {}",
            started.elapsed().as_secs_f64(),
            r.summary()
        );
    })
    .await;
    target.stop().await;
    println!("{}", report.summary());
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    for e in &report.examples {
        println!("  {e}");
    }
    if report.bad() == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
