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
