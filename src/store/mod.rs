//! Persistence: what the engine writes behind, and reads once at start-up.
//!
//! A small trait with two implementations: [`SledStore`] (the default,
//! embedded, durable) and [`MemoryStore`] (tests and the simulator). The
//! store never sits in the policy math: the engine mutates its in-memory
//! state and writes the resulting sufficient statistics here, overwriting
//! them in place, before it replies.
//!
//! The one rule every implementation keeps: applying an outcome (a reward or
//! an expiry's default reward) and marking its decision resolved happen in
//! one atomic write ([`Store::record_outcome`]), so that no restart, however
//! timed, learns the same outcome twice.

mod group_commit;
mod memory;
mod sled_store;

pub use group_commit::GroupCommit;
pub use memory::MemoryStore;
pub use sled_store::{SledOptions, SledStore};

use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::policy::thompson::ArmCounts;

/// Where one arm's statistics live: (campaign, segment, arm index).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PosteriorKey {
    pub campaign: String,
    /// "" holds the outcomes of campaign-wide (segment-less) decisions.
    pub segment: String,
    pub arm: u32,
}

/// Where a decision is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionStatus {
    /// Waiting for its reward.
    Pending,
    /// A reward was learned.
    Rewarded,
    /// The timeout passed and the default reward was learned.
    Expired,
}

/// A decision as persisted: enough to answer a retried `Choose`, to join a
/// late `Reward`, and to expire it after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub id: String,
    pub campaign: String,
    pub segment: String,
    pub arm: u32,
    pub propensity: f64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub deadline_ms: u64,
    pub status: DecisionStatus,
}

/// Everything a store holds, read at start-up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub campaigns: Vec<CampaignSpec>,
    pub posteriors: Vec<(PosteriorKey, ArmCounts)>,
    pub decisions: Vec<DecisionRecord>,
}

/// The persistence seam. Implementations must be safe to call from many
/// threads; each method is one atomic write.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Reads the whole state (campaigns, posteriors, decisions).
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Creates or overwrites a campaign definition.
    fn put_campaign(&self, spec: &CampaignSpec) -> Result<(), StoreError>;
    /// Removes a campaign, all its posteriors and the given decisions, atomically.
    fn delete_campaign(&self, id: &str, decisions: &[String]) -> Result<(), StoreError>;
    /// Creates or overwrites a decision.
    fn put_decision(&self, decision: &DecisionRecord) -> Result<(), StoreError>;
    /// Overwrites one arm's statistics and the decision that produced them, atomically.
    fn record_outcome(
        &self,
        key: &PosteriorKey,
        counts: &ArmCounts,
        decision: &DecisionRecord,
    ) -> Result<(), StoreError>;
    /// Forgets a resolved decision (after its retention).
    fn remove_decision(&self, id: &str) -> Result<(), StoreError>;
    /// Makes everything written so far durable (flush and fsync).
    fn flush(&self) -> Result<(), StoreError>;
}
