//! Model-based property test of the sled store: random operations, with
//! restarts, against the in-memory store as the reference.

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use banditd::policy::linucb::LinearArm;
use banditd::policy::thompson::ArmCounts;
use banditd::store::{
    DecisionRecord, DecisionStatus, LinearRow, MemoryStore, PosteriorKey, PosteriorRow,
    SledOptions, SledStore, Snapshot, Store,
};
use proptest::prelude::*;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    PutCampaign(u8, u8),
    DeleteCampaign(u8),
    PutDecision(u8, u8, u8),
    RecordOutcome(u8, u8, u8, u64, u8),
    RemoveDecision(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..3, 1u8..5).prop_map(|(c, a)| Op::PutCampaign(c, a)),
        1 => (0u8..3).prop_map(Op::DeleteCampaign),
        4 => (0u8..20, 0u8..3, 0u8..4).prop_map(|(d, c, s)| Op::PutDecision(d, c, s)),
        4 => (0u8..20, 0u8..3, 0u8..4, 0u64..1000, 0u8..=100).prop_map(|(d, c, s, n, r)| Op::RecordOutcome(d, c, s, n, r)),
        1 => (0u8..20).prop_map(Op::RemoveDecision),
        1 => Just(Op::Reopen),
    ]
}

fn campaign_id(c: u8) -> String {
    format!("campaign-{c}")
}

fn decision(d: u8, c: u8, s: u8, status: DecisionStatus) -> DecisionRecord {
    DecisionRecord {
        id: format!("decision-{d}").into(),
        campaign: campaign_id(c).into(),
        segment: if s == 0 {
            "".into()
        } else {
            format!("segment-{s}").into()
        },
        arm: u32::from(s % 3),
        propensity: 1.0 / f64::from(d + 1),
        created_ms: 1_700_000_000_000 + u64::from(d),
        deadline_ms: 1_700_000_060_000 + u64::from(d) * 7,
        status,
        outcome_seq: if status == DecisionStatus::Pending {
            0
        } else {
            u64::from(d) + 1
        },
        reward: if status == DecisionStatus::Pending {
            0.0
        } else {
            0.5
        },
        // Campaign 2 is contextual: its decisions carry a context vector.
        context: (c == 2).then(|| vec![1.0, f64::from(d) / 7.0, -0.25].into()),
    }
}

fn open(path: &Path) -> SledStore {
    // sled's background thread may hold the lock for a moment after a drop.
    for _ in 0..100 {
        if let Ok(s) = SledStore::open(&SledOptions {
            path: path.to_path_buf(),
            flush_every_ms: 1000,
            cache_bytes: 4 << 20,
        }) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("cannot reopen sled");
}

fn sorted(mut s: Snapshot) -> Snapshot {
    s.campaigns.sort_by(|a, b| a.id.cmp(&b.id));
    s.posteriors.sort_by(|a, b| a.0.cmp(&b.0));
    s.decisions.sort_by(|a, b| a.id.cmp(&b.id));
    s.linear.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    s
}

fn apply(store: &dyn Store, op: &Op, live_decisions: &[(String, String)]) {
    match *op {
        Op::PutCampaign(c, arms) => store
            .put_campaign(&CampaignSpec {
                id: campaign_id(c),
                arms: (0..arms)
                    .map(|a| ArmSpec {
                        id: format!("arm-{a}"),
                        retired: a == 3,
                    })
                    .collect(),
                policy: PolicySpec::thompson_default(),
                reward_timeout_seconds: 60 + u32::from(arms),
                default_reward: 0.0,
            })
            .expect("put campaign"),
        Op::DeleteCampaign(c) => {
            let id = campaign_id(c);
            let ds: Vec<String> = live_decisions
                .iter()
                .filter(|(_, dc)| *dc == id)
                .map(|(d, _)| d.clone())
                .collect();
            store.delete_campaign(&id, &ds).expect("delete");
        }
        Op::PutDecision(d, c, s) => {
            let rec = decision(d, c, s, DecisionStatus::Pending);
            store.put_decision(&rec).expect("put decision");
        }
        Op::RecordOutcome(d, c, s, n, r) => {
            let rec = decision(
                d,
                c,
                s,
                if r % 2 == 0 {
                    DecisionStatus::Rewarded
                } else {
                    DecisionStatus::Expired
                },
            );
            let key = PosteriorKey {
                campaign: rec.campaign.clone(),
                segment: rec.segment.clone(),
                arm: rec.arm,
            };
            let row = PosteriorRow {
                counts: ArmCounts {
                    n,
                    sum: n as f64 * f64::from(r) / 100.0,
                },
                through: n * 3 + 1,
            };
            let linear = (c == 2).then(|| {
                let mut arm = LinearArm::new(3, 1.0);
                arm.update(
                    rec.context.as_deref().unwrap_or_default(),
                    f64::from(r) / 10.0,
                );
                LinearRow {
                    arm,
                    through: row.through,
                }
            });
            store
                .record_outcome(&key, &row, linear.as_ref(), &rec)
                .expect("outcome");
        }
        Op::RemoveDecision(d) => store
            .remove_decision(&format!("decision-{d}").into())
            .expect("remove"),
        Op::Reopen => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    // Whatever the sequence of writes and restarts, sled holds exactly what
    // the reference model holds.
    #[test]
    fn sled_store_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = MemoryStore::new();
        let mut sled = Some(open(dir.path()));
        let mut live = Vec::new();
        for op in &ops {
            if let Op::PutDecision(d, c, _) | Op::RecordOutcome(d, c, _, _, _) = *op {
                live.push((format!("decision-{d}"), campaign_id(c)));
            }
            if matches!(op, Op::Reopen) {
                if let Some(s) = sled.take() {
                    s.flush().expect("flush");
                }
                let reopened = open(dir.path());
                prop_assert_eq!(sorted(reopened.load().expect("load")), sorted(model.load().expect("model")));
                sled = Some(reopened);
                continue;
            }
            let store = sled.as_ref().expect("open store");
            apply(&model, op, &live);
            apply(store, op, &live);
        }
        let store = sled.as_ref().expect("open store");
        prop_assert_eq!(sorted(store.load().expect("load")), sorted(model.load().expect("model")));
    }
}
