//! The decision log end to end: decisions made over gRPC, some rewarded, the
//! rest defaulted when an injected clock passes their timeout; exported by
//! `Campaigns.ExportDecisions` and by `banditd log export` in both formats,
//! checked against DSJSON's documented fields (and Vowpal Wabbit's own
//! parser when its Python package is installed), and read back by
//! `banditd evaluate`.

mod common;

use banditd::api::pb;
use banditd::engine::{Clock, EngineOptions};
use banditd::store::{SledOptions, SledStore};
use common::{choose_req, create, thompson, TestServer};
use serde_json::Value;
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_banditd");
const DECISIONS: usize = 300;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Fixture {
    server: TestServer,
    clock: Arc<AtomicU64>,
    /// Caller-chosen decision ids, which the log must never contain.
    caller_ids: Vec<String>,
    rewarded: usize,
    start_ms: u64,
}

/// 300 decisions in two segments with caller-chosen ids; every third is
/// rewarded 1, the rest reach their 60 s timeout on the injected clock.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(&SledOptions {
        path: dir.path().join("db"),
        cache_bytes: 16 << 20,
    })
    .expect("open sled");
    let start_ms = now_ms() - 3_600_000;
    let clock = Arc::new(AtomicU64::new(start_ms));
    let options = EngineOptions {
        seed: Some(11),
        clock: Clock::Manual(clock.clone()),
        ..EngineOptions::default()
    };
    let server = TestServer::start_with(Arc::new(store), options, dir).await;
    let mut campaigns = server.campaigns().await;
    create(
        &mut campaigns,
        thompson("promo", &["red", "blue", "green"], 60),
    )
    .await;
    let mut bandit = server.bandit().await;
    let mut caller_ids = Vec::new();
    let mut rewarded = 0;
    for i in 0..DECISIONS {
        clock.fetch_add(100, Ordering::SeqCst);
        let id = format!("customer-4711-{i}");
        let mut req = choose_req("promo", if i % 2 == 0 { "vip" } else { "new" });
        req.decision_id = id.clone();
        bandit.choose(req).await.expect("choose");
        if i % 3 == 0 {
            bandit
                .reward(pb::RewardRequest {
                    decision_id: id.clone(),
                    value: 1.0,
                    slot: 0,
                })
                .await
                .expect("reward");
            rewarded += 1;
        }
        caller_ids.push(id);
    }
    Fixture {
        server,
        clock,
        caller_ids,
        rewarded,
        start_ms,
    }
}

/// Moves the clock past every timeout and waits for the server's expiry
/// task (it runs every 50 ms of real time) to learn the defaults.
async fn expire_all(f: &Fixture) {
    f.clock.fetch_add(120_000, Ordering::SeqCst);
    let mut campaigns = f.server.campaigns().await;
    for _ in 0..200 {
        let s = common::stats(&mut campaigns, "promo", "").await;
        if s.segments
            .iter()
            .all(|g| g.arms.iter().all(|a| a.pending == 0))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("decisions still pending after the clock passed their timeout");
}

async fn export(
    f: &Fixture,
    req: pb::ExportDecisionsRequest,
) -> Result<Vec<pb::ExportDecisionsResponse>, tonic::Status> {
    let mut campaigns = f.server.campaigns().await;
    let mut stream = campaigns.export_decisions(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.push(m);
    }
    Ok(out)
}

fn request(campaign: &str) -> pb::ExportDecisionsRequest {
    pb::ExportDecisionsRequest {
        campaign_id: campaign.to_string(),
        ..Default::default()
    }
}

fn banditd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run banditd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_rpc_streams_every_decision_with_its_outcome() {
    let f = fixture().await;
    // Before the timeout: only the rewarded ones have an outcome.
    let msgs = export(&f, request("promo")).await.expect("export");
    let n: usize = msgs.iter().map(|m| m.decisions.len()).sum();
    assert_eq!(n, f.rewarded);
    let with_pending = export(
        &f,
        pb::ExportDecisionsRequest {
            include_pending: true,
            ..request("promo")
        },
    )
    .await
    .expect("export");
    let all: Vec<&pb::LoggedDecision> = with_pending.iter().flat_map(|m| &m.decisions).collect();
    assert_eq!(all.len(), DECISIONS);
    let pending = all
        .iter()
        .filter(|d| d.outcome == pb::DecisionOutcome::Pending as i32)
        .count();
    assert_eq!(pending, DECISIONS - f.rewarded);

    expire_all(&f).await;
    let msgs = export(&f, request("promo")).await.expect("export");
    assert!(!msgs.is_empty());
    let m0 = &msgs[0];
    assert_eq!(m0.campaign_id, "promo");
    assert_eq!(m0.arm_ids, ["red", "blue", "green"]);
    let ds: Vec<&pb::LoggedDecision> = msgs.iter().flat_map(|m| &m.decisions).collect();
    assert_eq!(ds.len(), DECISIONS);
    let mut ids = HashSet::new();
    let mut last = 0;
    let (mut rewarded, mut defaulted) = (0, 0);
    for d in &ds {
        assert!(ids.insert(d.decision_id.clone()), "ids are unique");
        assert!(!d.decision_id.contains("customer"), "{}", d.decision_id);
        let t = d.decided_at.expect("decided_at");
        let ms = t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000;
        assert!(ms >= last && ms > f.start_ms, "in the order made");
        last = ms;
        assert_eq!(d.probabilities.len(), 3);
        let sum: f64 = d.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        let chosen = m0.arm_ids.iter().position(|a| *a == d.arm_id).expect("arm");
        assert_eq!(d.probabilities[chosen], d.propensity);
        assert!(d.propensity > 0.0 && d.propensity <= 1.0);
        assert!(d.segment == "vip" || d.segment == "new");
        match pb::DecisionOutcome::try_from(d.outcome) {
            Ok(pb::DecisionOutcome::Rewarded) => {
                assert_eq!(d.reward, 1.0);
                rewarded += 1;
            }
            Ok(pb::DecisionOutcome::Default) => {
                assert_eq!(d.reward, 0.0);
                defaulted += 1;
            }
            other => panic!("unexpected outcome {other:?}"),
        }
        assert!(d.outcome_at.is_some());
    }
    assert_eq!((rewarded, defaulted), (f.rewarded, DECISIONS - f.rewarded));

    // A time window: the first 100 decisions were made in the first 10 s.
    let until = f.start_ms + 100 * 100;
    let msgs = export(
        &f,
        pb::ExportDecisionsRequest {
            until: Some(prost_types::Timestamp {
                seconds: (until / 1000) as i64,
                nanos: ((until % 1000) * 1_000_000) as i32,
            }),
            ..request("promo")
        },
    )
    .await
    .expect("export");
    assert_eq!(msgs.iter().map(|m| m.decisions.len()).sum::<usize>(), 100);

    // Bad requests: the call's status, nothing streamed.
    let code =
        |r: Result<Vec<pb::ExportDecisionsResponse>, tonic::Status>| r.err().map(|s| s.code());
    assert_eq!(
        code(export(&f, request("nope")).await),
        Some(tonic::Code::NotFound)
    );
    assert_eq!(
        code(export(&f, request("")).await),
        Some(tonic::Code::InvalidArgument)
    );
    let ts = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
    for (since, until) in [
        (ts(-1, 0), None),
        (ts(10, -5), None),
        (ts(100, 0), ts(50, 0)),
    ] {
        let r = export(
            &f,
            pb::ExportDecisionsRequest {
                since,
                until,
                ..request("promo")
            },
        )
        .await;
        assert_eq!(code(r), Some(tonic::Code::InvalidArgument));
    }
}

/// Checks one DSJSON line against the fields Vowpal Wabbit's DSJSON parser
/// reads (`EventId`, `Timestamp`, `c` with `_multi`, `a`, `p`, `_label_cost`,
/// `_label_probability`, `_label_Action`, `_labelIndex`, `o`).
fn check_dsjson_line(line: &str, arms: usize) -> Value {
    let v: Value = serde_json::from_str(line).expect("a JSON object per line");
    for field in [
        "EventId",
        "Timestamp",
        "c",
        "a",
        "p",
        "_label_cost",
        "_label_probability",
        "_label_Action",
        "_labelIndex",
        "o",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {line}");
    }
    let a: Vec<u64> = v["a"]
        .as_array()
        .expect("a")
        .iter()
        .map(|x| x.as_u64().expect("1-based action"))
        .collect();
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=arms as u64).collect::<Vec<_>>(),
        "a permutes 1..=k"
    );
    let p: Vec<f64> = v["p"]
        .as_array()
        .expect("p")
        .iter()
        .map(|x| x.as_f64().expect("probability"))
        .collect();
    assert_eq!(p.len(), arms);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let action = v["_label_Action"].as_u64().expect("_label_Action");
    assert_eq!(a[0], action, "the chosen action comes first in a");
    assert_eq!(v["_labelIndex"].as_u64(), Some(action - 1));
    assert_eq!(v["_label_probability"].as_f64(), Some(p[0]));
    assert_eq!(v["c"]["_multi"].as_array().map(Vec::len), Some(arms));
    let cost = v["_label_cost"].as_f64().expect("cost");
    let o = v["o"].as_array().expect("o");
    if cost == -1.0 {
        assert_eq!(o.len(), 1, "an observed reward is an outcome: {line}");
        assert_eq!(o[0]["v"].as_f64(), Some(1.0));
        assert_eq!(o[0]["EventId"], v["EventId"]);
    } else {
        assert_eq!(cost, 0.0);
        assert!(o.is_empty());
    }
    assert!(v["Timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 24));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_export_cli_writes_dsjson_and_csv_that_evaluate_reads() {
    let f = fixture().await;
    // Before the timeouts pass, the decisions without an outcome are left
    // out (and counted), never written as losses.
    {
        let target = format!("http://{}", f.server.addr);
        let dir = tempfile::tempdir().expect("tempdir");
        let early = dir.path().join("early.dsjson");
        let early_s = early.to_str().expect("utf8").to_string();
        let (code, out, err) = banditd(&[
            "log", "export", "promo", "--out", &early_s, "--target", &target,
        ]);
        assert_eq!(code, Some(0), "{err}");
        let pending = DECISIONS - f.rewarded;
        assert!(
            out.contains(&format!("left out {pending} decisions")),
            "{out}"
        );
        let text = std::fs::read_to_string(&early).expect("written");
        assert_eq!(text.lines().count(), f.rewarded);
    }
    expire_all(&f).await;
    let target = format!("http://{}", f.server.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let dsjson = dir.path().join("promo.dsjson");
    let csv = dir.path().join("promo.csv");
    let p = |x: &std::path::Path| x.to_str().expect("utf8").to_string();

    let (code, out, err) = banditd(&[
        "log",
        "export",
        "promo",
        "--since",
        "7d",
        "--out",
        &p(&dsjson),
        "--target",
        &target,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("exported {DECISIONS} decisions")),
        "{out}"
    );
    let text = std::fs::read_to_string(&dsjson).expect("export written");
    for id in &f.caller_ids {
        assert!(
            !text.contains(id.as_str()),
            "a caller-chosen id leaked: {id}"
        );
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), DECISIONS);
    let mut clicks = 0.0;
    for line in &lines {
        let v = check_dsjson_line(line, 3);
        clicks -= v["_label_cost"].as_f64().unwrap_or(0.0);
        assert_eq!(v["_banditd"]["campaign"], "promo");
    }
    assert_eq!(clicks, f.rewarded as f64);

    // Vowpal Wabbit's own parser, when its Python package is installed
    // (tests/ope-reference/README.md); otherwise the field check above.
    let vw = Command::new("python3")
        .args(["-c", "import vowpalwabbit"])
        .output()
        .is_ok_and(|o| o.status.success());
    if vw {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/ope-reference/vw_parse.py"
        );
        let out = Command::new("python3")
            .args([script, &p(&dsjson)])
            .output()
            .expect("run vw_parse.py");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("vowpalwabbit not installed: checked the documented DSJSON fields only");
    }

    // evaluate reads its own export: the logged policy's value is the mean reward.
    let (code, out, err) = banditd(&[
        "evaluate",
        "--log",
        &p(&dsjson),
        "--policy",
        "uniform",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(report["n"].as_u64(), Some(DECISIONS as u64));
    let logged = report["logged"]
        .as_f64()
        .or_else(|| report["logged"]["value"].as_f64());
    assert!(
        logged.is_some_and(|l| (l - f.rewarded as f64 / DECISIONS as f64).abs() < 1e-12),
        "{out}"
    );

    // Two candidate campaign files, fitted on the log and evaluated.
    let only_red = dir.path().join("only-red.toml");
    std::fs::write(
        &only_red,
        "id = \"promo\"\narms = [\"red\"]\n[policy]\nkind = \"uniform\"\n",
    )
    .expect("write");
    let ts = dir.path().join("thompson.toml");
    std::fs::write(
        &ts,
        "id = \"promo\"\narms = [\"red\", \"blue\", \"green\"]\n[policy]\nkind = \"thompson\"\nexploration_floor = 0.05\n",
    )
    .expect("write");
    let policy = format!("campaign:{}", p(&ts));
    let (code, out, err) = banditd(&["evaluate", "--log", &p(&dsjson), "--policy", &policy]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("campaign:thompson.toml"), "{out}");
    let fixed = banditd(&[
        "evaluate",
        "--log",
        &p(&dsjson),
        "--policy",
        "fixed:red",
        "--json",
    ]);
    let policy = format!("campaign:{}", p(&only_red));
    let one = banditd(&[
        "evaluate",
        "--log",
        &p(&dsjson),
        "--policy",
        &policy,
        "--json",
    ]);
    assert_eq!(one.0, Some(0), "{}", one.2);
    let ips = |json: &str| -> f64 {
        let v: Value = serde_json::from_str(json).expect("json");
        v["ips"]["value"].as_f64().expect("ips")
    };
    // A one-arm uniform campaign is that arm, always.
    assert_eq!(ips(&one.1), ips(&fixed.1));
    // A campaign the log cannot answer for: exit 64 naming the arm.
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "id = \"promo\"\narms = [\"red\", \"purple\"]\n").expect("write");
    let policy = format!("campaign:{}", p(&unknown));
    let (code, _, err) = banditd(&["evaluate", "--log", &p(&dsjson), "--policy", &policy]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("purple"), "{err}");
    let (code, _, err) = banditd(&[
        "log",
        "export",
        "promo",
        "--format",
        "csv",
        "--out",
        &p(&csv),
        "--target",
        &target,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&csv).expect("csv written");
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some("timestamp,action,position,reward,pscore"));
    assert_eq!(rows.count(), DECISIONS);
    let (code, out, err) = banditd(&[
        "evaluate",
        "--log",
        &p(&csv),
        "--log-format",
        "obp-csv",
        "--policy",
        "fixed:0",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"ips\""), "{out}");

    // Bad input names the problem, exit 64; nothing is written.
    let bad = dir.path().join("bad.dsjson");
    let (code, _, err) = banditd(&[
        "log",
        "export",
        "promo",
        "--since",
        "last tuesday",
        "--out",
        &p(&bad),
        "--target",
        &target,
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("--since"), "{err}");
    assert!(!bad.exists());
    // A daemon error (unknown campaign) leaves no file either.
    let (code, _, err) = banditd(&[
        "log",
        "export",
        "nope",
        "--out",
        &p(&bad),
        "--target",
        &target,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("NotFound"), "{err}");
    assert!(!bad.exists() && !dir.path().join("bad.dsjson.partial").exists());
}
