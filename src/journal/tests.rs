//! The journal on its own: batching, blocks, durability marks, failures.

use super::format::{self, DecisionEntry, OutcomeEntry, Resolution};
use super::*;
use crate::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use crate::store::{MemoryStore, Op, Visit};
use std::time::Instant;

fn spec(id: &str) -> Arc<CampaignSpec> {
    Arc::new(CampaignSpec {
        id: id.into(),
        arms: (0..3)
            .map(|i| ArmSpec {
                id: format!("arm{i}"),
                retired: false,
                ..ArmSpec::default()
            })
            .collect(),
        policy: PolicySpec::thompson_default(),
        reward_timeout_seconds: 60,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    })
}

fn options(mode: Mode) -> JournalOptions {
    JournalOptions {
        mode,
        batch_interval: Duration::from_millis(1),
        flush_interval: Duration::from_millis(1),
        capacity: 1 << 16,
        ..JournalOptions::default()
    }
}

fn decision(at: Position) -> Change {
    Change::Decision {
        uid: 1,
        at,
        entry: DecisionEntry {
            created_ms: 1000 + at.1,
            propensity: 0.5,
            segment: 0,
            arm: (at.1 % 3) as u16,
            caller_id: None,
            context: None,
            probs: None,
            holdout: false,
            slot: 0,
        },
    }
}

fn outcome(at: Position, n: u64) -> Change {
    Change::Outcome {
        uid: 1,
        outcome: OutcomeEntry {
            decision: at,
            resolution: Resolution::Rewarded,
            reward: 1.0,
            at_ms: 2000,
        },
        segment: 0,
        arm: (at.1 % 3) as u16,
        row: Some(Row {
            counts: crate::policy::thompson::ArmCounts { n, sum: n as f64 },
            decayed: None,
        }),
        created_ms: 1000 + at.1,
        context: None,
    }
}

fn values(store: &MemoryStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .scan(&mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("scan");
    out
}

/// Campaign uid 1 and its segment 0 ("").
fn campaign_with_segment(j: &Journal) {
    j.append(Change::Campaign {
        uid: 1,
        spec: spec("c"),
    });
    j.append(Change::Segment {
        uid: 1,
        segment: 0,
        name: "".into(),
    });
}

fn open(store: &Arc<MemoryStore>, mode: Mode) -> (Journal, Recovered) {
    Journal::open(store.clone(), options(mode)).expect("open")
}

// Decisions of many batches land in few blocks, none longer than the value
// limit; what was synced is recovered, in order, after a crash.
#[test]
fn decisions_gather_in_bounded_blocks_and_survive_a_crash() {
    let store = Arc::new(MemoryStore::new());
    let (j, rec) = open(&store, Mode::Default);
    assert_eq!(rec.run, 1);
    campaign_with_segment(&j);
    for slot in 0..1000 {
        j.append(decision((1, slot)));
        if slot % 37 == 0 {
            j.sync().expect("sync");
        }
    }
    j.sync().expect("sync");
    let kv = values(&store);
    let blocks = kv
        .iter()
        .filter(|(k, _)| {
            matches!(
                format::decode_key(k),
                Ok(Some(format::Key::Decisions { .. }))
            )
        })
        .count();
    assert!(kv.iter().all(|(_, v)| v.len() <= format::MAX_VALUE_BYTES));
    assert!(
        blocks <= 1000 * 23 / format::SEAL_BYTES + 2,
        "{blocks} blocks"
    );
    drop(j);
    let crashed = Arc::new(store.crashed());
    let (_j, rec) = open(&crashed, Mode::Default);
    assert_eq!(rec.run, 2, "a new run after every start");
    let mut rec = rec;
    let slots: Vec<u64> = rec.campaigns[0].drain_decisions().map(|d| d.at.1).collect();
    assert_eq!(slots, (0..1000).collect::<Vec<_>>());
}

// Many outcomes of one row in one batch write the row once, with its last
// value; the outcome and the row arrive in the same batch.
#[test]
fn a_batch_keeps_the_last_version_of_each_row() {
    let store = Arc::new(MemoryStore::new());
    let (j, _) = open(&store, Mode::Default);
    campaign_with_segment(&j);
    for slot in 0..30 {
        j.append(decision((1, slot * 3)));
    }
    j.sync().expect("sync");
    let before = store.batches();
    for (i, slot) in (0..30).enumerate() {
        j.append(outcome((1, slot * 3), i as u64 + 1));
    }
    j.sync().expect("sync");
    assert!(
        store.batches() - before <= 2,
        "{} batches",
        store.batches() - before
    );
    drop(j);
    let (_j, mut rec) = open(&Arc::new(store.crashed()), Mode::Default);
    let c = &mut rec.campaigns[0];
    assert_eq!(
        c.rows,
        vec![(
            0,
            0,
            Row {
                counts: crate::policy::thompson::ArmCounts { n: 30, sum: 30.0 },
                decayed: None
            }
        )]
    );
    assert_eq!(
        c.drain_decisions().filter(|d| d.outcome.is_some()).count(),
        30
    );
}

// Strict mode: a wait returns once the change is flushed; a crash right
// after keeps it.
#[tokio::test]
async fn strict_waits_return_after_the_flush() {
    let store = Arc::new(MemoryStore::new());
    let (j, _) = open(&store, Mode::Strict);
    j.append(Change::Campaign {
        uid: 1,
        spec: spec("c"),
    });
    let t = j.append(Change::Segment {
        uid: 1,
        segment: 0,
        name: "vip".into(),
    });
    j.wait(t).await.expect("durable");
    let (_j2, rec) = open(&Arc::new(store.crashed()), Mode::Strict);
    assert_eq!(rec.campaigns[0].segments, vec![(0, Arc::from("vip"))]);
}

// A failed write is permanent: the waiter of a change that was not durable
// hears so, nothing more is admitted, and no later success is reported.
#[tokio::test]
async fn a_failure_is_permanent() {
    let store = Arc::new(MemoryStore::new());
    let (j, _) = open(&store, Mode::Strict);
    let t = j.append(Change::Campaign {
        uid: 1,
        spec: spec("c"),
    });
    j.wait(t).await.expect("durable");
    store.fail_after(1); // the next apply succeeds, its flush fails
    let t = j.append(decision((1, 0)));
    assert!(matches!(j.wait(t).await, Err(JournalError::NotDurable(_))));
    assert!(matches!(j.admit(1), Err(JournalError::Failed(_))));
    assert!(j.failure().is_some());
    tokio::time::timeout(Duration::from_secs(5), j.failed())
        .await
        .expect("failed() resolves");
    assert!(matches!(j.sync(), Err(JournalError::NotDurable(_))));
    assert!(j.durable() < t);
}

/// A store whose writes panic.
#[derive(Debug, Default)]
struct PanickingStore(MemoryStore);

impl Store for PanickingStore {
    fn first_key(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.first_key(from, to)
    }
    fn scan_range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        self.0.scan_range(from, to, visit)
    }
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.len() > 2 {
            panic!("injected panic");
        }
        self.0.apply(ops)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.0.flush()
    }
}

// A panic in the writer fails every waiter and every later change instead
// of leaving them waiting forever.
#[tokio::test]
async fn a_writer_panic_fails_waiters_instead_of_hanging() {
    let (j, _) =
        Journal::open(Arc::new(PanickingStore::default()), options(Mode::Strict)).expect("open");
    campaign_with_segment(&j);
    let t = j.append(decision((1, 0)));
    let r = tokio::time::timeout(Duration::from_secs(5), j.wait(t))
        .await
        .expect("the wait ends");
    assert!(matches!(r, Err(JournalError::NotDurable(_))));
    assert!(matches!(j.admit(1), Err(JournalError::Failed(_))));
    let start = Instant::now();
    assert!(j.shutdown().is_err());
    assert!(start.elapsed() < Duration::from_secs(5));
}

// Admission refuses changes beyond the queue's capacity (and nothing is
// appended by a refusal).
#[test]
fn admission_bounds_the_queue() {
    let store = Arc::new(MemoryStore::new());
    let (j, _) = Journal::open(
        store,
        JournalOptions {
            capacity: 4,
            batch_interval: Duration::from_secs(1),
            ..options(Mode::Default)
        },
    )
    .expect("open");
    assert!(j.admit(4).is_ok());
    assert!(matches!(j.admit(5), Err(JournalError::Full)));
}

// Forgetting deletes the blocks wholly before the watermark and records
// it; recovery skips what was forgotten.
#[test]
fn forgetting_deletes_blocks_and_recovery_skips_forgotten_decisions() {
    let store = Arc::new(MemoryStore::new());
    let (j, _) = open(&store, Mode::Default);
    campaign_with_segment(&j);
    for slot in 0..400 {
        j.append(decision((1, slot)));
        j.append(outcome((1, slot), slot + 1));
        if slot % 50 == 49 {
            j.sync().expect("sync");
        }
    }
    j.sync().expect("sync");
    let keys_before = store.len();
    j.append(Change::Forgotten {
        uid: 1,
        below: (1, 390),
    });
    j.sync().expect("sync");
    assert!(store.len() < keys_before, "blocks were deleted");
    drop(j);
    let (_j, rec) = open(&Arc::new(store.crashed()), Mode::Default);
    let mut rec = rec;
    let c = &mut rec.campaigns[0];
    assert_eq!(c.watermark, (1, 390));
    let ds: Vec<_> = c.drain_decisions().collect();
    let slots: Vec<u64> = ds.iter().map(|d| d.at.1).collect();
    assert_eq!(slots, (390..400).collect::<Vec<_>>());
    assert!(ds.iter().all(|d| d.outcome.is_some()));
}

// A deleted campaign's keys all go, also those written in the same batch,
// and start-up removes keys of a campaign without a record.
#[test]
fn deletion_removes_everything_and_startup_removes_orphans() {
    let store = Arc::new(MemoryStore::new());
    let (j, _) = open(&store, Mode::Default);
    for uid in [1, 2] {
        j.append(Change::Campaign {
            uid,
            spec: spec("c"),
        });
        j.append(Change::Segment {
            uid,
            segment: 0,
            name: "".into(),
        });
    }
    j.sync().expect("sync");
    j.append(decision((1, 0)));
    j.append(Change::Deleted { uid: 1 });
    j.sync().expect("sync");
    let prefix = format::campaign_prefix(1);
    assert!(values(&store).iter().all(|(k, _)| !k.starts_with(&prefix)));
    drop(j);
    store.seed(&[Op::Put(format::segment_key(9, 0), b"x".to_vec())]);
    let (_j, rec) = open(&store, Mode::Default);
    assert_eq!(rec.campaigns.len(), 1);
    let orphan = format::campaign_prefix(9);
    assert!(values(&store).iter().all(|(k, _)| !k.starts_with(&orphan)));
    assert!(rec.next_uid >= 3);
}
