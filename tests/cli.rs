//! The binary as an operator uses it: configuration errors, graceful
//! shutdown, and the client subcommands of the README's quickstart.

mod daemon;

use daemon::{Daemon, BIN};
use std::process::Command;

fn banditd(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run banditd")
}

// A bad setting fails with exit code 64 and a message naming it, before any port is bound.
#[test]
fn bad_configuration_fails_before_binding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8 path");
    for (args, setting) in [
        (
            vec!["serve", "--data-dir", d, "--flush-interval-ms", "0"],
            "--flush-interval-ms",
        ),
        (
            vec!["serve", "--data-dir", d, "--listen", "not-an-address"],
            "--listen",
        ),
        (
            vec!["serve", "--data-dir", d, "--durability", "sometimes"],
            "--durability",
        ),
        (
            vec!["serve", "--data-dir", d, "--cache-mb", "0"],
            "--cache-mb",
        ),
        (
            vec!["serve", "--data-dir", d, "--max-in-flight", "0"],
            "--max-in-flight",
        ),
        (
            vec!["serve", "--data-dir", d, "--max-concurrent-streams", "0"],
            "--max-concurrent-streams",
        ),
    ] {
        let out = banditd(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
    // The environment variable form is validated the same way.
    let out = Command::new(BIN)
        .args(["serve", "--data-dir", d])
        .env("BANDITD_FLUSH_INTERVAL_MS", "999999")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BANDITD_FLUSH_INTERVAL_MS"));
}

// The quickstart works as written: create from the example file, list,
// show, choose, reward, stats; SIGTERM then exits 0.
#[test]
fn quickstart_with_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::spawn(dir.path(), &[]);
    let url = daemon.url();
    let t = ["--target", url.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&t);
        let out = banditd(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/campaigns/spring-sale.toml");
    let (code, out, err) = run(&["campaign", "create", example]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("created campaign spring-sale"));
    let (code, _, err) = run(&["campaign", "create", example]);
    assert_eq!(code, Some(1));
    assert!(err.contains("AlreadyExists"), "{err}");
    let (_, out, _) = run(&["campaign", "list"]);
    assert!(out.contains("spring-sale") && out.contains("thompson"));
    let (_, out, _) = run(&["campaign", "show", "spring-sale"]);
    assert!(out.contains("free-shipping"));
    let (code, out, _) = run(&[
        "choose",
        "spring-sale",
        "--segment",
        "returning-vip",
        "--decision-id",
        "imp-1",
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("imp-1"));
    let (_, out, _) = run(&["reward", "imp-1", "1"]);
    assert!(out.contains("reward learned"));
    let (_, out, _) = run(&["reward", "imp-1", "1"]);
    assert!(out.contains("duplicate"));
    let (code, _, err) = run(&["reward", "imp-1", "3"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("InvalidArgument"), "{err}");
    // A slate of the three offers, slot by slot; a reward names its slot.
    let (code, out, err) = run(&[
        "choose",
        "spring-sale",
        "--count",
        "3",
        "--decision-id",
        "page-1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let slots: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(['0', '1', '2']))
        .collect();
    assert_eq!(slots.len(), 3, "{out}");
    for offer in ["ten-percent-off", "free-shipping", "bundle-deal"] {
        assert!(slots.iter().any(|l| l.contains(offer)), "{out}");
    }
    let (code, out, err) = run(&["reward", "page-1", "1", "--slot", "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("reward learned"));
    let (code, _, err) = run(&["reward", "page-1", "1", "--slot", "3"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no slot 3"), "{err}");
    let (_, out, _) = run(&["stats", "spring-sale"]);
    assert!(
        out.contains("returning-vip") && out.contains("P(BEST)"),
        "{out}"
    );
    let (code, _, err) = run(&["campaign", "show", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NotFound"), "{err}");
    assert_eq!(daemon.terminate(), Some(0));
}

// A malformed campaign file is reported with the file and the offending key.
#[test]
fn malformed_campaign_file_names_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "id = \"x\"\narms = [\"a\"]\n[policy]\nkind = \"thompson\"\nprior_alfa = 2\n",
    )
    .expect("write");
    let out = banditd(&[
        "campaign",
        "create",
        file.to_str().expect("utf8"),
        "--target",
        "http://127.0.0.1:9",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    // A usage error: nothing was sent.
    assert_eq!(out.status.code(), Some(64));
    assert!(
        err.contains("bad.toml") && err.contains("prior_alfa"),
        "{err}"
    );
}

// `banditd simulate` writes a report a marketer opens from disk: a
// self-contained report.html (charts inline, nothing fetched, no script),
// runs.csv with one row per strategy and run, and the summary that
// separates the cost of testing from the value of personalisation. With
// its output not a terminal it draws no progress bar. A bad [ab] setting,
// --looks or --attribution-window-minutes is exit 64 naming it, and
// writes nothing.
#[test]
fn simulate_writes_a_self_contained_report_and_a_per_run_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/simulations/segmented.toml");
    let out = banditd(&[
        "simulate",
        scenario,
        "--days",
        "8",
        "--runs",
        "3",
        "--out",
        out_dir.to_str().expect("utf8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("simulating"),
        "no progress bar off a terminal: {stderr}"
    );
    for needle in [
        "What testing costs:",
        "What personalisation is worth:",
        "The ceiling:",
        "O'Brien-Fleming",
        "Holm",
        "Test & roll",
        "median [p10-p90]",
    ] {
        assert!(
            stdout.contains(needle),
            "summary lacks {needle:?}:\n{stdout}"
        );
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 4, "four inline charts");
    assert!(!html.contains("<script"), "no scripts");
    for attr in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(attr), "fetches nothing ({attr})");
    }
    // Outside the SVG namespace declaration, no address at all.
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(html.contains("test phase"), "the A/B timeline is drawn");
    assert!(html.contains("Per segment") && html.contains("young_mobile"));
    assert!(html.contains("80,000 customers"), "thousands separators");
    let runs = std::fs::read_to_string(out_dir.join("runs.csv")).expect("runs.csv");
    let rows: Vec<&str> = runs.lines().collect();
    assert!(rows[0].starts_with("strategy,run,seed,customers,conversions"));
    // 9 strategies (no LinUCB without features) × 3 runs.
    assert_eq!(rows.len(), 1 + 9 * 3, "{runs}");
    assert!(rows.iter().any(|r| r.starts_with("ab_sequential,2,")));

    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(scenario).expect("scenario");
    std::fs::write(&bad, format!("{text}\n[ab]\ncontrol = \"nope\"\n")).expect("write");
    let out = banditd(&[
        "simulate",
        bad.to_str().expect("utf8"),
        "--out",
        out_dir.join("x").to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ab.control"));
    let out = banditd(&[
        "simulate",
        scenario,
        "--looks",
        "0",
        "--out",
        out_dir.join("y").to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--looks"));
    for window in ["0", "43201"] {
        let out = banditd(&[
            "simulate",
            scenario,
            "--attribution-window-minutes",
            window,
            "--out",
            out_dir.join("z").to_str().expect("utf8"),
        ]);
        assert_eq!(out.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--attribution-window-minutes"));
    }
    assert!(!out_dir.join("x").exists() && !out_dir.join("y").exists());
    assert!(!out_dir.join("z").exists());
}
