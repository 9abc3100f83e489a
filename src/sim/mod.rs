//! The campaign simulator: replays synthetic customers against the same
//! [`Engine`](crate::engine::Engine) the daemon serves with, and compares
//! strategies on exactly the same customers.
//!
//! It owns everything under `sim::` and touches the rest of the crate only
//! through the engine's public API (`Engine::in_memory`, which persists nothing,
//! with a manual clock). It never opens sled, binds a port or reads the
//! daemon's configuration.
//!
//! - [`scenario`]: the TOML scenario format and its validation.
//! - [`population`]: the seeded customer stream and the true response model.
//! - [`strategy`]: A/B test, uniform, Thompson (campaign-wide, per segment),
//!   LinUCB, ε-greedy, oracle.
//! - [`abtest`]: the A/B designs' statistics (Holm, O'Brien–Fleming,
//!   test-and-roll); [`abrun`]: their plans and their runs on the engine.
//! - [`runner`]: the event loop and parallel runs; [`report`], [`html`] and
//!   [`svg`]: the outputs.

pub mod abrun;
pub mod abtest;
pub mod html;
pub mod live;
pub mod population;
pub mod report;
pub mod runner;
pub mod scenario;
mod scenario_model;
mod scenario_parse;
pub mod strategy;
pub mod svg;

use crate::config::SimulateArgs;
use runner::{SimOptions, SimResults};
use scenario::Scenario;
use std::path::PathBuf;
use strategy::StrategyKind;

/// Parses a comma-separated strategy list (`thompson,ab_test`).
pub fn parse_strategies(list: &str, scenario: &Scenario) -> Result<Vec<StrategyKind>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let k = StrategyKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.key()).collect();
            format!(
                "--strategies: unknown strategy {name:?} (known: {})",
                known.join(", ")
            )
        })?;
        if k == StrategyKind::LinUcb && scenario.features.is_empty() {
            return Err("--strategies: linucb needs a scenario with segment features".into());
        }
        if k.design().is_some() && scenario.campaign.slots > 1 {
            return Err(format!(
                "--strategies: {name} is an A/B design, which shows one offer per customer; this scenario fills pages of {} slots",
                scenario.campaign.slots
            ));
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if out.is_empty() {
        return Err("--strategies: name at least one strategy".into());
    }
    Ok(out)
}

/// Why `banditd simulate` failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimCliError {
    /// A bad scenario file or flag (exit code 64).
    #[error("{0}")]
    Usage(String),
    /// The simulation or writing its outputs failed.
    #[error("{0}")]
    Failed(String),
}

/// `banditd simulate`: runs, prints the summary, writes the output folder.
/// Returns the text to print.
pub fn run_cli(a: &SimulateArgs) -> Result<String, SimCliError> {
    check_and_run(a).map_err(SimCliError::Usage)?
}

fn check_and_run(a: &SimulateArgs) -> Result<Result<String, SimCliError>, String> {
    let mut sc = Scenario::from_file(&a.scenario).map_err(|e| e.to_string())?;
    if let Some(d) = a.days {
        if !(1..=3650).contains(&d) {
            return Err("--days: must be in 1..=3650".into());
        }
        sc.days = d;
        sc.drift.retain(|x| x.day < d);
    }
    if let Some(c) = a.customers_per_day {
        if !(1..=10_000_000).contains(&c) {
            return Err("--customers-per-day: must be in 1..=10000000".into());
        }
        sc.customers_per_day = c;
    }
    if let Some(w) = a.attribution_window_minutes {
        let most = crate::campaign::limits::MAX_REWARD_TIMEOUT_SECONDS / 60;
        if !(1..=most).contains(&w) {
            return Err(format!(
                "--attribution-window-minutes: must be in 1..={most}"
            ));
        }
        sc.delay.attribution_window_minutes = w;
    }
    if !(1..=10_000).contains(&a.runs) {
        return Err("--runs: must be in 1..=10000".into());
    }
    if !(a.mde.is_finite() && a.mde > 0.0 && a.mde <= 10.0) {
        return Err("--mde: must be in (0, 10]".into());
    }
    if let Some(l) = a.looks {
        if !(1..=20).contains(&l) {
            return Err("--looks: must be in 1..=20".into());
        }
        sc.ab.looks = l;
    }
    if !a.target.is_empty() {
        if sc.campaign.slots > 1 {
            return Err(format!(
                "--target: live runs show one offer per customer; scenario {:?} has slots = {} (simulate it offline)",
                sc.name, sc.campaign.slots
            ));
        }
        return Ok(run_live_cli(&sc, a, &a.target));
    }
    let strategies = match &a.strategies {
        Some(list) => parse_strategies(list, &sc)?,
        None => StrategyKind::defaults_for(&sc),
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("sim-out").join(&sc.name));
    let decision_log = a.decision_log.then(|| out.join("decision-logs"));
    if let Some(dir) = &decision_log {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Ok(Err(SimCliError::Failed(format!(
                "cannot create {}: {e}",
                dir.display()
            ))));
        }
    }
    let opts = SimOptions {
        runs: a.runs,
        seed: a.seed,
        strategies,
        mde: a.mde,
        threads: a.threads,
        decision_log,
    };
    let started = std::time::Instant::now();
    let results = match runner::simulate(&sc, &opts) {
        Ok(r) => r,
        Err(e) => return Ok(Err(SimCliError::Failed(format!("simulation failed: {e}")))),
    };
    let elapsed = started.elapsed();
    if let Err(e) = write_outputs(&out, &sc, &results, a.runs, a.seed, a.mde) {
        return Ok(Err(SimCliError::Failed(e)));
    }
    Ok(Ok(format!(
        "{}\nSimulated {} customers × {} strategies × {} runs in {:.2} s; wrote {} (open report.html)\n",
        report::summary(&sc, &results, a.runs, a.mde),
        svg::group(sc.total_customers() as f64, 0),
        opts.strategies.len(),
        a.runs,
        elapsed.as_secs_f64(),
        out.display()
    )))
}

fn write_outputs(
    dir: &std::path::Path,
    sc: &Scenario,
    r: &SimResults,
    runs: usize,
    seed: u64,
    mde: f64,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write to {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(
        dir.join("report.md"),
        report::markdown(sc, r, runs, seed, mde),
    )
    .map_err(io)?;
    std::fs::write(dir.join("report.html"), html::page(sc, r, runs, seed, mde)).map_err(io)?;
    std::fs::write(dir.join("metrics.csv"), report::csv(sc, r)).map_err(io)?;
    std::fs::write(dir.join("runs.csv"), report::runs_csv(sc, r)).map_err(io)?;
    for (name, _, svg) in html::charts(sc, r) {
        std::fs::write(dir.join(name), svg).map_err(io)?;
    }
    Ok(())
}

/// `banditd simulate SCENARIO --target URL…`: the scenario as live traffic.
fn run_live_cli(
    sc: &Scenario,
    a: &SimulateArgs,
    targets: &[String],
) -> Result<String, SimCliError> {
    let mut opts = live::LiveOptions::new(
        targets
            .iter()
            .map(|target| crate::client::Connect {
                target: target.clone(),
                tls_ca: a.tls_ca.clone(),
                tls_client_cert: a.tls_client_cert.clone(),
                tls_client_key: a.tls_client_key.clone(),
                token: a.token.clone(),
            })
            .collect(),
    );
    opts.concurrency = a.concurrency;
    opts.rate = a.rate;
    opts.speedup = a.speedup;
    opts.seed = a.seed;
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(SimCliError::Usage(
                "--rate: must be a positive number of customers per second".into(),
            ));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SimCliError::Failed(format!("cannot start the async runtime: {e}")))?;
    let report = runtime
        .block_on(live::run_live(sc, &opts))
        .map_err(SimCliError::Failed)?;
    if report.agrees() {
        Ok(report.summary())
    } else {
        Err(SimCliError::Failed(report.summary()))
    }
}
