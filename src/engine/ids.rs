//! Decision ids: finding a decision from the id a `Reward` carries.
//!
//! A server-generated id names its campaign's uid and the decision's
//! position (`journal::format::write_decision_id`), so finding it needs no
//! map at all, and it stays valid across restarts. Caller-chosen ids (and
//! the ids of decisions migrated from format 0) are looked up in the
//! [`ForeignIndex`]: a hash map split into [`SHARDS`] independently locked
//! shards, so no single lock is shared by all campaigns. Lock order: a
//! campaign's state lock is taken *before* a shard lock, never the other
//! way round.

use super::state::CampaignCell;
use crate::journal::{format, Position};
use crate::FastMap;
use parking_lot::Mutex;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Number of independently locked shards of the foreign index.
pub const SHARDS: usize = 64;

/// Where a decision lives.
#[derive(Debug, Clone)]
pub struct Locator {
    pub campaign: Arc<CampaignCell>,
    pub at: Position,
}

/// One shard: decision id → where it lives.
pub type Shard = Mutex<FastMap<Arc<str>, Locator>>;

/// Caller-chosen ids → their campaign and position.
#[derive(Debug)]
pub struct ForeignIndex {
    /// Each shard's mutex guards only its own map; see the module doc for
    /// the lock order.
    shards: Box<[Shard]>,
    hasher: foldhash::quality::RandomState,
}

impl Default for ForeignIndex {
    fn default() -> Self {
        ForeignIndex {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FastMap::default()))
                .collect(),
            hasher: foldhash::quality::RandomState::default(),
        }
    }
}

impl ForeignIndex {
    pub fn shard(&self, id: &str) -> &Shard {
        let h = self.hasher.hash_one(id) as usize;
        &self.shards[h % SHARDS]
    }

    pub fn get(&self, id: &str) -> Option<Locator> {
        self.shard(id).lock().get(id).cloned()
    }

    /// Removes `id` if it still names the decision at `at` of `campaign`
    /// (a caller may already have reused a freed id for another decision).
    pub fn remove_if_at(&self, id: &str, campaign: u64, at: Position) {
        let mut shard = self.shard(id).lock();
        if shard
            .get(id)
            .is_some_and(|l| l.campaign.uid == campaign && l.at == at)
        {
            shard.remove(id);
        }
    }

    pub fn insert(&self, id: Arc<str>, at: Locator) {
        self.shard(&id).lock().insert(id, at);
    }
}

/// The id of a server-generated decision.
pub fn own_id(uid: u64, at: Position) -> Arc<str> {
    let mut buf = [0u8; format::DECISION_ID_MAX];
    Arc::from(format::write_decision_id(uid, at, &mut buf))
}
