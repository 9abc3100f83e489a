//! Bounded state under steady traffic: expired and resolved decisions are
//! forgotten, statistics are overwritten in place, so memory and disk stop
//! growing once traffic is steady.

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use banditd::engine::{ChooseRequest, Clock, Engine, EngineOptions};
use banditd::journal::log::LogOptions;
use banditd::journal::JournalOptions;
use banditd::store::{SledOptions, SledStore, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

// Eight equal phases of traffic (half rewarded, half left to expire): the
// number of remembered decisions stays at the retention window's size, every
// outcome is counted, disk use over the last four phases is not much above
// the largest of the first four (it does not grow with the total traffic:
// linear growth would double it; sled reclaims its segments in steps, so
// single phases jump), and the store holds nothing of a forgotten decision.
#[test]
fn decisions_and_disk_stay_bounded_under_steady_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SledStore::open(&SledOptions {
            path: dir.path().to_path_buf(),
            cache_bytes: 16 << 20,
        })
        .expect("sled"),
    );
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let engine = Engine::open(
        store.clone() as Arc<dyn Store>,
        EngineOptions {
            seed: Some(5),
            clock: Clock::Manual(clock.clone()),
            // The decision log grows to its retention and disk bound by
            // design (tested in `journal::log`); here the state alone.
            journal: JournalOptions {
                decision_log: LogOptions {
                    retention_ms: 0,
                    ..LogOptions::default()
                },
                ..JournalOptions::default()
            },
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    engine
        .create_campaign(CampaignSpec {
            id: "steady".into(),
            arms: (0..5)
                .map(|i| ArmSpec {
                    id: format!("offer-{i}"),
                    retired: false,
                    ..ArmSpec::default()
                })
                .collect(),
            policy: PolicySpec::thompson_default(),
            reward_timeout_seconds: 2,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        })
        .expect("create");
    let req = ChooseRequest {
        campaign_id: "steady".into(),
        segment: "returning".into(),
        ..ChooseRequest::default()
    };
    const PER_PHASE: u64 = 30_000;
    const PHASES: u64 = 8;
    let mut sizes = Vec::new();
    let mut max_remembered = 0;
    for phase in 0..PHASES {
        for i in 0..PER_PHASE {
            // 10 decisions per simulated millisecond of traffic: 1,000 per 100 ms.
            clock.fetch_add(u64::from(i % 10 == 0), Ordering::Relaxed);
            let d = engine.choose(&req).expect("choose");
            if i % 2 == 0 {
                engine.reward(&d.decision_id, 1.0).expect("reward");
            }
            if i % 500 == 0 {
                engine.expire_due().expect("sweep");
                max_remembered = max_remembered.max(engine.decision_count());
            }
        }
        engine.sync().expect("sync");
        sizes.push(store.size_on_disk().expect("size"));
        eprintln!(
            "phase {phase}: size on disk {} bytes, remembered decisions {}",
            sizes[phase as usize],
            engine.decision_count()
        );
    }
    // Let everything expire and be forgotten.
    clock.fetch_add(10_000, Ordering::Relaxed);
    engine.expire_due().expect("sweep");
    assert_eq!(engine.decision_count(), 0);
    engine.sync().expect("sync");
    let report = banditd::journal::check::check(&*store).expect("check");
    assert_eq!(report.decision_count(), 0, "forgotten on disk too");
    assert!(report.is_clean(), "{report}");
    // Retention: decisions live 2 × 2 s = 4 s = 40,000 decisions at this rate, plus one sweep.
    assert!(max_remembered <= 41_000, "remembered {max_remembered}");
    let stats = engine.stats("steady", "").expect("stats");
    let pulls: u64 = stats[0].arms.iter().map(|a| a.pulls).sum();
    let sum: f64 = stats[0].arms.iter().map(|a| a.reward_sum).sum();
    assert_eq!(pulls, PHASES * PER_PHASE);
    assert_eq!(sum, (PHASES * PER_PHASE / 2) as f64);
    let early = sizes[..4].iter().copied().max().unwrap_or(0);
    let late = sizes[4..].iter().copied().max().unwrap_or(0);
    assert!(
        late < early * 3 / 2 + (2 << 20),
        "disk grew with traffic: {sizes:?}"
    );
}
