//! The sled-backed [`Store`]: one tree, one atomic `apply_batch` per batch.
//!
//! Durability: sled's own background flusher is switched off; the journal's
//! writer calls [`Store::flush`] itself, on its own schedule, so what a
//! crash can lose is exactly what was applied after the last completed
//! flush. `flush` is `sled::Db::flush` (every IO buffer written and synced
//! with `sync_file_range` on Linux, which survives a killed process but not
//! a power cut) *and then* `fdatasync` of sled's data file, which does.
//!
//! sled writes a tree node larger than a quarter of a segment (128 KiB with
//! the default 512 KiB segments) to a separate blob file that it never
//! fsyncs; a leaf holds at most 17 entries, so the journal keeps every
//! value below [`crate::journal::format::MAX_VALUE_BYTES`] and no node gets
//! near that size.

use super::{Op, Store, Visit};
use crate::error::StoreError;
use std::fs::File;
use std::path::{Path, PathBuf};

/// How to open the database.
#[derive(Debug, Clone)]
pub struct SledOptions {
    pub path: PathBuf,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
}

/// A sled database holding one banditd state.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// sled's data file, kept open to `fdatasync` it after each flush.
    data_file: File,
}

impl SledStore {
    pub fn open(opts: &SledOptions) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(&opts.path)
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(None)
            .open()?;
        let data_file = File::open(data_file_path(&opts.path))?;
        Ok(SledStore { db, data_file })
    }
}

fn data_file_path(dir: &Path) -> PathBuf {
    dir.join("db")
}

impl Store for SledStore {
    fn first_key(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        let mut iter = match to {
            Some(to) => self.db.range(from..to),
            None => self.db.range(from..),
        };
        match iter.next() {
            Some(item) => Ok(Some(item?.0.to_vec())),
            None => Ok(None),
        }
    }

    fn scan_range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let iter = match to {
            Some(to) => self.db.range(from..to),
            None => self.db.range(from..),
        };
        for item in iter {
            let (k, v) = item?;
            visit(&k, &v)?;
        }
        Ok(())
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k.as_slice(), v.as_slice()),
                Op::Delete(k) => batch.remove(k.as_slice()),
                Op::DeletePrefix(p) => {
                    for k in self.db.scan_prefix(p).keys() {
                        batch.remove(k?);
                    }
                }
            }
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.data_file.sync_data()?;
        Ok(())
    }

    fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }
}
