//! Model-based property test of the sled store: random batches (puts,
//! deletes, prefix deletes), flushes and reopenings, against a `BTreeMap`
//! as the reference, in the manner of sled's own `tests/test_tree.rs`.

use banditd::store::{Op, SledOptions, SledStore, Store};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone)]
enum Step {
    Batch(Vec<Op>),
    Flush,
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    (0u8..4, 0u8..16).prop_map(|(p, k)| vec![b'C', p, k])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Delete),
        1 => (0u8..4).prop_map(|p| Op::DeletePrefix(vec![b'C', p])),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec(op(), 1..8).prop_map(Step::Batch),
        1 => Just(Step::Flush),
        1 => Just(Step::Reopen),
    ]
}

/// Opens the store; sled's background threads may hold the directory's
/// lock for a moment after the previous handle is dropped.
fn open(dir: &Path) -> SledStore {
    let start = std::time::Instant::now();
    loop {
        match SledStore::open(&SledOptions {
            path: dir.to_path_buf(),
            cache_bytes: 1 << 20,
        }) {
            Ok(s) => return s,
            Err(e) if start.elapsed() < std::time::Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("open sled: {e}"),
        }
    }
}

fn contents(store: &dyn Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    store
        .scan(&mut |k, v| {
            out.insert(k.to_vec(), v.to_vec());
            Ok(())
        })
        .expect("scan");
    out
}

/// The reference semantics: ops in order; a prefix delete removes what was
/// stored before the batch (batches here never also write under it).
fn apply_model(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[Op]) {
    let before = model.clone();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                model.insert(k.clone(), v.clone());
            }
            Op::Delete(k) => {
                model.remove(k);
            }
            Op::DeletePrefix(p) => {
                for k in before.keys().filter(|k| k.starts_with(p)) {
                    model.remove(k);
                }
            }
        }
    }
}

/// Drops writes under a prefix that the same batch deletes (the journal's
/// writer never emits such a batch).
fn well_formed(ops: Vec<Op>) -> Vec<Op> {
    let prefixes: Vec<Vec<u8>> = ops
        .iter()
        .filter_map(|o| match o {
            Op::DeletePrefix(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    ops.into_iter()
        .filter(|o| match o {
            Op::Put(k, _) | Op::Delete(k) => !prefixes.iter().any(|p| k.starts_with(p)),
            Op::DeletePrefix(_) => true,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    // After any sequence of batches, flushes and reopenings, the sled
    // store holds exactly what the model holds, in the same order.
    #[test]
    fn sled_store_matches_the_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Some(open(dir.path()));
        let mut model = BTreeMap::new();
        for s in steps {
            match s {
                Step::Batch(ops) => {
                    let ops = well_formed(ops);
                    store.as_ref().expect("open").apply(&ops).expect("apply");
                    apply_model(&mut model, &ops);
                }
                Step::Flush => store.as_ref().expect("open").flush().expect("flush"),
                Step::Reopen => {
                    if let Some(s) = store.take() {
                        s.flush().expect("flush");
                    }
                    store = Some(open(dir.path()));
                }
            }
            prop_assert_eq!(contents(store.as_ref().expect("open")), model.clone());
        }
    }
}
