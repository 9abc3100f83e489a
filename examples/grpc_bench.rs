//! gRPC load, as ratios: banditd against a bare tonic echo server
//! (`examples/echo.rs`), each pinned to core 0 in turn, in the same run,
//! with this load generator pinned to core 1.
//!
//! ```sh
//! cargo build --release --bins --examples
//! target/release/examples/grpc_bench [--seconds 5] [--rounds 3] \
//!     [--only campaign,choose,reward,mix,strict] [--segments 10000] [--reward-rate 0.03] \
//!     [--timeout-seconds T] [--warmup-seconds W] [-- banditd flags]
//! ```
//!
//! The client speaks HTTP/2 directly (the `h2` crate, pre-encoded
//! protobuf bodies), several times lighter per call than a tonic client,
//! so the servers, not the client, set the pace (measured: with the echo
//! at its ceiling the server core is 99% busy, the client's 78%). The
//! machine's speed drifts by tens of percent over minutes, so each
//! scenario runs several rounds of (echo, banditd), and the ratios are
//! taken per round.
//! Scenarios:
//! - `campaign`, the standard one, shaped like a marketing campaign: a
//!   Choose for a segment drawn from `--segments` (10,000) with Zipf
//!   traffic (exponent 1: the busiest segment gets about 10% of the
//!   calls, half of them are outside the top 100), and for about
//!   `--reward-rate` (3%) of the decisions a Reward of 1 right after; the
//!   rest are left to expire at the campaign's timeout. Run for a 60 s and
//!   a 24 h timeout (`--timeout-seconds T` for one), 100 calls in flight.
//!   banditd is loaded for `--warmup-seconds` before the measurement
//!   (default: the timeout plus 5 s, at most 70 s, so that with a 60 s
//!   timeout decisions expire as fast as they are made);
//! - `choose`, `reward` (of decisions made beforehand) and `mix` (a Reward
//!   after every Choose) for one segment, with 100 calls in flight and
//!   with one; and `strict`: `--durability strict` Choose with 100 in
//!   flight.
//!
//! One campaign of 10 arms (Thompson sampling). Loopback only.

mod support;

use banditd::api::pb;
use bytes::Bytes;
use hdrhistogram::Histogram;
use prost::Message;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{
    call, clients, connect, frame, pin_to_core, sibling, spawn_banditd, spawn_echo, BoxError,
};

const CAMPAIGN: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rpc {
    Choose,
    Reward,
    Mix,
    /// The production-shaped mix (see the module doc).
    Campaign,
}

/// The production-shaped traffic: segments, Zipf weights, reward rate.
#[derive(Debug, Clone)]
struct Traffic {
    /// A pre-encoded Choose per segment.
    bodies: std::sync::Arc<Vec<Bytes>>,
    /// Cumulative Zipf weights over the segments.
    cdf: std::sync::Arc<Vec<f64>>,
    reward_rate: f64,
}

impl Traffic {
    fn new(segments: usize, reward_rate: f64) -> Traffic {
        let bodies = (0..segments)
            .map(|i| {
                frame(&pb::ChooseRequest {
                    campaign_id: CAMPAIGN.into(),
                    segment: format!("segment-{i}"),
                    ..Default::default()
                })
            })
            .collect();
        let weights: Vec<f64> = (1..=segments).map(|i| 1.0 / i as f64).collect();
        let total: f64 = weights.iter().sum();
        let cdf = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        Traffic {
            bodies: std::sync::Arc::new(bodies),
            cdf: std::sync::Arc::new(cdf),
            reward_rate,
        }
    }

    fn body(&self, u: f64) -> Bytes {
        let i = self
            .cdf
            .partition_point(|&c| c < u)
            .min(self.bodies.len() - 1);
        self.bodies[i].clone()
    }
}

/// Throughput and latency of one measurement.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

fn choose_body() -> Bytes {
    frame(&pb::ChooseRequest {
        campaign_id: CAMPAIGN.into(),
        segment: "returning-customers".into(),
        ..Default::default()
    })
}

fn reward_body(id: &str) -> Bytes {
    frame(&pb::RewardRequest {
        decision_id: id.into(),
        value: 1.0,
        slot: 0,
    })
}

async fn create_campaign(addr: SocketAddr, timeout_seconds: u32) -> Result<(), BoxError> {
    let client = connect(addr).await?;
    let req = pb::CreateCampaignRequest {
        campaign: Some(pb::Campaign {
            id: CAMPAIGN.into(),
            arms: (0..10)
                .map(|i| pb::Arm {
                    id: format!("offer-{i}"),
                    retired: false,
                    ..Default::default()
                })
                .collect(),
            policy: Some(pb::campaign::Policy::Thompson(
                pb::ThompsonSampling::default(),
            )),
            reward_timeout_seconds: timeout_seconds,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        }),
    };
    call(
        &client,
        addr,
        "/banditd.v1.Campaigns/CreateCampaign",
        frame(&req),
    )
    .await?;
    Ok(())
}

/// Makes decisions for the Reward scenario: `per_worker` ids for each of
/// `workers` workers.
async fn prefill(
    addr: SocketAddr,
    workers: usize,
    per_worker: usize,
) -> Result<Vec<Vec<String>>, BoxError> {
    let clients = clients(addr, workers).await?;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let body = choose_body();
            let mut ids = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let resp = call(&client, addr, "/banditd.v1.Bandit/Choose", body.clone()).await?;
                ids.push(pb::ChooseResponse::decode(resp)?.decision_id);
            }
            Ok::<_, BoxError>(ids)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Runs `workers` callers for `warmup + seconds`; measures the last `seconds`.
#[allow(clippy::too_many_arguments)]
async fn load(
    addr: SocketAddr,
    rpc: Rpc,
    workers: usize,
    ids: Option<Vec<Vec<String>>>,
    traffic: &Traffic,
    warmup: Duration,
    seconds: Duration,
) -> Result<Figures, BoxError> {
    let clients = clients(addr, workers).await?;
    let start = Instant::now() + warmup;
    let end = start + seconds;
    let mut ids = ids.unwrap_or_default().into_iter();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        let mut mine = ids.next().unwrap_or_default().into_iter();
        let traffic = traffic.clone();
        tasks.push(tokio::spawn(async move {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::SmallRng::seed_from_u64(w as u64);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut calls = 0u64;
            let choose = choose_body();
            let mut n = 0u64;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let measured = now >= start;
                let mut timed = |t0: Instant, hist: &mut Histogram<u64>| {
                    if measured {
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        calls += 1;
                    }
                };
                match rpc {
                    Rpc::Choose => {
                        let t0 = Instant::now();
                        call(&client, addr, "/banditd.v1.Bandit/Choose", choose.clone()).await?;
                        timed(t0, &mut hist);
                    }
                    Rpc::Reward => {
                        n += 1;
                        let id = match mine.next() {
                            Some(id) => id,
                            None if ids_needed() => {
                                return Err::<_, BoxError>("ran out of decisions to reward".into())
                            }
                            None => format!("1-1-{n:012x}"),
                        };
                        let t0 = Instant::now();
                        call(&client, addr, "/banditd.v1.Bandit/Reward", reward_body(&id)).await?;
                        timed(t0, &mut hist);
                    }
                    Rpc::Mix => {
                        let t0 = Instant::now();
                        let resp = call(&client, addr, "/banditd.v1.Bandit/Choose", choose.clone())
                            .await?;
                        timed(t0, &mut hist);
                        let id = pb::ChooseResponse::decode(resp)?.decision_id;
                        let t0 = Instant::now();
                        call(&client, addr, "/banditd.v1.Bandit/Reward", reward_body(&id)).await?;
                        timed(t0, &mut hist);
                    }
                    Rpc::Campaign => {
                        let body = traffic.body(rng.random());
                        let t0 = Instant::now();
                        let resp = call(&client, addr, "/banditd.v1.Bandit/Choose", body).await?;
                        timed(t0, &mut hist);
                        if rng.random::<f64>() < traffic.reward_rate {
                            let id = pb::ChooseResponse::decode(resp)?.decision_id;
                            let t0 = Instant::now();
                            call(&client, addr, "/banditd.v1.Bandit/Reward", reward_body(&id))
                                .await?;
                            timed(t0, &mut hist);
                        }
                    }
                }
            }
            Ok((hist, calls))
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut calls = 0;
    for t in tasks {
        let (h, c) = t.await??;
        hist.add(h)?;
        calls += c;
    }
    Ok(Figures {
        rps: calls as f64 / seconds.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
    })
}

/// Only banditd's Reward scenario must have real decisions to reward.
fn ids_needed() -> bool {
    IDS_NEEDED.with(|c| c.get())
}

thread_local! {
    static IDS_NEEDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Args {
    seconds: u64,
    rounds: usize,
    only: Vec<String>,
    segments: usize,
    reward_rate: f64,
    /// The `campaign` scenario's timeouts.
    timeouts: Vec<u32>,
    /// banditd's warm-up in the `campaign` scenario (`None`: the timeout
    /// plus 5 s, at most 70 s).
    warmup: Option<u64>,
    /// Load an already running banditd instead (for profiling it).
    against: Option<SocketAddr>,
    /// Extra flags for every banditd started (after `--`).
    server_flags: Vec<String>,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        seconds: 5,
        rounds: 3,
        only: vec![
            "campaign".into(),
            "choose".into(),
            "reward".into(),
            "mix".into(),
            "strict".into(),
        ],
        segments: 10_000,
        reward_rate: 0.03,
        timeouts: vec![60, 86_400],
        warmup: None,
        against: None,
        server_flags: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--rounds" => a.rounds = it.next().ok_or("--rounds needs a value")?.parse()?,
            "--seconds" => a.seconds = it.next().ok_or("--seconds needs a value")?.parse()?,
            "--segments" => a.segments = it.next().ok_or("--segments needs a value")?.parse()?,
            "--reward-rate" => {
                a.reward_rate = it.next().ok_or("--reward-rate needs a value")?.parse()?
            }
            "--timeout-seconds" => {
                a.timeouts = vec![it
                    .next()
                    .ok_or("--timeout-seconds needs a value")?
                    .parse()?]
            }
            "--warmup-seconds" => {
                a.warmup = Some(it.next().ok_or("--warmup-seconds needs a value")?.parse()?)
            }
            "--against" => {
                a.against = Some(it.next().ok_or("--against needs an address")?.parse()?)
            }
            "--only" => {
                a.only = it
                    .next()
                    .ok_or("--only needs a value")?
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            "--" => {
                a.server_flags = it.by_ref().collect();
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if !(1..=60).contains(&a.seconds) {
        return Err("--seconds must be in 1..=60".into());
    }
    if !(1..=21).contains(&a.rounds) {
        return Err("--rounds must be in 1..=21".into());
    }
    if !(1..=100_000).contains(&a.segments) {
        return Err("--segments must be in 1..=100000".into());
    }
    if !(0.0..=1.0).contains(&a.reward_rate) {
        return Err("--reward-rate must be in [0, 1]".into());
    }
    if a.timeouts.iter().any(|t| !(1..=31_536_000).contains(t)) {
        return Err("--timeout-seconds must be in 1..=31536000".into());
    }
    if a.warmup.is_some_and(|w| w > 3_600) {
        return Err("--warmup-seconds must be at most 3600".into());
    }
    Ok(a)
}

fn bins() -> Result<(PathBuf, PathBuf), BoxError> {
    Ok((sibling("echo", true)?, sibling("banditd", false)?))
}

/// How one scenario is run.
struct Scenario<'a> {
    rpc: Rpc,
    workers: usize,
    extra: Vec<&'a str>,
    traffic: Traffic,
    timeout_seconds: u32,
    /// banditd's warm-up (the echo's is 1 s).
    warmup: Duration,
}

/// One round: the echo, then banditd, each freshly started.
async fn round(
    echo_bin: &Path,
    banditd_bin: &Path,
    sc: &Scenario<'_>,
    secs: Duration,
) -> Result<(Figures, Figures), BoxError> {
    let (rpc, workers, traffic) = (sc.rpc, sc.workers, &sc.traffic);
    let e = {
        let s = spawn_echo(echo_bin, Some(0))?;
        load(
            s.addr,
            rpc,
            workers,
            None,
            traffic,
            Duration::from_secs(1),
            secs,
        )
        .await?
    };
    let b = {
        let s = spawn_banditd(banditd_bin, Some(0), &sc.extra, false)?;
        create_campaign(s.addr, sc.timeout_seconds).await?;
        let ids = if rpc == Rpc::Reward {
            // Enough decisions for the whole run (at up to 150,000 Rewards
            // per second with 100 in flight, 40,000 with one), made by 100
            // callers and dealt out to the measured ones.
            let rate = if workers == 1 { 40_000 } else { 150_000 };
            let total = rate * (secs.as_secs() as usize + 1);
            let made = prefill(s.addr, 100, total.div_ceil(100)).await?;
            let mut dealt = vec![Vec::new(); workers];
            for (i, id) in made.into_iter().flatten().enumerate() {
                dealt[i % workers].push(id);
            }
            Some(dealt)
        } else {
            None
        };
        IDS_NEEDED.with(|c| c.set(rpc == Rpc::Reward));
        let f = load(s.addr, rpc, workers, ids, traffic, sc.warmup, secs).await;
        IDS_NEEDED.with(|c| c.set(false));
        f?
    };
    Ok((e, b))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    pin_to_core(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let secs = Duration::from_secs(a.seconds);
    if let Some(addr) = a.against {
        if !addr.ip().is_loopback() {
            return Err("--against must be a loopback address".into());
        }
        let rpc = match a.only.first().map(String::as_str) {
            Some("reward") => Rpc::Reward,
            Some("mix") => Rpc::Mix,
            Some("campaign") => Rpc::Campaign,
            _ => Rpc::Choose,
        };
        let traffic = Traffic::new(a.segments, a.reward_rate);
        let timeout = a.timeouts[0];
        let f = rt.block_on(async {
            let _ = create_campaign(addr, timeout).await;
            load(addr, rpc, 100, None, &traffic, Duration::from_secs(1), secs).await
        })?;
        println!(
            "{rpc:?} with 100 in flight against {addr}: {:.0}/s, p50 {} µs, p99 {} µs",
            f.rps, f.p50_us, f.p99_us
        );
        return Ok(());
    }
    let (echo_bin, banditd_bin) = bins()?;
    let mut rows = Vec::new();
    let one_segment = Traffic::new(1, 0.0);
    let mut plan: Vec<(String, Scenario)> = Vec::new();
    let server_flags: Vec<&str> = a.server_flags.iter().map(String::as_str).collect();
    if a.only.iter().any(|o| o == "campaign") {
        for &t in &a.timeouts {
            let warmup = a.warmup.unwrap_or((u64::from(t) + 5).min(70));
            let window = if t % 3600 == 0 {
                format!("{} h", t / 3600)
            } else {
                format!("{t} s")
            };
            plan.push((
                format!(
                    "campaign: {} segments (Zipf), {}% rewarded, timeout {window} (100 in flight)",
                    a.segments,
                    a.reward_rate * 100.0
                ),
                Scenario {
                    rpc: Rpc::Campaign,
                    workers: 100,
                    extra: server_flags.clone(),
                    traffic: Traffic::new(a.segments, a.reward_rate),
                    timeout_seconds: t,
                    warmup: Duration::from_secs(warmup),
                },
            ));
        }
    }
    for (name, rpc) in [
        ("choose", Rpc::Choose),
        ("reward", Rpc::Reward),
        ("mix", Rpc::Mix),
    ] {
        if a.only.iter().any(|o| o == name) {
            for workers in [100, 1] {
                plan.push((
                    format!("{name}, one segment ({workers} in flight)"),
                    Scenario {
                        rpc,
                        workers,
                        extra: server_flags.clone(),
                        traffic: one_segment.clone(),
                        timeout_seconds: 3600,
                        warmup: Duration::from_secs(1),
                    },
                ));
            }
        }
    }
    if a.only.iter().any(|o| o == "strict") {
        let mut extra = vec!["--durability", "strict"];
        extra.extend(server_flags.iter().copied());
        plan.push((
            "choose, one segment, --durability strict (100 in flight)".into(),
            Scenario {
                rpc: Rpc::Choose,
                workers: 100,
                extra,
                traffic: one_segment.clone(),
                timeout_seconds: 3600,
                warmup: Duration::from_secs(1),
            },
        ));
    }
    for (name, sc) in plan {
        eprintln!("measuring {name} ({} rounds) ...", a.rounds);
        let mut rounds = Vec::new();
        for _ in 0..a.rounds {
            rounds.push(rt.block_on(round(&echo_bin, &banditd_bin, &sc, secs))?);
        }
        rows.push((name, rounds));
    }
    println!("Each round starts the echo, then banditd, on core 0 and loads each for {} s after a warm-up (the echo 1 s; banditd 1 s, or in the campaign scenario the timeout plus 5 s, at most 70 s, unless --warmup-seconds); ratios are per round, median [min–max] of {} rounds.", a.seconds, a.rounds);
    println!();
    println!("| scenario | echo req/s | echo p50 / p99 µs | banditd req/s | banditd p50 / p99 µs | throughput ratio | p99 ratio | p50 − echo p50 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, rounds) in rows {
        let med = |f: &dyn Fn(&(Figures, Figures)) -> f64| median(rounds.iter().map(f).collect());
        let span = |f: &dyn Fn(&(Figures, Figures)) -> f64| {
            let v: Vec<f64> = rounds.iter().map(f).collect();
            (
                v.iter().copied().fold(f64::INFINITY, f64::min),
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        };
        let ratio = |(e, b): &(Figures, Figures)| b.rps / e.rps;
        let p99 = |(e, b): &(Figures, Figures)| b.p99_us as f64 / e.p99_us.max(1) as f64;
        let p50 = |(e, b): &(Figures, Figures)| b.p50_us as f64 - e.p50_us as f64;
        let (r_lo, r_hi) = span(&ratio);
        let (q_lo, q_hi) = span(&p99);
        let (d_lo, d_hi) = span(&p50);
        println!(
            "| {name} | {:.0} | {:.0} / {:.0} | {:.0} | {:.0} / {:.0} | {:.2}× [{r_lo:.2}–{r_hi:.2}] | {:.2}× [{q_lo:.2}–{q_hi:.2}] | {:+.0} µs [{d_lo:+.0} – {d_hi:+.0}] |",
            med(&|(e, _)| e.rps),
            med(&|(e, _)| e.p50_us as f64),
            med(&|(e, _)| e.p99_us as f64),
            med(&|(_, b)| b.rps),
            med(&|(_, b)| b.p50_us as f64),
            med(&|(_, b)| b.p99_us as f64),
            med(&ratio),
            med(&p99),
            med(&p50),
        );
    }
    Ok(())
}
