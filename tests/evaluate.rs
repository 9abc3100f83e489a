//! `banditd evaluate` through the real binary: Open Bandit Pipeline's own
//! figures on the Open Bandit Dataset sample, and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn banditd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_banditd"))
}

/// The shared OBD sample, or `None` (with a message) when it is absent.
fn obd() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/obd");
    if dir.join("obd_all_random.csv").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (the Open Bandit Dataset sample)",
            dir.display()
        );
        None
    }
}

fn mean_reward(csv: &Path) -> f64 {
    let text = std::fs::read_to_string(csv).expect("read log");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = header.iter().position(|c| *c == "reward").expect("reward");
    let (mut n, mut sum) = (0.0, 0.0);
    for line in lines.filter(|l| !l.is_empty()) {
        let v: f64 = line
            .split(',')
            .nth(col)
            .expect("field")
            .parse()
            .expect("number");
        n += 1.0;
        sum += v;
    }
    sum / n
}

// The BTS action distribution evaluated on the uniform-random log: IPS and
// SNIPS equal what Open Bandit Pipeline 0.5.7 computes on the same files
// (`tests/ope-reference/obp_reference.py`, its output in
// `obp_reference.txt`), to 1e-9; and the BTS log's own mean click lies
// inside the IPS interval.
#[test]
fn obd_sample_matches_open_bandit_pipeline() {
    let Some(dir) = obd() else { return };
    let out = banditd()
        .args(["evaluate", "--log-format", "obp-csv", "--json", "--log"])
        .arg(dir.join("obd_all_random.csv"))
        .arg("--policy-dist")
        .arg(dir.join("obd_all_bts_action_dist.csv"))
        .output()
        .expect("run banditd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let num = |v: &serde_json::Value| v.as_f64().expect("number");
    // OBP: InverseProbabilityWeighting / SelfNormalizedInverseProbabilityWeighting.
    assert!(
        (num(&json["ips"]["value"]) - 0.00455288).abs() < 1e-9,
        "{json}"
    );
    assert!(
        (num(&json["snips"]["value"]) - 0.0047758330812309535).abs() < 1e-9,
        "{json}"
    );
    assert!(
        (num(&json["ess"]) - 1639.5018736079446).abs() < 1e-6,
        "{json}"
    );
    assert!((num(&json["max_weight"]) - 19.5984).abs() < 1e-9, "{json}");
    assert_eq!(json["n"], 10_000);
    let on_policy = mean_reward(&dir.join("obd_all_bts.csv"));
    assert!((on_policy - 0.0042).abs() < 1e-12);
    let (lo, hi) = (num(&json["ips"]["ci_low"]), num(&json["ips"]["ci_high"]));
    assert!(
        lo < on_policy && on_policy < hi,
        "{on_policy} outside [{lo}, {hi}]"
    );
    for key in ["ips", "snips", "dr"] {
        let e = &json[key];
        assert!(num(&e["ci_low"]) <= num(&e["value"]) && num(&e["value"]) <= num(&e["ci_high"]));
    }
}

// Bad input is exit 64 with the file, row and column named, and a policy
// the log does not know is refused.
#[test]
fn bad_logs_and_policies_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.csv");
    std::fs::write(
        &log,
        "action,position,reward,pscore,age\n0,0,1,0.5,3\n1,0,0,0.5,4\n1,0,0,0,5\n",
    )
    .expect("write");
    let out = banditd()
        .args([
            "evaluate",
            "--log-format",
            "obp-csv",
            "--policy",
            "uniform",
            "--log",
        ])
        .arg(&log)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log.csv") && err.contains('4') && err.contains("pscore"),
        "{err}"
    );

    std::fs::write(
        &log,
        "action,position,reward,pscore\n0,0,1,0.5\n1,0,0,0.5\n",
    )
    .expect("write");
    let out = banditd()
        .args([
            "evaluate",
            "--log-format",
            "obp-csv",
            "--policy",
            "fixed:7",
            "--log",
        ])
        .arg(&log)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains('7'));

    let out = banditd()
        .args(["evaluate", "--log-format", "obp-csv", "--log"])
        .arg(&log)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "a policy is required");

    let out = banditd()
        .args([
            "evaluate",
            "--log-format",
            "obp-csv",
            "--policy",
            "fixed:1",
            "--json",
            "--log",
        ])
        .arg(&log)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
