//! At the largest inputs the limits allow (1,000 arms with 128-byte ids,
//! 63 context features, 128-byte caller ids), no value the journal writes
//! comes near sled's blob threshold: sled never fsyncs blob files, so a
//! blob would break the durability promise.

use banditd::campaign::{limits, ArmSpec, CampaignSpec, PolicySpec};
use banditd::engine::{ChooseRequest, Engine, EngineOptions};
use banditd::journal::format::MAX_VALUE_BYTES;
use banditd::store::{SledOptions, SledStore, Store};
use std::sync::Arc;

// Every value stays below the journal's limit, and sled writes no blob.
#[test]
fn no_value_reaches_the_blob_threshold_at_the_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SledStore::open(&SledOptions {
            path: dir.path().to_path_buf(),
            cache_bytes: 16 << 20,
        })
        .expect("sled"),
    );
    let engine = Engine::open(store.clone(), EngineOptions::default()).expect("engine");
    let features: Vec<String> = (0..limits::MAX_FEATURES)
        .map(|i| format!("feature-{i:03}"))
        .collect();
    let arm_id = |i: usize| format!("{i:04}-{}", "x".repeat(limits::MAX_ID_BYTES - 5));
    engine
        .create_campaign(CampaignSpec {
            id: "c".repeat(limits::MAX_ID_BYTES),
            arms: (0..limits::MAX_ARMS)
                .map(|i| ArmSpec {
                    id: arm_id(i),
                    retired: false,
                    ..ArmSpec::default()
                })
                .collect(),
            policy: PolicySpec::LinUcb {
                alpha: 1.0,
                lambda: 1.0,
                epsilon: 0.5,
                features: features.clone(),
                missing_zero: false,
            },
            reward_timeout_seconds: 3600,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        })
        .expect("create");
    for i in 0..400 {
        let d = engine
            .choose(&ChooseRequest {
                campaign_id: "c".repeat(limits::MAX_ID_BYTES),
                segment: format!("{i:03}{}", "s".repeat(limits::MAX_ID_BYTES - 3)),
                context: features.iter().map(|f| (f.clone(), 0.5)).collect(),
                decision_id: Some(format!("{i:04}{}", "d".repeat(limits::MAX_ID_BYTES - 4))),
                count: 0,
            })
            .expect("choose");
        engine.reward(&d.decision_id, 1.0).expect("reward");
        if i % 50 == 0 {
            engine.sync().expect("sync");
        }
    }
    engine.sync().expect("sync");
    let mut longest = 0;
    store
        .scan(&mut |_, v| {
            longest = longest.max(v.len());
            Ok(())
        })
        .expect("scan");
    assert!(longest <= MAX_VALUE_BYTES, "a value of {longest} bytes");
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(blobs.is_empty(), "sled wrote blobs: {blobs:?}");
}
