//! An in-memory [`Store`] for tests, which models what a crash keeps.
//!
//! It holds two states: what was *applied* and what was *flushed*.
//! [`MemoryStore::crashed`] returns a new store holding only the flushed
//! state, which is exactly what a killed process keeps of a real store
//! (everything flushed, nothing after it). [`MemoryStore::fail_after`]
//! injects a write or flush failure, for the tests of what a failed store
//! does to the engine.

use super::{Op, Store, Visit};
use crate::error::StoreError;
use parking_lot::Mutex;
use std::collections::BTreeMap;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Guards both states, so each method is atomic.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    applied: Map,
    flushed: Map,
    /// Batches applied so far.
    batches: u64,
    /// `apply` and `flush` fail once this many calls of either have succeeded.
    fail_after: Option<u64>,
    calls: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a crash right now would leave: a new store with the flushed state.
    pub fn crashed(&self) -> MemoryStore {
        let s = self.inner.lock();
        MemoryStore {
            inner: Mutex::new(Inner {
                applied: s.flushed.clone(),
                flushed: s.flushed.clone(),
                ..Inner::default()
            }),
        }
    }

    /// Makes every `apply` or `flush` after the next `n` successful ones fail.
    pub fn fail_after(&self, n: u64) {
        let mut s = self.inner.lock();
        s.fail_after = Some(s.calls + n);
    }

    /// Batches applied so far.
    pub fn batches(&self) -> u64 {
        self.inner.lock().batches
    }

    /// Number of keys applied (flushed or not).
    pub fn len(&self) -> usize {
        self.inner.lock().applied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `ops` and flushes them, bypassing failure injection (test set-up).
    pub fn seed(&self, ops: &[Op]) {
        let mut s = self.inner.lock();
        apply_to(&mut s.applied, ops);
        s.flushed = s.applied.clone();
    }
}

fn apply_to(map: &mut Map, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, v) => {
                map.insert(k.clone(), v.clone());
            }
            Op::Delete(k) => {
                map.remove(k);
            }
            Op::DeletePrefix(p) => {
                let doomed: Vec<Vec<u8>> = map
                    .range(p.clone()..)
                    .take_while(|(k, _)| k.starts_with(p))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    map.remove(&k);
                }
            }
        }
    }
}

impl Inner {
    fn check_failure(&mut self) -> Result<(), StoreError> {
        if self.fail_after.is_some_and(|n| self.calls >= n) {
            return Err(StoreError::Io(std::io::Error::other("injected failure")));
        }
        self.calls += 1;
        Ok(())
    }
}

impl Store for MemoryStore {
    fn first_key(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        use std::ops::Bound;
        let s = self.inner.lock();
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(s.applied
            .range::<[u8], _>((Bound::Included(from), upper))
            .next()
            .map(|(k, _)| k.clone()))
    }

    fn scan_range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        use std::ops::Bound;
        let s = self.inner.lock();
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        for (k, v) in s.applied.range::<[u8], _>((Bound::Included(from), upper)) {
            visit(k, v)?;
        }
        Ok(())
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut s = self.inner.lock();
        s.check_failure()?;
        apply_to(&mut s.applied, ops);
        s.batches += 1;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut s = self.inner.lock();
        s.check_failure()?;
        s.flushed = s.applied.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &[u8], v: &[u8]) -> Op {
        Op::Put(k.to_vec(), v.to_vec())
    }

    fn keys(s: &MemoryStore) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        s.scan(&mut |k, _| {
            out.push(k.to_vec());
            Ok(())
        })
        .expect("scan");
        out
    }

    // A crash keeps exactly what was flushed; a prefix delete removes only
    // its prefix; an injected failure fails every later call.
    #[test]
    fn crash_keeps_the_flushed_state_and_failures_stick() {
        let s = MemoryStore::new();
        s.apply(&[put(b"a1", b"x"), put(b"a2", b"y"), put(b"b1", b"z")])
            .expect("apply");
        s.flush().expect("flush");
        s.apply(&[Op::DeletePrefix(b"a".to_vec()), put(b"c", b"w")])
            .expect("apply");
        assert_eq!(keys(&s), [b"b1".to_vec(), b"c".to_vec()]);
        assert_eq!(
            keys(&s.crashed()),
            [b"a1".to_vec(), b"a2".to_vec(), b"b1".to_vec()]
        );
        s.fail_after(1);
        assert!(s.apply(&[Op::Delete(b"c".to_vec())]).is_ok());
        assert!(s.flush().is_err());
        assert!(s.apply(&[]).is_err());
    }
}
