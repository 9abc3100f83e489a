//! The decision log's records, blocks, retention and disk bound.

use super::*;
use crate::store::{MemoryStore, Op};

fn decision(slot: u64, ms: u64, segment: u32, probs: Option<Arc<[f64]>>) -> LoggedDecision {
    LoggedDecision {
        at: (1, slot),
        created_ms: ms,
        segment,
        arm: (slot % 3) as u16,
        propensity: 0.25,
        probs,
        context: vec![0.5, -2.0],
        holdout: slot % 5 == 0,
        slot: (slot % 7 == 3) as u8 * 2,
    }
}

fn outcome(slot: u64, created_ms: u64, at_ms: u64) -> LoggedOutcome {
    LoggedOutcome {
        decision: (1, slot),
        created_ms,
        at_ms,
        resolution: if slot % 2 == 0 {
            Resolution::Rewarded
        } else {
            Resolution::Expired
        },
        reward: (slot % 2) as f64,
    }
}

fn apply(store: &MemoryStore, ops: LogOps) {
    let mut batch: Vec<Op> = ops.puts.into_iter().map(|(k, v)| Op::Put(k, v)).collect();
    batch.extend(ops.deletes.into_iter().map(Op::Delete));
    store.apply(&batch).expect("apply");
}

fn export_all(store: &MemoryStore, since: u64, until: u64) -> Vec<ExportedDecision> {
    let mut out = Vec::new();
    export(store, 7, since, until, 10_000, &mut |e| {
        out.push(e);
        true
    })
    .expect("export");
    out
}

// Records round-trip through blocks, a repeated vector is one byte, every
// outcome finds its decision, and a time range selects exactly its
// decisions.
#[test]
fn records_round_trip_and_join() {
    let store = MemoryStore::new();
    let mut w = LogWriter::load(&store, LogOptions::default(), 1).expect("load");
    let shared: Arc<[f64]> = vec![0.25, 0.5, 0.25].into();
    let mut expected = Vec::new();
    for slot in 0..2_000u64 {
        let ms = 1_000_000 + slot * 100;
        let d = decision(slot, ms, (slot % 2) as u32, Some(shared.clone()));
        w.decision(7, &d);
        expected.push(d);
        if slot >= 10 {
            let o = slot - 10;
            w.outcome(7, &outcome(o, 1_000_000 + o * 100, ms));
        }
        if slot % 50 == 0 {
            apply(&store, w.finish());
        }
    }
    apply(&store, w.finish());
    let all = export_all(&store, 0, u64::MAX);
    assert_eq!(all.len(), 2_000);
    for (e, d) in all.iter().zip(&expected) {
        assert_eq!(&e.decision, d);
        let slot = d.at.1;
        match e.outcome {
            Some(o) => assert_eq!(o, outcome(slot, d.created_ms, o.at_ms)),
            None => assert!(slot >= 1_990, "slot {slot} lost its outcome"),
        }
    }
    // A repeated vector costs one byte: well under 80 bytes a decision.
    let mut bytes = 0;
    store
        .scan(&mut |k, v| {
            if k.first() == Some(&LOG_TAG) && k.get(9) == Some(&DECISIONS) {
                bytes += v.len();
            }
            Ok(())
        })
        .expect("scan");
    assert!(bytes < 2_000 * 70, "{bytes} bytes");
    let window = export_all(&store, 1_000_000 + 500 * 100, 1_000_000 + 599 * 100);
    assert_eq!(window.len(), 100);
    assert_eq!(window[0].decision.at.1, 500);
}

// Blocks past the retention are deleted; beyond the disk bound the oldest
// go first; a reloaded log knows its blocks.
#[test]
fn retention_and_disk_bound() {
    let store = MemoryStore::new();
    let opts = LogOptions {
        retention_ms: 10 * MAX_SPAN_MS,
        max_bytes: u64::MAX,
    };
    let mut w = LogWriter::load(&store, opts, 1).expect("load");
    // One decision a minute for 30 hours.
    for slot in 0..1_800u64 {
        w.decision(7, &decision(slot, slot * 60_000, 0, None));
        apply(&store, w.finish());
    }
    let kept = export_all(&store, 0, u64::MAX);
    let oldest = kept.first().map_or(0, |e| e.decision.created_ms);
    let newest = 1_799 * 60_000;
    assert!(newest - oldest <= 12 * MAX_SPAN_MS, "kept from {oldest}");
    assert!(newest - oldest >= 10 * MAX_SPAN_MS, "kept from {oldest}");

    let mut w = LogWriter::load(
        &store,
        LogOptions {
            retention_ms: 10 * MAX_SPAN_MS,
            max_bytes: 20_000,
        },
        2,
    )
    .expect("reload");
    assert!(w.total > 20_000);
    w.decision(7, &decision(5_000, newest + 60_000, 0, None));
    apply(&store, w.finish());
    let kept = export_all(&store, 0, u64::MAX);
    assert!(w.total <= 20_000, "{}", w.total);
    assert_eq!(kept.last().map(|e| e.decision.at.1), Some(5_000));
    let mut bytes = 0;
    store
        .scan(&mut |k, v| {
            if k.first() == Some(&LOG_TAG) {
                bytes += v.len() as u64;
            }
            Ok(())
        })
        .expect("scan");
    assert_eq!(bytes, w.total, "the bound counts what is stored");
}

// A campaign that goes quiet loses its last, unsealed blocks to the
// retention too, once other campaigns' records move time past it.
#[test]
fn a_quiet_campaign_ages_out() {
    let store = MemoryStore::new();
    let opts = LogOptions {
        retention_ms: 2 * MAX_SPAN_MS,
        max_bytes: u64::MAX,
    };
    let mut w = LogWriter::load(&store, opts, 1).expect("load");
    w.decision(7, &decision(0, 1_000, 0, None));
    w.outcome(7, &outcome(0, 1_000, 2_000));
    apply(&store, w.finish());
    assert_eq!(export_all(&store, 0, u64::MAX).len(), 1);
    // Campaign 8 keeps deciding for five hours.
    for slot in 0..300u64 {
        w.decision(8, &decision(slot, 10_000 + slot * 60_000, 0, None));
        apply(&store, w.finish());
    }
    let mut left = 0;
    export(&store, 7, 0, u64::MAX, 0, &mut |_| {
        left += 1;
        true
    })
    .expect("export");
    assert_eq!(left, 0, "campaign 7's blocks outlived the retention");
}

// Turned off, the log deletes what an earlier run kept, with the first batch.
#[test]
fn a_log_turned_off_is_deleted() {
    let store = MemoryStore::new();
    let mut w = LogWriter::load(&store, LogOptions::default(), 1).expect("load");
    w.decision(7, &decision(0, 1_000, 0, None));
    apply(&store, w.finish());
    assert_eq!(export_all(&store, 0, u64::MAX).len(), 1);
    let mut w = LogWriter::load(&store, LogOptions::OFF, 2).expect("reload");
    w.decision(7, &decision(1, 2_000, 0, None));
    apply(&store, w.finish());
    let mut keys = 0;
    store
        .scan(&mut |k, _| {
            keys += usize::from(k.first() == Some(&LOG_TAG));
            Ok(())
        })
        .expect("scan");
    assert_eq!(keys, 0);
}

// A corrupt block is an error naming its key, not a panic.
#[test]
fn corrupt_blocks_are_errors() {
    let store = MemoryStore::new();
    let key = block_key(7, DECISIONS, 5, 1, 0);
    store.apply(&[Op::Put(key, vec![0, 1, 2])]).expect("apply");
    let err = export(&store, 7, 0, u64::MAX, 0, &mut |_| true).expect_err("corrupt");
    assert!(err.to_string().contains("truncated"), "{err}");
    store
        .apply(&[Op::Put(vec![LOG_TAG, 1], vec![])])
        .expect("apply");
    assert!(LogWriter::load(&store, LogOptions::default(), 1).is_err());
}

// Many records in one batch: tails that fill up within the batch are
// written too.
#[test]
fn one_big_batch_keeps_every_record() {
    let store = MemoryStore::new();
    let mut w = LogWriter::load(&store, LogOptions::default(), 1).expect("load");
    for slot in 0..3_000u64 {
        let ms = 5_000_000 + slot * 100;
        w.decision(7, &decision(slot, ms, (slot % 2) as u32, None));
        if slot % 3 == 0 {
            w.outcome(7, &outcome(slot, ms, ms));
        }
    }
    apply(&store, w.finish());
    let all = export_all(&store, 0, u64::MAX);
    let matched = all.iter().filter(|e| e.outcome.is_some()).count();
    assert_eq!(all.len(), 3_000);
    assert_eq!(matched, 1_000);
}
