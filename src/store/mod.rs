//! Persistence: what the engine writes behind, and reads once at start-up.
//!
//! A small trait with two implementations: [`SledStore`] (the default,
//! embedded, durable) and [`MemoryStore`] (tests and the simulator). The
//! store never sits in the policy math: the engine mutates its in-memory
//! state and writes the resulting sufficient statistics here, overwriting
//! them in place, before it replies.
//!
//! The one rule every implementation keeps: no restart, however timed, learns
//! an outcome (a reward or an expiry's default reward) twice or loses one the
//! engine acknowledged. [`Store::record_outcome`] makes this cheap: each
//! outcome gets a per-campaign sequence number; the resolved decision record
//! carries it, and each arm's row carries `through`, the highest sequence
//! number already counted in it. The decision is written first, then the row
//! (two single-key writes: an atomic sled batch costs two log-buffer writes,
//! about 30× a plain insert). sled recovers a prefix of its log, so after a
//! crash the store holds both writes, only the decision, or neither; the
//! engine's start-up folds a resolved decision whose sequence number is above
//! its row's `through` into the row, exactly once.

mod group_commit;
mod memory;
mod sled_store;

pub use group_commit::GroupCommit;
pub use memory::MemoryStore;
pub use sled_store::{SledOptions, SledStore};

use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::policy::linucb::LinearArm;
use crate::policy::thompson::ArmCounts;
use std::sync::Arc;

/// Where one arm's statistics live: (campaign, segment, arm index).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PosteriorKey {
    pub campaign: Arc<str>,
    /// "" holds the outcomes of campaign-wide (segment-less) decisions.
    pub segment: Arc<str>,
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

/// One arm's persisted statistics in one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PosteriorRow {
    pub counts: ArmCounts,
    /// Highest outcome sequence number of the campaign counted in `counts`.
    pub through: u64,
}

/// A decision as persisted: enough to answer a retried `Choose`, to join a
/// late `Reward`, and to expire it after a restart. The strings and the
/// context are shared with the engine's in-memory decision, so building a
/// record allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub id: Arc<str>,
    pub campaign: Arc<str>,
    pub segment: Arc<str>,
    pub arm: u32,
    pub propensity: f64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub deadline_ms: u64,
    pub status: DecisionStatus,
    /// The campaign's outcome sequence number of this decision's outcome (0 while pending).
    pub outcome_seq: u64,
    /// The reward learned (0 while pending).
    pub reward: f64,
    /// Contextual campaigns: the context vector the decision was made with
    /// (intercept first), so a delayed reward updates the arm with the right x.
    pub context: Option<Arc<[f64]>>,
}

/// One LinUCB arm's persisted statistics (bit-for-bit, cached inverse included).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRow {
    pub arm: LinearArm,
    /// Highest outcome sequence number of the campaign counted in `arm`.
    pub through: u64,
}

/// Everything a store holds, read at start-up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub campaigns: Vec<CampaignSpec>,
    pub posteriors: Vec<(PosteriorKey, PosteriorRow)>,
    pub decisions: Vec<DecisionRecord>,
    /// (campaign, arm index, statistics) of contextual campaigns.
    pub linear: Vec<(Arc<str>, u32, LinearRow)>,
}

/// The persistence seam. Implementations must be safe to call from many
/// threads; each method is atomic except `record_outcome`, whose crash
/// behaviour is described in the module doc.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Reads the whole state (campaigns, posteriors, decisions).
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Creates or overwrites a campaign definition.
    fn put_campaign(&self, spec: &CampaignSpec) -> Result<(), StoreError>;
    /// Removes a campaign, all its posteriors and the given decisions, atomically.
    fn delete_campaign(&self, id: &str, decisions: &[String]) -> Result<(), StoreError>;
    /// Creates or overwrites a decision.
    fn put_decision(&self, decision: &DecisionRecord) -> Result<(), StoreError>;
    /// Persists one outcome: the resolved `decision` first, then the arm's
    /// `row`, then (contextual campaigns) its `linear` statistics; see the
    /// module doc for why this order makes it crash-safe.
    fn record_outcome(
        &self,
        key: &PosteriorKey,
        row: &PosteriorRow,
        linear: Option<&LinearRow>,
        decision: &DecisionRecord,
    ) -> Result<(), StoreError>;
    /// Overwrites one contextual arm's statistics (start-up folding).
    fn put_linear(&self, campaign: &str, arm: u32, row: &LinearRow) -> Result<(), StoreError>;
    /// Overwrites one arm's row (start-up folding).
    fn put_posterior(&self, key: &PosteriorKey, row: &PosteriorRow) -> Result<(), StoreError>;
    /// Forgets a resolved decision (after its retention).
    fn remove_decision(&self, id: &Arc<str>) -> Result<(), StoreError>;
    /// Makes everything written so far durable (flush and fsync).
    fn flush(&self) -> Result<(), StoreError>;
}
