//! Group commit for `--durability strict`: many writers, one flush.
//!
//! A writer finishes its write, takes a ticket and waits; one dedicated thread
//! flushes the store (sled flush + fdatasync of its data file) for everything
//! ticketed so far and publishes the highest ticket it made durable. Under
//! load one fsync acknowledges a whole batch of requests.

use super::Store;
use crate::error::StoreError;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Committed {
    /// Every ticket ≤ this is durable.
    durable: u64,
    /// Every ticket ≤ this (and > durable) failed to flush.
    failed: u64,
}

#[derive(Debug)]
struct Inner {
    /// Highest ticket handed out; guarded with `wake` for the flusher's wait.
    requested: Mutex<u64>,
    wake: Condvar,
    /// Set once at shutdown (under `requested`'s lock) to end the thread.
    stopping: Mutex<bool>,
    committed: watch::Sender<Committed>,
}

/// Handle to the group-commit thread. Cloning shares the thread.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    inner: Arc<Inner>,
}

impl GroupCommit {
    /// Starts the flusher thread for `store`.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<Self> {
        let (tx, _rx) = watch::channel(Committed::default());
        let inner = Arc::new(Inner {
            requested: Mutex::new(0),
            wake: Condvar::new(),
            stopping: Mutex::new(false),
            committed: tx,
        });
        let worker = inner.clone();
        std::thread::Builder::new()
            .name("banditd-group-commit".into())
            .spawn(move || run(worker, store))?;
        Ok(GroupCommit { inner })
    }

    /// Waits until everything written before this call is durable.
    pub async fn wait(&self) -> Result<(), StoreError> {
        let mut rx = self.inner.committed.subscribe();
        let ticket = {
            let mut r = self.inner.requested.lock();
            *r += 1;
            *r
        };
        self.inner.wake.notify_one();
        let state = rx
            .wait_for(|c| c.durable >= ticket || c.failed >= ticket)
            .await
            .map_err(|_| StoreError::Io(std::io::Error::other("group commit stopped")))?;
        if state.durable >= ticket {
            Ok(())
        } else {
            Err(StoreError::Io(std::io::Error::other("flush failed")))
        }
    }

    /// Ends the flusher thread after its current batch.
    pub fn stop(&self) {
        let _r = self.inner.requested.lock();
        *self.inner.stopping.lock() = true;
        self.inner.wake.notify_one();
    }
}

fn run(inner: Arc<Inner>, store: Arc<dyn Store>) {
    let mut done = 0u64;
    loop {
        let target = {
            let mut r = inner.requested.lock();
            while *r == done && !*inner.stopping.lock() {
                inner.wake.wait(&mut r);
            }
            if *r == done {
                return;
            }
            *r
        };
        match store.flush() {
            Ok(()) => {
                inner.committed.send_modify(|c| c.durable = target);
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit flush failed");
                inner.committed.send_modify(|c| c.failed = target);
            }
        }
        done = target;
    }
}
