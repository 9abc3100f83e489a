//! Format 0 → current: a store written by the previous version loads, with
//! its interrupted outcome writes folded in exactly once.

use crate::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use crate::engine::{ChooseRequest, Engine, EngineOptions, RewardOutcome};
use crate::store::{MemoryStore, Op};
use std::sync::Arc;

fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(s.len() as u8);
    buf.extend_from_slice(s.as_bytes());
}

fn v0_row(campaign: &str, segment: &str, arm: u32, n: u64, sum: f64, through: u64) -> Op {
    let mut k = vec![b'p'];
    push_str(&mut k, campaign);
    push_str(&mut k, segment);
    k.extend_from_slice(&arm.to_be_bytes());
    let mut v = Vec::new();
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&sum.to_bits().to_be_bytes());
    v.extend_from_slice(&through.to_be_bytes());
    Op::Put(k, v)
}

#[allow(clippy::too_many_arguments)]
fn v0_decision(
    id: &str,
    campaign: &str,
    segment: &str,
    arm: u32,
    status: u8,
    deadline_ms: u64,
    outcome_seq: u64,
    reward: f64,
) -> Op {
    let mut v = vec![status];
    v.extend_from_slice(&arm.to_be_bytes());
    v.extend_from_slice(&0.5f64.to_bits().to_be_bytes());
    v.extend_from_slice(&(deadline_ms - 60_000).to_be_bytes());
    v.extend_from_slice(&deadline_ms.to_be_bytes());
    v.extend_from_slice(&outcome_seq.to_be_bytes());
    v.extend_from_slice(&reward.to_bits().to_be_bytes());
    push_str(&mut v, campaign);
    push_str(&mut v, segment);
    v.extend_from_slice(&0u16.to_be_bytes());
    let mut k = vec![b'd'];
    k.extend_from_slice(id.as_bytes());
    Op::Put(k, v)
}

fn spec() -> CampaignSpec {
    CampaignSpec {
        id: "spring".into(),
        arms: vec![
            ArmSpec {
                id: "a".into(),
                retired: false,
                ..ArmSpec::default()
            },
            ArmSpec {
                id: "b".into(),
                retired: false,
                ..ArmSpec::default()
            },
        ],
        policy: PolicySpec::thompson_default(),
        reward_timeout_seconds: 60,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    }
}

// A format-0 store migrates: rows as they were, plus the one outcome whose
// row write was interrupted (counted once, also after another restart);
// old decision ids still answer Reward and Choose retries.
#[test]
fn format_0_migrates_with_interrupted_outcomes_folded_once() {
    let store = Arc::new(MemoryStore::new());
    let far = 4_000_000_000_000u64;
    let mut c = b"c".to_vec();
    c.extend_from_slice(b"spring");
    store.seed(&[
        Op::Put(c, serde_json::to_vec(&spec()).expect("json")),
        v0_row("spring", "vip", 1, 10, 4.0, 7),
        v0_row("spring", "", 0, 5, 1.0, 6),
        // Counted already (seq 6 ≤ through 6).
        v0_decision(
            "3f09c1d2a4b5e6f7-1-000000000001",
            "spring",
            "",
            0,
            1,
            far,
            6,
            1.0,
        ),
        // Interrupted: its row's `through` is 7 < 8.
        v0_decision("imp-2", "spring", "vip", 1, 1, far + 1, 8, 1.0),
        // Pending.
        v0_decision("imp-3", "spring", "vip", 0, 0, far + 2, 0, 0.0),
        // Of a campaign that no longer exists: dropped.
        v0_decision("gone-1", "gone", "", 0, 0, far + 3, 0, 0.0),
    ]);
    let open = || Engine::open(store.clone(), EngineOptions::default()).expect("open");
    let e = open();
    let stats = e.stats("spring", "vip").expect("stats");
    let b = &stats[0].arms[1];
    assert_eq!(
        (b.pulls, b.reward_sum),
        (11, 5.0),
        "the interrupted outcome is folded in"
    );
    assert_eq!(
        e.reward("3f09c1d2a4b5e6f7-1-000000000001", 1.0)
            .expect("old id"),
        RewardOutcome::Duplicate
    );
    assert_eq!(
        e.reward("imp-2", 1.0).expect("old id"),
        RewardOutcome::Duplicate
    );
    let replay = e
        .choose(&ChooseRequest {
            campaign_id: "spring".into(),
            segment: "vip".into(),
            decision_id: Some("imp-3".into()),
            ..ChooseRequest::default()
        })
        .expect("replay");
    assert_eq!(replay.arm_id, "a");
    assert_eq!(
        e.reward("imp-3", 1.0).expect("pending"),
        RewardOutcome::Learned
    );
    assert!(matches!(
        e.reward("gone-1", 1.0),
        Err(crate::Error::NotFound(_))
    ));
    e.shutdown().expect("shutdown");
    drop(e);
    let e = open();
    let stats = e.stats("spring", "vip").expect("stats");
    assert_eq!(
        (stats[0].arms[1].pulls, stats[0].arms[1].reward_sum),
        (11, 5.0)
    );
    assert_eq!(
        (stats[0].arms[0].pulls, stats[0].arms[0].reward_sum),
        (1, 1.0)
    );
    let report = crate::journal::check::check(&*store).expect("check");
    assert!(report.is_clean(), "{report}");
}
