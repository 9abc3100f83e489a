//! The decision index: decision id → where the decision stands.
//!
//! `Reward` carries only a decision id, so this index is global; it is split
//! into [`SHARDS`] independently locked shards so that no single lock is
//! shared by all campaigns. Lock order: a campaign's state lock is taken
//! *before* a shard lock, never the other way round.

use super::state::CampaignCell;
use crate::store::DecisionStatus;
use crate::FastMap;
use parking_lot::Mutex;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Number of independently locked shards.
pub const SHARDS: usize = 64;

/// One decision, in memory.
#[derive(Debug, Clone)]
pub struct Decision {
    pub campaign: Arc<CampaignCell>,
    pub segment: Arc<str>,
    pub arm: u32,
    pub propensity: f64,
    pub created_ms: u64,
    pub deadline_ms: u64,
    pub status: DecisionStatus,
    /// The campaign's outcome sequence number once resolved (0 while pending).
    pub outcome_seq: u64,
    /// The reward learned once resolved.
    pub reward: f64,
    /// Contextual campaigns: the context vector (intercept first).
    pub context: Option<Arc<[f64]>>,
}

/// One shard: decision id → decision.
pub type Shard = Mutex<FastMap<Arc<str>, Decision>>;

#[derive(Debug)]
pub struct DecisionIndex {
    /// Each shard's mutex guards only its own map; see the module doc for
    /// the lock order.
    shards: Box<[Shard]>,
    hasher: foldhash::quality::RandomState,
}

impl Default for DecisionIndex {
    fn default() -> Self {
        DecisionIndex {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FastMap::default()))
                .collect(),
            hasher: foldhash::quality::RandomState::default(),
        }
    }
}

impl DecisionIndex {
    pub fn shard(&self, id: &str) -> &Shard {
        let h = self.hasher.hash_one(id) as usize;
        &self.shards[h % SHARDS]
    }

    /// A copy of the decision, if known.
    pub fn get(&self, id: &str) -> Option<Decision> {
        self.shard(id).lock().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
