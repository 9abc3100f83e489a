//! Persistence: an ordered key-value store with atomic batches.
//!
//! The store only persists: it knows nothing about campaigns, decisions or
//! their encoding (that is the [`crate::journal`]'s on-disk format). Its
//! surface is what the journal's single writer needs and no more:
//!
//! - [`Store::scan_range`] reads a key range in key order (start-up reads
//!   the state once; an export reads the decision log's range);
//! - [`Store::apply`] applies one batch of [`Op`]s atomically: after a crash
//!   either the whole batch is there or none of it, and batches are
//!   recovered in the order they were applied (a prefix of them);
//! - [`Store::flush`] makes every applied batch durable, against a killed
//!   process *and* a power cut.
//!
//! Two implementations: [`SledStore`] (embedded, the daemon's) and
//! [`MemoryStore`] (tests: it models what a crash keeps, see its docs).

mod memory;
mod sled_store;

pub use memory::MemoryStore;
pub use sled_store::{SledOptions, SledStore};

use crate::error::StoreError;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates or overwrites `key`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key` (a no-op if absent).
    Delete(Vec<u8>),
    /// Removes every key that starts with the prefix and was stored
    /// *before* this batch. A batch never also writes under the prefix.
    DeletePrefix(Vec<u8>),
}

/// Visits one key and its value during [`Store::scan`].
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// The persistence seam. Implementations must be safe to share between
/// threads; the journal calls `apply` and `flush` from one thread only.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Calls `visit` for every key in `from..to` (`to: None`: to the end)
    /// in ascending byte order.
    fn scan_range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError>;
    /// The first key in `from..to`, if any.
    fn first_key(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError>;
    /// Calls `visit` for every key in ascending byte order.
    fn scan(&self, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        self.scan_range(&[], None, visit)
    }
    /// Applies `ops` in order, atomically.
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError>;
    /// Makes every applied batch durable (flush and fdatasync).
    fn flush(&self) -> Result<(), StoreError>;
    /// Bytes used on disk, where that means something.
    fn size_on_disk(&self) -> Option<u64> {
        None
    }
}
