//! Crash safety, for real: a daemon process under mixed traffic is
//! SIGKILLed at a seeded random moment between 1 ms and 2 s after it was
//! started (some kills land in start-up recovery, some in the expiry sweep,
//! some in a delete), and its data directory is then checked offline:
//! every invariant of `banditd check` holds, every acknowledgement a strict
//! daemon gave is there, and every acknowledgement a default daemon gave
//! longer ago than its stated loss window is there.
//!
//! Traffic: a Thompson campaign with segments and a 1 s reward timeout, a
//! LinUCB campaign with a 2 s timeout, caller-chosen ids, retried Chooses
//! and Rewards, rewards that arrive after the timeout, and a campaign that
//! is deleted and re-created under the same id again and again. Pending
//! decisions carry over from one cycle to the next (the backlog).
//!
//! `CRASH_CYCLES=N` sets the cycles per mode (default 10); `.ci/crash-soak`
//! runs 200.

mod common;
mod daemon;

use banditd::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use banditd::journal::{check, format, Resolution};
use banditd::store::{SledOptions, SledStore};
use common::thompson;
use daemon::Daemon;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Default mode's stated loss window with the flags below (batch 5 ms +
/// flush 100 ms), plus room for the flush itself and a loaded machine.
const DEFAULT_WINDOW: Duration = Duration::from_millis(400);

#[derive(Debug, Clone)]
enum Ack {
    Choice {
        id: String,
        campaign: &'static str,
        arm: String,
    },
    Reward {
        id: String,
        campaign: &'static str,
        value: f64,
    },
}

#[derive(Default)]
struct Shared {
    acks: Mutex<Vec<(Instant, Ack)>>,
    stop: AtomicBool,
}

impl Shared {
    fn ack(&self, a: Ack) {
        self.acks.lock().expect("lock").push((Instant::now(), a));
    }
}

fn lin_campaign() -> pb::Campaign {
    pb::Campaign {
        id: "lin".into(),
        arms: ["a", "b", "c"]
            .iter()
            .map(|a| pb::Arm {
                id: a.to_string(),
                retired: false,
                ..Default::default()
            })
            .collect(),
        policy: Some(pb::campaign::Policy::Linucb(pb::LinUcb {
            alpha: 1.0,
            features: vec!["f1".into(), "f2".into(), "f3".into()],
            lambda: 1.0,
            epsilon: 0.05,
            missing: 0,
        })),
        reward_timeout_seconds: 2,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    }
}

async fn connect(url: &str) -> Option<Channel> {
    Channel::from_shared(url.to_string())
        .ok()?
        .connect()
        .await
        .ok()
}

async fn ensure_campaigns(admin: &mut CampaignsClient<Channel>) {
    for c in [
        thompson("ts", &["a", "b", "c", "d"], 1),
        lin_campaign(),
        thompson("churn", &["x", "y"], 1),
    ] {
        let _ = admin
            .create_campaign(pb::CreateCampaignRequest { campaign: Some(c) })
            .await;
    }
}

/// One client: Choose, sometimes retried; Rewards after a random delay
/// (some after the timeout), sometimes retried.
async fn traffic(url: String, task: usize, cycle: usize, seed: u64, shared: Arc<Shared>) {
    let Some(ch) = connect(&url).await else {
        return;
    };
    let mut bandit = BanditClient::new(ch);
    let mut rng = SmallRng::seed_from_u64(seed ^ (task as u64) << 32);
    let mut due: VecDeque<(Instant, String, &'static str)> = VecDeque::new();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let campaign: &'static str = match rng.random_range(0..10) {
            0..=4 => "ts",
            5..=7 => "lin",
            _ => "churn",
        };
        let mut req = pb::ChooseRequest {
            campaign_id: campaign.into(),
            segment: ["", "s1", "s2", "s3", "s4"][rng.random_range(0..5)].into(),
            ..Default::default()
        };
        if campaign == "lin" {
            for f in ["f1", "f2", "f3"] {
                req.context.insert(f.into(), rng.random::<f64>());
            }
        }
        if campaign != "churn" && rng.random_bool(0.25) {
            req.decision_id = format!("k{cycle}-{task}-{n}");
        }
        let Ok(resp) = bandit.choose(req.clone()).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let d = resp.into_inner();
        shared.ack(Ack::Choice {
            id: d.decision_id.clone(),
            campaign,
            arm: d.arm_id.clone(),
        });
        if !req.decision_id.is_empty() && rng.random_bool(0.2) {
            if let Ok(again) = bandit.choose(req).await {
                let again = again.into_inner();
                assert_eq!(
                    (&again.decision_id, &again.arm_id),
                    (&d.decision_id, &d.arm_id),
                    "a retried Choose returns the same answer"
                );
            }
        }
        if rng.random_bool(0.6) {
            let late = if campaign == "lin" { 2500 } else { 1500 };
            due.push_back((
                Instant::now() + Duration::from_millis(rng.random_range(0..late)),
                d.decision_id,
                campaign,
            ));
        }
        while due.front().is_some_and(|(t, _, _)| *t <= Instant::now()) {
            let Some((_, id, campaign)) = due.pop_front() else {
                break;
            };
            let value = match campaign {
                "lin" => rng.random_range(-1.0..2.0),
                _ => [0.0, 1.0, 1.0, 0.5][rng.random_range(0..4)],
            };
            let req = pb::RewardRequest {
                decision_id: id.clone(),
                value,
                slot: 0,
            };
            if let Ok(r) = bandit.reward(req.clone()).await {
                if !r.get_ref().duplicate {
                    shared.ack(Ack::Reward {
                        id: id.clone(),
                        campaign,
                        value,
                    });
                    if rng.random_bool(0.1) {
                        if let Ok(again) = bandit.reward(req).await {
                            assert!(again.get_ref().duplicate, "a retried Reward is a duplicate");
                        }
                    }
                }
            }
        }
    }
}

/// Deletes and re-creates the campaign `churn` every few hundred ms.
async fn churn(url: String, shared: Arc<Shared>) {
    let Some(ch) = connect(&url).await else {
        return;
    };
    let mut admin = CampaignsClient::new(ch);
    ensure_campaigns(&mut admin).await;
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deleted = admin
            .delete_campaign(pb::DeleteCampaignRequest {
                campaign_id: "churn".into(),
            })
            .await;
        if deleted.is_ok() {
            let _ = admin
                .create_campaign(pb::CreateCampaignRequest {
                    campaign: Some(thompson("churn", &["x", "y"], 1)),
                })
                .await;
        }
    }
}

/// Runs one cycle: start, traffic, SIGKILL at `kill_after`. Returns the
/// acknowledgements, the kill time and whether the daemon got to listen.
async fn cycle(
    dir: &Path,
    extra: &[&str],
    kill_after: Duration,
    cycle: usize,
    seed: u64,
) -> (Vec<(Instant, Ack)>, Instant, bool) {
    let start = Instant::now();
    let starting = Daemon::start(dir, extra);
    let daemon::Starting {
        mut child, addr, ..
    } = starting;
    let shared = Arc::new(Shared::default());
    let sh = shared.clone();
    let launcher = tokio::spawn(async move {
        let listen = tokio::task::spawn_blocking(move || addr.recv_timeout(kill_after))
            .await
            .ok()
            .and_then(Result::ok);
        let Some(listen) = listen else {
            return false;
        };
        let url = format!("http://{}", listen["listen"].as_str().unwrap_or_default());
        let mut tasks = vec![tokio::spawn(churn(url.clone(), sh.clone()))];
        for task in 0..4 {
            tasks.push(tokio::spawn(traffic(
                url.clone(),
                task,
                cycle,
                seed,
                sh.clone(),
            )));
        }
        for t in tasks {
            if let Err(e) = t.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        true
    });
    tokio::time::sleep_until((start + kill_after).into()).await;
    let killed_at = Instant::now();
    child.kill().expect("kill");
    child.wait().expect("wait");
    shared.stop.store(true, Ordering::Relaxed);
    let listened = match launcher.await {
        Ok(l) => l,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let acks = std::mem::take(&mut *shared.acks.lock().expect("lock"));
    (acks, killed_at, listened)
}

/// Checks the directory offline. `required(age)` says whether an
/// acknowledgement that old at the kill must be there. Returns (required,
/// missing acknowledgements' largest age).
fn verify(
    dir: &Path,
    acks: &[(Instant, Ack)],
    killed_at: Instant,
    required: impl Fn(Duration) -> bool,
) -> (usize, Option<Duration>) {
    let store = SledStore::open(&SledOptions {
        path: dir.to_path_buf(),
        cache_bytes: 16 << 20,
    })
    .expect("open the killed daemon's directory");
    let report = check::check(&store).expect("check");
    assert!(report.is_clean(), "{report}");
    let churns: Vec<u64> = report
        .campaigns
        .iter()
        .filter(|c| c.id == "churn")
        .map(|c| c.uid)
        .collect();
    assert!(
        churns.len() <= 1,
        "a deleted campaign came back: {churns:?}"
    );
    // A decision of a deleted incarnation of `churn` is legitimately gone.
    let deleted = |id: &str, campaign: &str| {
        campaign == "churn"
            && format::parse_decision_id(id).is_some_and(|(uid, _)| !churns.contains(&uid))
    };
    let (mut n_required, mut oldest_missing) = (0, None::<Duration>);
    for (at, ack) in acks {
        let age = killed_at.saturating_duration_since(*at);
        let (id, campaign) = match ack {
            Ack::Choice { id, campaign, .. } | Ack::Reward { id, campaign, .. } => (id, *campaign),
        };
        if deleted(id, campaign) {
            assert!(
                report.decision(id).is_none(),
                "{id} of a deleted campaign is back"
            );
            continue;
        }
        let found = report.decision(id);
        let present = match (ack, found) {
            (Ack::Choice { campaign, arm, .. }, Some(f)) => {
                assert_eq!((&f.campaign[..], &f.arm), (*campaign, arm), "{id}");
                true
            }
            (Ack::Reward { value, .. }, Some(f)) => match f.outcome {
                Some((Resolution::Rewarded, v)) => {
                    assert!(
                        (v - value).abs() < 1e-12,
                        "{id}: reward {v} vs acknowledged {value}"
                    );
                    true
                }
                Some((Resolution::Expired, _)) => {
                    panic!("{id}: acknowledged reward learned as an expiry")
                }
                None => false,
            },
            (_, None) => false,
        };
        if required(age) {
            n_required += 1;
            assert!(
                present,
                "{ack:?} acknowledged {age:?} before the kill is missing"
            );
        } else if !present {
            oldest_missing = oldest_missing.max(Some(age));
        }
    }
    (n_required, oldest_missing)
}

/// The three tests run one at a time: each loads both cores, and the loss
/// window of default durability assumes the writer thread gets its share
/// of the CPU (two daemons and their clients at once starve it).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn kill_cycles(
    name: &str,
    extra: &[&str],
    seed: u64,
    cycles: usize,
    required: impl Fn(Duration) -> bool + Copy,
) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut acked, mut checked, mut lost_window) = (0, 0, Duration::ZERO);
    for c in 0..cycles {
        let kill_after = Duration::from_millis(rng.random_range(1..=2000));
        let (acks, killed_at, listened) =
            cycle(dir.path(), extra, kill_after, c, seed + c as u64).await;
        let (required_n, missing) = verify(dir.path(), &acks, killed_at, required);
        eprintln!(
            "{name} cycle {c}: killed after {kill_after:?} (listening: {listened}), {} acknowledgements, {required_n} required and present, oldest missing {missing:?}",
            acks.len()
        );
        acked += acks.len();
        checked += required_n;
        lost_window = lost_window.max(missing.unwrap_or_default());
    }
    assert!(acked > 1000, "too little traffic: {acked}");
    eprintln!("{name}: {cycles} cycles, {acked} acknowledgements, {checked} required and present; the oldest missing acknowledgement was {lost_window:?} old at the kill");
    // A clean start and a graceful stop after all that.
    let d = Daemon::spawn(dir.path(), extra);
    assert_eq!(d.terminate(), Some(0));
    verify(dir.path(), &[], Instant::now(), |_| true);
}

fn cycles() -> usize {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

// Strict durability: every acknowledgement survives SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_keeps_every_acknowledgement_through_sigkill() {
    kill_cycles(
        "strict",
        &["--durability", "strict", "--retention-seconds", "3600"],
        101,
        cycles(),
        |_| true,
    )
    .await;
}

// Default durability: every acknowledgement older than the loss window
// (batch interval + flush interval, with margin) survives SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_mode_keeps_acknowledgements_older_than_its_window() {
    kill_cycles(
        "default",
        &[
            "--flush-interval-ms",
            "100",
            "--batch-interval-ms",
            "5",
            "--retention-seconds",
            "3600",
        ],
        202,
        cycles(),
        |age| age > DEFAULT_WINDOW,
    )
    .await;
}

// Default durability with the default retention, so decisions are forgotten
// (and their blocks deleted) while kills land: the invariants still hold,
// and what cannot have been forgotten yet (younger than the shortest
// timeout plus retention, 2 s) and is older than the window is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_survives_sigkill() {
    kill_cycles(
        "forgetting",
        &["--flush-interval-ms", "100", "--batch-interval-ms", "5"],
        303,
        cycles().div_ceil(2),
        |age| age > DEFAULT_WINDOW && age < Duration::from_millis(1500),
    )
    .await;
}
