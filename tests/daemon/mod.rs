//! Runs the built `banditd` binary as a child process (for crash and CLI tests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_banditd");

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// The fields of the daemon's "banditd started" log line.
    pub started: serde_json::Value,
    /// Every line the daemon wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A daemon process that may not be listening yet.
pub struct Starting {
    pub child: Child,
    /// Receives the "banditd started" line's fields once the daemon logs it.
    pub addr: std::sync::mpsc::Receiver<serde_json::Value>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Starting {
    /// Waits until the daemon listens; `None` if it did not within `timeout`
    /// (or died first).
    pub fn ready(self, timeout: Duration) -> Result<Daemon, Child> {
        match self.addr.recv_timeout(timeout) {
            Ok(fields) => Ok(Daemon {
                child: self.child,
                addr: fields["listen"]
                    .as_str()
                    .expect("listen field")
                    .parse()
                    .expect("address"),
                started: fields,
                log: self.log,
            }),
            Err(_) => Err(self.child),
        }
    }
}

impl Daemon {
    /// Starts `banditd serve` on 127.0.0.1:0 over `dir` and waits until it listens.
    pub fn spawn(dir: &Path, extra: &[&str]) -> Daemon {
        match Self::start(dir, extra).ready(Duration::from_secs(30)) {
            Ok(d) => d,
            Err(_) => panic!("daemon did not start"),
        }
    }

    /// Starts `banditd serve` on 127.0.0.1:0 over `dir` without waiting.
    pub fn start(dir: &Path, extra: &[&str]) -> Starting {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    /// Starts `banditd serve` on `listen` over `dir` without waiting.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> Starting {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                listen,
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn banditd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = lines.lock() {
                    l.push(line.clone());
                }
                if !sent && line.contains("banditd started") {
                    let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
                    let _ = tx.send(v["fields"].clone());
                    sent = true;
                }
                if line.contains("\"level\":\"ERROR\"") {
                    eprintln!("daemon: {line}");
                }
            }
        });
        Starting {
            child,
            addr: rx,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        // SAFETY: sending a signal to our own child process id.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
