//! The soak: runs the real daemon for a while at half its measured maximum
//! and samples what should stay flat.
//!
//! ```sh
//! cargo build --release --bins --examples
//! target/release/examples/soak --minutes 2            # the developer's version
//! target/release/examples/soak --minutes 60 --out soak-1h
//! ```
//!
//! Traffic: `Choose` over 3 campaigns × 8 segments at half the rate measured
//! in an 8-second calibration at full speed (or `--rate`); 30% of decisions
//! get a `Reward` after 0–20 s, the rest expire at the campaigns' 30-second
//! timeout (default reward). Every sample interval (a minute; a tenth of the
//! run when it is shorter than ten minutes) it records the daemon's RSS, the
//! data directory's size on disk, the p99 latency of the interval's calls
//! and the errors, into `OUT/soak.csv` and `OUT/soak.svg`. Verdict: after the
//! first fifth of the run (warm-up), RSS and disk within ±10% of their mean,
//! and no error; exit 1 otherwise.

use banditd::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use banditd::sim::svg::{line_chart, Series};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CAMPAIGNS: [&str; 3] = ["soak-a", "soak-b", "soak-c"];

struct Daemon {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path) -> Result<Daemon, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn,banditd=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let err = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(err).lines();
    let addr = loop {
        let line = lines.next().ok_or("banditd did not start")??;
        if line.contains("banditd started") {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            break v["fields"]["listen"]
                .as_str()
                .ok_or("no listen")?
                .to_string();
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("\"ERROR\"") || line.contains("\"WARN\"") {
                eprintln!("daemon: {line}");
            }
        }
    });
    Ok(Daemon {
        child,
        addr: format!("http://{addr}"),
        dir,
    })
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[derive(Default)]
struct Shared {
    latency: Mutex<Option<Histogram<u64>>>,
    errors: AtomicU64,
    chooses: AtomicU64,
    rewards: AtomicU64,
}

impl Shared {
    fn record(&self, started: Instant, ok: bool) {
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = self.latency.lock().as_mut() {
            let _ = h.record(started.elapsed().as_micros() as u64);
        }
    }
}

async fn one_choice(
    mut bandit: BanditClient<Channel>,
    shared: Arc<Shared>,
    seed: u64,
    reward_timeout_s: u64,
) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let campaign = CAMPAIGNS[rng.random_range(0..CAMPAIGNS.len())];
    let req = pb::ChooseRequest {
        campaign_id: campaign.into(),
        segment: format!("segment-{}", rng.random_range(0..8)),
        ..Default::default()
    };
    let started = Instant::now();
    let answer = bandit.choose(req).await;
    shared.record(started, answer.is_ok());
    shared.chooses.fetch_add(1, Ordering::Relaxed);
    let Ok(answer) = answer else { return };
    if rng.random_bool(0.3) {
        let delay = Duration::from_millis(rng.random_range(0..(reward_timeout_s * 1000 * 2 / 3)));
        tokio::time::sleep(delay).await;
        let started = Instant::now();
        let r = bandit
            .reward(pb::RewardRequest {
                decision_id: answer.into_inner().decision_id,
                value: 1.0,
            })
            .await;
        shared.record(started, r.is_ok());
        shared.rewards.fetch_add(1, Ordering::Relaxed);
    }
}

/// Choose calls per second at full speed (32 callers, `seconds` long).
async fn calibrate(channel: &Channel, seconds: u64) -> f64 {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..32 {
        let mut bandit = BanditClient::new(channel.clone());
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < stop {
                let req = pb::ChooseRequest {
                    campaign_id: CAMPAIGNS[(w + i as usize) % 3].into(),
                    segment: format!("segment-{}", i % 8),
                    ..Default::default()
                };
                if bandit.choose(req).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    count.load(Ordering::Relaxed) as f64 / seconds as f64
}

struct Sample {
    minute: f64,
    rss_mib: f64,
    disk_mib: f64,
    p99_ms: f64,
    errors: u64,
    calls: u64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut minutes = 2.0f64;
    let mut rate: Option<f64> = None;
    let mut out = PathBuf::from("soak-out");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--minutes" => minutes = args.next().ok_or("--minutes N")?.parse()?,
            "--rate" => rate = Some(args.next().ok_or("--rate N")?.parse()?),
            "--out" => out = args.next().ok_or("--out DIR")?.into(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let bin = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .ok_or("no target dir")?
        .join("banditd");
    let daemon = spawn(&bin)?;
    let channel = Channel::from_shared(daemon.addr.clone())?.connect().await?;
    let reward_timeout_s = 30u64;
    let mut admin = CampaignsClient::new(channel.clone());
    for id in CAMPAIGNS {
        admin
            .create_campaign(pb::CreateCampaignRequest {
                campaign: Some(pb::Campaign {
                    id: id.into(),
                    arms: ["a", "b", "c"]
                        .iter()
                        .map(|a| pb::Arm {
                            id: (*a).into(),
                            retired: false,
                        })
                        .collect(),
                    policy: None,
                    reward_timeout_seconds: reward_timeout_s as u32,
                    default_reward: 0.0,
                    decay_half_life_seconds: None,
                }),
            })
            .await?;
    }
    let rate = match rate {
        Some(r) => r,
        None => {
            let max = calibrate(&channel, 8).await;
            eprintln!("calibration: {max:.0} Choose/s at full speed; soaking at half");
            max / 2.0
        }
    };
    let total = Duration::from_secs_f64(minutes * 60.0);
    let interval = if minutes < 10.0 {
        total / 10
    } else {
        Duration::from_secs(60)
    };
    let shared = Arc::new(Shared::default());
    *shared.latency.lock() = Some(Histogram::new(3)?);
    let started = Instant::now();
    let generator = {
        let shared = shared.clone();
        let channel = channel.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            while started.elapsed() < total {
                ticker.tick().await;
                n += 1;
                tokio::spawn(one_choice(
                    BanditClient::new(channel.clone()),
                    shared.clone(),
                    n,
                    reward_timeout_s,
                ));
            }
        })
    };
    let pid = daemon.child.id();
    let mut samples = Vec::new();
    let mut last_calls = 0;
    while started.elapsed() < total {
        tokio::time::sleep(interval).await;
        let h = shared.latency.lock().replace(Histogram::new(3)?);
        let calls = shared.chooses.load(Ordering::Relaxed) + shared.rewards.load(Ordering::Relaxed);
        let s = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss_mib: rss_bytes(pid) as f64 / 1048576.0,
            disk_mib: disk_bytes(daemon.dir.path()) as f64 / 1048576.0,
            p99_ms: h.map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0),
            errors: shared.errors.load(Ordering::Relaxed),
            calls: calls - last_calls,
        };
        last_calls = calls;
        eprintln!(
            "[{:>5.1} min] RSS {:.1} MiB, disk {:.1} MiB, p99 {:.2} ms, calls {}, errors {}",
            s.minute, s.rss_mib, s.disk_mib, s.p99_ms, s.calls, s.errors
        );
        samples.push(s);
    }
    let _ = generator.await;

    std::fs::create_dir_all(&out)?;
    let mut csv = String::from("minute,rss_mib,disk_mib,p99_ms,calls,errors_total\n");
    for s in &samples {
        csv.push_str(&format!(
            "{:.2},{:.2},{:.2},{:.3},{},{}\n",
            s.minute, s.rss_mib, s.disk_mib, s.p99_ms, s.calls, s.errors
        ));
    }
    std::fs::write(out.join("soak.csv"), csv)?;
    let series = |name: &str, f: fn(&Sample) -> f64| Series {
        name: name.into(),
        points: samples.iter().map(|s| (s.minute, f(s))).collect(),
        band: None,
    };
    let svg = line_chart(
        &format!("banditd soak: {rate:.0} Choose/s for {minutes} min"),
        "minutes",
        "MiB / ms",
        &[
            series("RSS (MiB)", |s| s.rss_mib),
            series("disk (MiB)", |s| s.disk_mib),
            series("p99 latency (ms)", |s| s.p99_ms),
        ],
    );
    std::fs::write(out.join("soak.svg"), svg)?;

    let warm = &samples[samples.len() / 5..];
    let flat = |f: fn(&Sample) -> f64| {
        let mean = warm.iter().map(f).sum::<f64>() / warm.len().max(1) as f64;
        let worst = warm
            .iter()
            .map(|s| (f(s) - mean).abs() / mean.max(1e-9))
            .fold(0.0f64, f64::max);
        (mean, worst)
    };
    let (rss_mean, rss_dev) = flat(|s| s.rss_mib);
    let (disk_mean, disk_dev) = flat(|s| s.disk_mib);
    let errors = shared.errors.load(Ordering::Relaxed);
    let p99_max = warm.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
    println!(
        "soak {minutes} min at {rate:.0} Choose/s: after warm-up RSS {rss_mean:.1} MiB (±{:.1}%), disk {disk_mean:.1} MiB (±{:.1}%), worst p99 {p99_max:.2} ms, {errors} errors; {} Choose, {} Reward; {}",
        rss_dev * 100.0,
        disk_dev * 100.0,
        shared.chooses.load(Ordering::Relaxed),
        shared.rewards.load(Ordering::Relaxed),
        out.join("soak.csv").display()
    );
    if rss_dev <= 0.10 && disk_dev <= 0.10 && errors == 0 {
        println!("verdict: flat, no errors");
        Ok(())
    } else {
        println!("verdict: NOT flat or errors");
        std::process::exit(1);
    }
}
