//! Replicas that learn together through a real Redis: three `banditd`
//! processes and a `redis-server` on loopback, driven by the simulator's
//! live mode, with a replica killed (SIGKILL) and Redis killed and
//! restarted empty in the middle of the traffic.

mod daemon;
mod redis;

use banditd::client::Connect;
use banditd::sim::live::{run_live, Cell, LiveOptions, LiveReport};
use banditd::sim::scenario::Scenario;
use daemon::Daemon;
use redis::Redis;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn replica(dir: &Path, listen: &str, redis_url: &str, id: &str) -> Daemon {
    let starting = Daemon::start_on(
        dir,
        listen,
        &[
            "--redis-url",
            redis_url,
            "--replica-id",
            id,
            // What a replica acknowledged survives its SIGKILL.
            "--durability",
            "strict",
            "--seed",
            "11",
        ],
    );
    match starting.ready(Duration::from_secs(30)) {
        Ok(d) => d,
        Err(_) => panic!("replica {id} did not start"),
    }
}

fn scenario(customers: u64) -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/simulations/segmented.toml");
    let mut s = Scenario::from_file(Path::new(path)).expect("scenario");
    s.days = 1;
    s.customers_per_day = customers;
    s
}

fn options(targets: &[String]) -> LiveOptions {
    let mut o = LiveOptions::new(
        targets
            .iter()
            .map(|t| Connect {
                target: t.clone(),
                ..Connect::default()
            })
            .collect(),
    );
    o.concurrency = 24;
    o.rate = Some(1500.0);
    // The 12-hour attribution window becomes a 4-second reward timeout.
    o.speedup = 10_800.0;
    o.seed = 7;
    o.settle_for = Duration::from_secs(10);
    o
}

/// The merged totals in Redis, per (segment, arm): (pulls, reward sum).
fn merged_totals(redis: &Redis, campaign: &str) -> BTreeMap<Cell, (u64, f64)> {
    let mut c = redis.connection();
    let rec: String = ::redis::cmd("HGET")
        .arg("banditd:campaigns")
        .arg(campaign)
        .query(&mut c)
        .expect("campaign record");
    let rec: serde_json::Value = serde_json::from_str(&rec).expect("record json");
    let gen = rec["gen"].as_u64().expect("gen");
    let fields: BTreeMap<String, f64> = ::redis::cmd("HGETALL")
        .arg(format!("banditd:s:{gen}"))
        .query(&mut c)
        .expect("merged hash");
    let mut out: BTreeMap<Cell, (u64, f64)> = BTreeMap::new();
    for (field, v) in fields {
        let parts: Vec<&str> = field.split('\u{1f}').collect();
        let ["t", seg, arm, comp] = parts[..] else {
            continue;
        };
        let mut cells = vec![(String::new(), arm.to_string())];
        if !seg.is_empty() {
            cells.push((seg.to_string(), arm.to_string()));
        }
        for cell in cells {
            let e = out.entry(cell).or_default();
            if comp == "n" || comp.starts_with("p@") {
                e.0 += v as u64;
            } else if comp == "y" {
                e.1 += v;
            }
        }
    }
    out
}

fn assert_exact(report: &LiveReport, merged: &BTreeMap<Cell, (u64, f64)>) {
    for (cell, &(n, r)) in &report.sent {
        let got = merged.get(cell).copied().unwrap_or_default();
        assert_eq!(
            got,
            (n, r as f64),
            "merged totals for {cell:?} differ from what was sent"
        );
    }
    for (cell, &(n, _)) in merged {
        assert!(
            report.sent.contains_key(cell) || n == 0,
            "Redis counts {cell:?} that was never sent"
        );
    }
}

// The whole story of one deployment: three replicas behind a round-robin
// balancer, rewards landing on random replicas, one replica SIGKILLed and
// restarted, Redis SIGKILLed (losing everything) and restarted empty. At
// the end Redis's merged totals equal exactly what the simulator sent, per
// segment and offer; every replica reports them within the sync bound; and
// the three together lose about what one node loses on the same traffic.
#[test]
fn three_replicas_learn_together_through_a_replica_crash_and_a_redis_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut redis = Redis::start(0, tmp.path());
    let ports: Vec<u16> = (0..3).map(|_| redis::free_port()).collect();
    let dirs: Vec<_> = (1..=3).map(|i| tmp.path().join(format!("r{i}"))).collect();
    let listen = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut replicas: Vec<Option<Daemon>> = (0..3)
        .map(|i| {
            Some(replica(
                &dirs[i],
                &listen(i),
                &redis.url(),
                &format!("r{}", i + 1),
            ))
        })
        .collect();
    let targets: Vec<String> = (0..3).map(|i| format!("http://{}", listen(i))).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sc = scenario(12_000);
    let opts = options(&targets);
    let live = runtime.spawn({
        let sc = sc.clone();
        let opts = opts.clone();
        async move { run_live(&sc, &opts).await }
    });
    // The faults, while the traffic runs (about 8 s of it).
    std::thread::sleep(Duration::from_millis(2000));
    replicas[1].take().expect("r2").kill9();
    std::thread::sleep(Duration::from_millis(1000));
    replicas[1] = Some(replica(&dirs[1], &listen(1), &redis.url(), "r2"));
    std::thread::sleep(Duration::from_millis(1500));
    redis.kill9();
    std::thread::sleep(Duration::from_millis(1000));
    redis.restart();
    let report = runtime
        .block_on(live)
        .expect("live task")
        .expect("live run");
    eprintln!("{}", report.summary());

    assert_eq!(report.customers, 12_000);
    assert_eq!(report.errors, 0, "{}", report.summary());
    assert!(
        report.retries > 0,
        "the faults should have made some calls retry: {}",
        report.summary()
    );
    // Every replica's GetStats equals what was sent in every segment and
    // offer, within the sync bound after the traffic stopped (one ship
    // interval plus one pull interval: 1.5 s; 3 s with margin).
    assert!(report.agrees(), "{}", report.summary());
    for v in &report.views {
        let after = v.agreed_after.expect("agreed");
        assert!(
            after <= Duration::from_secs(3),
            "{} took {after:?} to agree",
            v.target
        );
    }
    // Redis's own merged totals, read directly.
    assert_exact(&report, &merged_totals(&redis, &report.campaign_id));

    // One node on the same customers.
    let single_dir = tmp.path().join("single");
    let single = Daemon::spawn(&single_dir, &["--durability", "strict", "--seed", "11"]);
    let one = runtime
        .block_on(run_live(&sc, &options(&[single.url()])))
        .expect("single-node run");
    eprintln!("{}", one.summary());
    assert!(one.agrees(), "{}", one.summary());
    eprintln!(
        "expected regret: three replicas {:.1}, one node {:.1} ({:.2}x)",
        report.regret,
        one.regret,
        report.regret / one.regret.max(1e-9)
    );
    assert!(
        report.regret <= one.regret * 1.3 + 10.0,
        "three replicas lost {:.1} conversions, one node {:.1}",
        report.regret,
        one.regret
    );
    single.terminate();
    for r in replicas.into_iter().flatten() {
        assert_eq!(r.terminate(), Some(0));
    }
}
