//! What one pending decision costs: resident memory and disk, with a million
//! of them, before and after a restart.
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/footprint [--decisions 1000000] [--cache-mb 128] [--no-decision-log]
//! ```
//!
//! Fills one Thompson campaign (10 arms, one segment, a one-day reward
//! timeout, so nothing expires) with N pending decisions through the
//! engine over sled, syncs, and reports the growth of the process's
//! resident set and of the data directory per decision. Then it starts
//! itself again on the same directory (a fresh process: a restart) and
//! reports the resident set the recovered state costs there.

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use banditd::engine::{ChooseRequest, Engine, EngineOptions};
use banditd::store::{SledOptions, SledStore};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

type BoxError = Box<dyn std::error::Error>;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Bytes of disk the directory's files occupy (allocated blocks, not their
/// apparent length: sled preallocates).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&p),
            Ok(m) => total += m.blocks() * 512,
            Err(_) => {}
        }
    }
    total
}

fn open(dir: &Path, cache_mb: u64, decision_log: bool) -> Result<Engine, BoxError> {
    let store = SledStore::open(&SledOptions {
        path: dir.to_path_buf(),
        cache_bytes: cache_mb << 20,
    })?;
    let mut options = EngineOptions::default();
    if !decision_log {
        options.journal.decision_log = banditd::journal::log::LogOptions::OFF;
    }
    Ok(Engine::open(Arc::new(store), options)?)
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut cache_mb, mut reload) = (1_000_000u64, 128u64, None);
    let mut decision_log = true;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--decisions" => n = args.next().ok_or("--decisions needs a value")?.parse()?,
            "--cache-mb" => cache_mb = args.next().ok_or("--cache-mb needs a value")?.parse()?,
            "--reload" => reload = Some(args.next().ok_or("--reload needs a directory")?),
            "--no-decision-log" => decision_log = false,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if let Some(dir) = reload {
        let base = rss_bytes();
        let t = Instant::now();
        let engine = open(Path::new(&dir), cache_mb, decision_log)?;
        let took = t.elapsed();
        let pending = engine.pending_count() as u64;
        let grown = rss_bytes().saturating_sub(base);
        println!(
            "after a restart: {pending} pending decisions recovered in {took:.2?}; resident set grew {:.1} MB = {:.0} bytes per pending decision",
            grown as f64 / 1e6,
            grown as f64 / pending.max(1) as f64
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path(), cache_mb, decision_log)?;
    engine.create_campaign(CampaignSpec {
        id: "footprint".into(),
        arms: (0..10)
            .map(|i| ArmSpec {
                id: format!("offer-{i}"),
                retired: false,
                ..ArmSpec::default()
            })
            .collect(),
        policy: PolicySpec::thompson_default(),
        reward_timeout_seconds: 86_400,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    })?;
    let req = ChooseRequest {
        campaign_id: "footprint".into(),
        segment: "returning-customers".into(),
        ..ChooseRequest::default()
    };
    engine.sync()?;
    let (base_rss, base_disk) = (rss_bytes(), dir_bytes(dir.path()));
    let t = Instant::now();
    for i in 0..n {
        engine.choose(&req)?;
        if i % 100_000 == 0 {
            // Let the writer keep up, as a daemon's would between requests.
            while engine.write_backlog().0 > 200_000 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
    engine.sync()?;
    let took = t.elapsed();
    let rss = rss_bytes().saturating_sub(base_rss);
    let disk = dir_bytes(dir.path()).saturating_sub(base_disk);
    println!(
        "{n} pending decisions made in {took:.2?}; resident set grew {:.1} MB = {:.0} bytes per pending decision; data directory grew {:.1} MB = {:.0} bytes per pending decision",
        rss as f64 / 1e6,
        rss as f64 / n as f64,
        disk as f64 / 1e6,
        disk as f64 / n as f64
    );
    engine.shutdown()?;
    drop(engine);
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["--reload"])
        .arg(dir.path())
        .args(["--cache-mb", &cache_mb.to_string()])
        .args((!decision_log).then_some("--no-decision-log"))
        .status()?;
    if !status.success() {
        return Err("the restarted process failed".into());
    }
    println!(
        "data directory after the restart: {:.1} MB",
        dir_bytes(dir.path()) as f64 / 1e6
    );
    Ok(())
}
