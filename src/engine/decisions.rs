//! Where decisions live: each campaign's [`DecisionLog`], and the
//! [`ForeignIndex`] for ids the engine did not generate in this process.
//!
//! A campaign's decisions are created, expire and are forgotten in deadline
//! order (a deadline is never earlier than the one before it), so they live
//! in a queue guarded by the campaign's own lock: every decision has a slot
//! number, and the queue is indexed by `slot − base`. Expiry walks the queue
//! from a cursor and forgetting pops its front, touching memory in order.
//!
//! `Reward` carries only a decision id. A server-generated id names its
//! campaign and slot (see `Engine::fresh_decision_id`), so finding it needs
//! no global map. Caller-chosen ids and ids loaded from the store (generated
//! by an earlier process) are looked up in the foreign index instead: a
//! hash map split into [`SHARDS`] independently locked shards, so no single
//! lock is shared by all campaigns. Lock order: a campaign's state lock is
//! taken *before* a shard lock, never the other way round.

use super::state::CampaignCell;
use crate::store::DecisionStatus;
use crate::FastMap;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Number of independently locked shards of the foreign index.
pub const SHARDS: usize = 64;

/// One decision, in its campaign's log.
#[derive(Debug, Clone)]
pub struct Decision {
    pub id: Arc<str>,
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

/// A campaign's decisions (pending and remembered) in deadline order.
#[derive(Debug, Default)]
pub struct DecisionLog {
    entries: VecDeque<Decision>,
    /// Slot number of `entries[0]`.
    base: u64,
    /// Slots below this one have passed their deadline and been resolved.
    swept: u64,
}

impl DecisionLog {
    /// The slot the next pushed decision gets.
    pub fn next_slot(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Appends a decision (its deadline must not precede the last one's).
    pub fn push(&mut self, d: Decision) -> u64 {
        debug_assert!(d.deadline_ms >= self.last_deadline());
        self.entries.push_back(d);
        self.next_slot() - 1
    }

    pub fn last_deadline(&self) -> u64 {
        self.entries.back().map_or(0, |d| d.deadline_ms)
    }

    pub fn get(&self, slot: u64) -> Option<&Decision> {
        let i = usize::try_from(slot.checked_sub(self.base)?).ok()?;
        self.entries.get(i)
    }

    pub fn get_mut(&mut self, slot: u64) -> Option<&mut Decision> {
        let i = usize::try_from(slot.checked_sub(self.base)?).ok()?;
        self.entries.get_mut(i)
    }

    /// The first slot not yet swept whose deadline is before `now`.
    pub fn next_overdue(&self, now: u64) -> Option<u64> {
        self.get(self.swept)
            .filter(|d| d.deadline_ms < now)
            .map(|_| self.swept)
    }

    /// Marks the slot returned by [`Self::next_overdue`] as swept.
    pub fn mark_swept(&mut self) {
        self.swept += 1;
    }

    /// The oldest decision, if it has been swept and its deadline is before
    /// `before` (it may be forgotten).
    pub fn forgettable(&self, before: u64) -> Option<&Decision> {
        self.entries
            .front()
            .filter(|d| self.base < self.swept && d.deadline_ms < before)
    }

    pub fn pop_front(&mut self) -> Option<Decision> {
        let d = self.entries.pop_front()?;
        self.base += 1;
        Some(d)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Decision> {
        self.entries.iter()
    }
}

/// Where a decision with a foreign id lives.
#[derive(Debug, Clone)]
pub struct Locator {
    pub campaign: Arc<CampaignCell>,
    pub slot: u64,
}

/// One shard: decision id → where it lives.
pub type Shard = Mutex<FastMap<Arc<str>, Locator>>;

/// Caller-chosen and earlier-process ids → their campaign and slot.
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

    pub fn remove(&self, id: &str) {
        self.shard(id).lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(deadline_ms: u64) -> Decision {
        Decision {
            id: format!("d{deadline_ms}").into(),
            segment: "".into(),
            arm: 0,
            propensity: 1.0,
            created_ms: 0,
            deadline_ms,
            status: DecisionStatus::Pending,
            outcome_seq: 0,
            reward: 0.0,
            context: None,
        }
    }

    // Slots stay valid while the front is popped; sweeping and forgetting
    // follow deadlines, and nothing is forgotten before it was swept.
    #[test]
    fn slots_sweep_and_forget_in_deadline_order() {
        let mut log = DecisionLog::default();
        let slots: Vec<u64> = [10, 20, 20, 30].map(|t| log.push(decision(t))).into();
        assert_eq!(slots, [0, 1, 2, 3]);
        assert_eq!(log.next_overdue(10), None);
        assert_eq!(log.next_overdue(11), Some(0));
        assert!(log.forgettable(100).is_none(), "not swept yet");
        log.mark_swept();
        assert_eq!(log.next_overdue(11), None);
        assert_eq!(log.next_overdue(21), Some(1));
        log.mark_swept();
        assert_eq!(log.next_overdue(21), Some(2));
        assert_eq!(log.forgettable(10).map(|d| d.deadline_ms), None);
        assert_eq!(log.forgettable(11).map(|d| d.deadline_ms), Some(10));
        assert_eq!(log.pop_front().map(|d| d.deadline_ms), Some(10));
        assert!(log.get(0).is_none());
        assert_eq!(log.get(3).map(|d| d.deadline_ms), Some(30));
        assert_eq!(log.push(decision(40)), 4);
        assert_eq!(log.pop_front().map(|d| d.deadline_ms), Some(20));
        assert!(log.forgettable(1000).is_none(), "slot 2 not swept");
        assert_eq!(log.len(), 3);
    }
}
