//! The soak and the overload test: runs the real daemon at a fraction of
//! its measured maximum and samples what must stay flat.
//!
//! ```sh
//! cargo build --release --bins --examples
//! target/release/examples/soak --minutes 2                 # the developer's soak
//! target/release/examples/soak --minutes 60 --out soak-1h  # the one-hour soak
//! target/release/examples/soak --minutes 5 --load 2 --out overload   # twice saturation
//! ```
//!
//! The daemon runs pinned to core 0 and this load generator to core 1 (as in
//! `grpc_bench`), so the calibration measures the daemon, not the client.
//!
//! **Calibration** (10 s, the first 2 s not counted): 100 callers in a closed
//! loop make the soak's own mix at full speed: `Choose` over 3 campaigns × 8
//! segments, and a `Reward` for 30% of the decisions. The result is the
//! maximum in Choose calls per second (with their Rewards).
//!
//! **The run**: an open loop (arrivals on a clock, not on answers) at
//! `--load` × that maximum (default 0.5; or `--rate N`): 30% of decisions get
//! a `Reward` after a uniform delay up to ⅔ of the reward timeout, the rest
//! expire at the timeout (30 s for runs of ten minutes or more, 10 s for
//! shorter ones; `--reward-timeout`). The decision log is bounded at 32 MiB
//! (4 MiB for runs shorter than ten minutes) so that its bound is reached
//! during the warm-up (at the default 1 GiB the disk grows for the first
//! hours at these rates, then stays flat the same way); every other
//! setting is the daemon's default (flags after `--` are passed on).
//!
//! Every interval (a minute; a twelfth of runs shorter than ten minutes) it
//! records the daemon's RSS, the data directory's size on disk, the p99
//! latency of the interval's accepted calls (from the moment the daemon's
//! HTTP/2 stream limit let the call's stream open to its answer: the
//! daemon's part) and the p99 wait before that opening (in this client, at
//! the daemon's `--max-concurrent-streams`), the calls answered, shed
//! (`RESOURCE_EXHAUSTED`) and failed, into `OUT/soak.csv`, and draws
//! `OUT/soak-memory.svg` and `OUT/soak-latency.svg`.
//!
//! **Verdict** after the warm-up (the first fifth of the run, and at least
//! a minute and three reward timeouts, by when pending decisions and
//! retained ones have reached their plateau): RSS and disk within ±10% of their mean over the
//! rest of the run, and
//! - at `--load` ≤ 1 (the soak): no error and no call shed;
//! - above 1 (overload): no error other than shedding, and the p99 of
//!   accepted calls bounded: no interval's p99 above twice the median
//!   interval's.
//!
//! Exit 1 when the verdict fails. Loopback only; stops by itself.

mod support;

use banditd::api::pb;
use banditd::sim::svg::{plain_chart, Series};
use bytes::Bytes;
use hdrhistogram::Histogram;
use prost::Message;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::{
    call, call_answer_opened, connect, frame, pin_to_core, sibling, spawn_banditd, Answer,
    BoxError, Client,
};

const CAMPAIGNS: [&str; 3] = ["soak-a", "soak-b", "soak-c"];
const SEGMENTS: usize = 8;
const REWARDED: f64 = 0.3;
/// Calls the generator lets be in flight before it counts the next
/// arrivals as not sent: four times the daemon's default in-flight limit,
/// so that under overload the daemon, not the generator, sheds.
const MAX_OUTSTANDING: usize = 4 * 4096;
const CONNECTIONS: usize = 8;
const CHOOSE: &str = "/banditd.v1.Bandit/Choose";
const REWARD: &str = "/banditd.v1.Bandit/Reward";

struct Args {
    minutes: f64,
    load: f64,
    rate: Option<f64>,
    reward_timeout_s: Option<u64>,
    out: PathBuf,
    server_flags: Vec<String>,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        minutes: 2.0,
        load: 0.5,
        rate: None,
        reward_timeout_s: None,
        out: PathBuf::from("soak-out"),
        server_flags: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--minutes" => a.minutes = value("--minutes")?.parse()?,
            "--load" => a.load = value("--load")?.parse()?,
            "--rate" => a.rate = Some(value("--rate")?.parse()?),
            "--reward-timeout" => a.reward_timeout_s = Some(value("--reward-timeout")?.parse()?),
            "--out" => a.out = value("--out")?.into(),
            "--" => a.server_flags = it.by_ref().collect(),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if !(a.minutes > 0.0 && a.minutes <= 24.0 * 60.0) {
        return Err("--minutes must be in (0, 1440]".into());
    }
    if !(a.load > 0.0 && a.load <= 10.0) {
        return Err("--load must be in (0, 10]".into());
    }
    if a.rate.is_some_and(|r| !(1.0..=1e6).contains(&r)) {
        return Err("--rate must be in 1..=1000000".into());
    }
    if a.reward_timeout_s.is_some_and(|t| !(1..=3600).contains(&t)) {
        return Err("--reward-timeout must be in 1..=3600 seconds".into());
    }
    Ok(a)
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

/// The pre-encoded Choose requests, one per campaign and segment.
fn choose_bodies() -> Vec<Bytes> {
    let mut out = Vec::new();
    for c in CAMPAIGNS {
        for s in 0..SEGMENTS {
            out.push(frame(&pb::ChooseRequest {
                campaign_id: c.into(),
                segment: format!("segment-{s}"),
                ..Default::default()
            }));
        }
    }
    out
}

fn reward_body(id: String) -> Bytes {
    frame(&pb::RewardRequest {
        decision_id: id,
        value: 1.0,
        slot: 0,
    })
}

async fn create_campaigns(
    client: &Client,
    addr: SocketAddr,
    timeout_s: u64,
) -> Result<(), BoxError> {
    for id in CAMPAIGNS {
        let req = pb::CreateCampaignRequest {
            campaign: Some(pb::Campaign {
                id: id.into(),
                arms: ["a", "b", "c"]
                    .iter()
                    .map(|a| pb::Arm {
                        id: (*a).into(),
                        retired: false,
                        ..Default::default()
                    })
                    .collect(),
                policy: None,
                reward_timeout_seconds: timeout_s as u32,
                default_reward: 0.0,
                decay_half_life_seconds: None,
                holdout_fraction: 0.0,
            }),
        };
        call(
            client,
            addr,
            "/banditd.v1.Campaigns/CreateCampaign",
            frame(&req),
        )
        .await?;
    }
    Ok(())
}

/// Choose calls per second at full speed with the soak's mix (100 callers
/// in a closed loop for 10 s; the first 2 s not counted).
async fn calibrate(clients: &[Client], addr: SocketAddr) -> Result<f64, BoxError> {
    let t0 = Instant::now();
    let (warm, end) = (t0 + Duration::from_secs(2), t0 + Duration::from_secs(10));
    let bodies = Rc::new(choose_bodies());
    let mut tasks = Vec::new();
    let local = tokio::task::LocalSet::new();
    for w in 0..100usize {
        let client = clients[w % clients.len()].clone();
        let bodies = bodies.clone();
        tasks.push(local.spawn_local(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(w as u64);
            let mut counted = 0u64;
            while Instant::now() < end {
                let body = bodies[rng.random_range(0..bodies.len())].clone();
                let answer = call(&client, addr, CHOOSE, body).await?;
                if Instant::now() >= warm {
                    counted += 1;
                }
                if rng.random_bool(REWARDED) {
                    let id = pb::ChooseResponse::decode(answer)?.decision_id;
                    call(&client, addr, REWARD, reward_body(id)).await?;
                }
            }
            Ok::<u64, BoxError>(counted)
        }));
    }
    let counted = local
        .run_until(async {
            let mut n = 0;
            for t in tasks {
                n += t.await??;
            }
            Ok::<u64, BoxError>(n)
        })
        .await?;
    Ok(counted as f64 / 8.0)
}

/// What the calls of one interval did.
struct Tally {
    /// From the stream's opening to the answer: the daemon's part.
    latency: Histogram<u64>,
    /// From the arrival to the stream's opening: waiting in this client
    /// for a place under the daemon's stream limit.
    waited: Histogram<u64>,
    ok: u64,
    shed: u64,
    failed: BTreeMap<String, u64>,
    not_sent: u64,
    outstanding: usize,
}

impl Tally {
    fn new() -> Result<Tally, BoxError> {
        Ok(Tally {
            latency: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            waited: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            ok: 0,
            shed: 0,
            failed: BTreeMap::new(),
            not_sent: 0,
            outstanding: 0,
        })
    }

    fn record(
        &mut self,
        started: Instant,
        opened: Option<Instant>,
        answer: &Result<Answer, BoxError>,
    ) {
        let micros = |d: Duration| d.as_micros().max(1) as u64;
        match answer {
            Ok(Answer::Ok(_)) => {
                self.ok += 1;
                let opened = opened.unwrap_or(started);
                let _ = self.latency.record(micros(opened.elapsed()));
                let _ = self.waited.record(micros(opened - started));
            }
            Ok(Answer::Status(Some(8))) => self.shed += 1,
            Ok(Answer::Status(code)) => {
                *self
                    .failed
                    .entry(format!("grpc-status {code:?}"))
                    .or_default() += 1
            }
            Err(e) => *self.failed.entry(format!("transport: {e}")).or_default() += 1,
        }
    }
}

/// One arrival: a Choose, and for some a Reward after a delay.
async fn arrival(
    client: Client,
    addr: SocketAddr,
    body: Bytes,
    reward_after: Option<Duration>,
    tally: Rc<RefCell<Tally>>,
) {
    let started = Instant::now();
    let mut opened = None;
    let answer = call_answer_opened(&client, addr, CHOOSE, body, &mut opened).await;
    tally.borrow_mut().record(started, opened, &answer);
    let decision = match (&answer, reward_after) {
        (Ok(Answer::Ok(b)), Some(_)) => pb::ChooseResponse::decode(b.clone()).ok(),
        _ => None,
    };
    tally.borrow_mut().outstanding -= 1;
    let (Some(decision), Some(delay)) = (decision, reward_after) else {
        return;
    };
    tokio::time::sleep(delay).await;
    tally.borrow_mut().outstanding += 1;
    let started = Instant::now();
    let mut opened = None;
    let body = reward_body(decision.decision_id);
    let answer = call_answer_opened(&client, addr, REWARD, body, &mut opened).await;
    let mut t = tally.borrow_mut();
    t.record(started, opened, &answer);
    t.outstanding -= 1;
}

struct Sample {
    minute: f64,
    rss_mib: f64,
    disk_mib: f64,
    p99_ms: f64,
    wait_p99_ms: f64,
    ok: u64,
    shed: u64,
    failed: u64,
    not_sent: u64,
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    let bin = sibling("banditd", false)?;
    let mut flags: Vec<&str> = a.server_flags.iter().map(String::as_str).collect();
    if !flags.contains(&"--decision-log-max-mb") {
        // Small enough to be reached during the warm-up.
        flags.extend([
            "--decision-log-max-mb",
            if a.minutes >= 10.0 { "32" } else { "4" },
        ]);
    }
    let daemon = spawn_banditd(&bin, Some(0), &flags, true)?;
    pin_to_core(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(a, daemon))
}

async fn run(a: Args, daemon: support::Server) -> Result<(), BoxError> {
    let addr = daemon.addr;
    let pid = daemon.child.id();
    let data_dir = daemon
        .dir
        .as_ref()
        .ok_or("no data dir")?
        .path()
        .to_path_buf();
    let timeout_s = a
        .reward_timeout_s
        .unwrap_or(if a.minutes >= 10.0 { 30 } else { 10 });
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(connect(addr).await?);
    }
    create_campaigns(&clients[0], addr, timeout_s).await?;
    let (max, rate) = match a.rate {
        Some(r) => (None, r),
        None => {
            let max = calibrate(&clients, addr).await?;
            (Some(max), max * a.load)
        }
    };
    match max {
        Some(m) => eprintln!(
            "calibration: {m:.0} Choose/s (+{:.0}% Rewards) at full speed; running at {:.0}% = {rate:.0} Choose/s",
            REWARDED * 100.0,
            a.load * 100.0
        ),
        None => eprintln!("running at {rate:.0} Choose/s (--rate)"),
    }

    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let interval = if a.minutes >= 10.0 {
        Duration::from_secs(60)
    } else {
        total / 12
    };
    let warmup = (total / 5).max(Duration::from_secs((3 * timeout_s).max(60)));
    let bodies = choose_bodies();
    let tally = Rc::new(RefCell::new(Tally::new()?));
    let started = Instant::now();
    let generator = {
        let tally = tally.clone();
        let clients = clients.clone();
        tokio::task::spawn_local(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(20261202);
            let mut ticker = tokio::time::interval(Duration::from_millis(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut due = 0.0f64;
            let mut n = 0usize;
            while started.elapsed() < total {
                ticker.tick().await;
                // Arrivals owed by the clock so far, not by the answers.
                let owed = started.elapsed().as_secs_f64() * rate - due;
                for _ in 0..owed.max(0.0) as u64 {
                    due += 1.0;
                    if tally.borrow().outstanding >= MAX_OUTSTANDING {
                        tally.borrow_mut().not_sent += 1;
                        continue;
                    }
                    tally.borrow_mut().outstanding += 1;
                    n += 1;
                    let reward_after = rng.random_bool(REWARDED).then(|| {
                        Duration::from_millis(rng.random_range(0..timeout_s * 1000 * 2 / 3))
                    });
                    tokio::task::spawn_local(arrival(
                        clients[n % clients.len()].clone(),
                        addr,
                        bodies[rng.random_range(0..bodies.len())].clone(),
                        reward_after,
                        tally.clone(),
                    ));
                }
            }
        })
    };

    let mut samples = Vec::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut next = started + interval;
    while samples.len() < (total.as_secs_f64() / interval.as_secs_f64()).round() as usize {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let mut fresh = Tally::new()?;
        fresh.outstanding = tally.borrow().outstanding;
        let t = std::mem::replace(&mut *tally.borrow_mut(), fresh);
        for (k, v) in &t.failed {
            *failures.entry(k.clone()).or_default() += v;
        }
        let s = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss_mib: rss_bytes(pid) as f64 / 1048576.0,
            disk_mib: disk_bytes(&data_dir) as f64 / 1048576.0,
            p99_ms: t.latency.value_at_quantile(0.99) as f64 / 1000.0,
            wait_p99_ms: t.waited.value_at_quantile(0.99) as f64 / 1000.0,
            ok: t.ok,
            shed: t.shed,
            failed: t.failed.values().sum(),
            not_sent: t.not_sent,
        };
        eprintln!(
            "[{:>5.1} min] RSS {:.1} MiB, disk {:.1} MiB, p99 {:.2} ms (waiting for a stream: p99 {:.2} ms), answered {}, shed {}, failed {}, not sent {}, in flight {}",
            s.minute, s.rss_mib, s.disk_mib, s.p99_ms, s.wait_p99_ms, s.ok, s.shed, s.failed, s.not_sent, t.outstanding
        );
        samples.push(s);
    }
    let _ = generator.await;
    report(&a, max, rate, timeout_s, warmup, &samples, &failures)
}

fn report(
    a: &Args,
    max: Option<f64>,
    rate: f64,
    timeout_s: u64,
    warmup: Duration,
    samples: &[Sample],
    failures: &BTreeMap<String, u64>,
) -> Result<(), BoxError> {
    std::fs::create_dir_all(&a.out)?;
    let mut csv =
        String::from("minute,rss_mib,disk_mib,p99_ms,wait_p99_ms,answered,shed,failed,not_sent\n");
    for s in samples {
        csv.push_str(&format!(
            "{:.2},{:.2},{:.2},{:.3},{:.3},{},{},{},{}\n",
            s.minute,
            s.rss_mib,
            s.disk_mib,
            s.p99_ms,
            s.wait_p99_ms,
            s.ok,
            s.shed,
            s.failed,
            s.not_sent
        ));
    }
    std::fs::write(a.out.join("soak.csv"), csv)?;
    let series = |name: &str, f: fn(&Sample) -> f64| Series {
        name: name.into(),
        points: samples.iter().map(|s| (s.minute, f(s))).collect(),
        band: None,
    };
    let what = format!("{rate:.0} Choose/s for {} min", a.minutes);
    std::fs::write(
        a.out.join("soak-memory.svg"),
        plain_chart(
            &format!("banditd soak, {what}: memory and disk"),
            "minutes",
            "MiB",
            &[
                series("RSS", |s| s.rss_mib),
                series("data directory", |s| s.disk_mib),
            ],
        ),
    )?;
    std::fs::write(
        a.out.join("soak-latency.svg"),
        plain_chart(
            &format!("banditd soak, {what}: p99 of accepted calls"),
            "minutes",
            "ms",
            &[
                series("p99 latency (from the stream's opening)", |s| s.p99_ms),
                series("p99 wait for a stream, in the client", |s| s.wait_p99_ms),
            ],
        ),
    )?;

    let warm_min = warmup.as_secs_f64() / 60.0;
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.minute > warm_min + 1e-9)
        .collect();
    if warm.len() < 2 {
        return Err(format!(
            "the run is too short for its warm-up ({warm_min:.1} min): give more --minutes"
        )
        .into());
    }
    let flat = |f: fn(&Sample) -> f64| {
        let mean = warm.iter().map(|s| f(s)).sum::<f64>() / warm.len() as f64;
        let worst = warm
            .iter()
            .map(|s| (f(s) - mean).abs() / mean.max(1e-9))
            .fold(0.0f64, f64::max);
        (mean, worst)
    };
    let (rss_mean, rss_dev) = flat(|s| s.rss_mib);
    let (disk_mean, disk_dev) = flat(|s| s.disk_mib);
    let mut p99s: Vec<f64> = warm.iter().map(|s| s.p99_ms).collect();
    p99s.sort_by(f64::total_cmp);
    let (p99_median, p99_max) = (p99s[p99s.len() / 2], p99s[p99s.len() - 1]);
    let wait_max = warm.iter().map(|s| s.wait_p99_ms).fold(0.0f64, f64::max);
    let sum = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>();
    let (ok, shed, failed, not_sent) = (
        sum(|s| s.ok),
        sum(|s| s.shed),
        sum(|s| s.failed),
        sum(|s| s.not_sent),
    );
    let warm_secs = warm.len() as f64 * (samples[1].minute - samples[0].minute) * 60.0;
    let accepted_per_s = warm.iter().map(|s| s.ok).sum::<u64>() as f64 / warm_secs.max(1e-9);
    println!(
        "{} at {rate:.0} Choose/s{} (reward timeout {timeout_s} s, warm-up {warm_min:.1} min):",
        if a.load > 1.0 { "overload" } else { "soak" },
        max.map_or(String::new(), |m| format!(
            " = {:.0}% of the measured {m:.0}",
            a.load * 100.0
        )),
    );
    println!(
        "  after warm-up: RSS {rss_mean:.1} MiB (worst ±{:.1}%), disk {disk_mean:.1} MiB (worst ±{:.1}%), accepted-call p99 median {p99_median:.2} ms, worst {p99_max:.2} ms (in this client waiting for a stream: p99 worst {wait_max:.2} ms), {accepted_per_s:.0} calls/s accepted",
        rss_dev * 100.0,
        disk_dev * 100.0,
    );
    println!(
        "  whole run: {ok} answered, {shed} shed (RESOURCE_EXHAUSTED), {failed} failed, {not_sent} not sent (generator at its in-flight bound); {}",
        a.out.join("soak.csv").display()
    );
    for (k, v) in failures {
        println!("  failed: {v} × {k}");
    }
    let flat_ok = rss_dev <= 0.10 && disk_dev <= 0.10;
    let verdict = if a.load > 1.0 {
        flat_ok && failed == 0 && p99_max <= 2.0 * p99_median
    } else {
        flat_ok && failed == 0 && shed == 0 && not_sent == 0
    };
    if verdict {
        println!("verdict: PASS");
        Ok(())
    } else {
        println!("verdict: FAIL");
        std::process::exit(1);
    }
}
