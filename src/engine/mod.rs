//! The engine: campaigns in memory, pending decisions, and the rules.
//!
//! Both the gRPC layer and the simulator drive this type, so a simulation
//! exercises exactly the code that serves traffic. It owns:
//! - validation of every request (ids, segments, reward ranges, limits);
//! - idempotency (a retried `Choose` with the caller's decision id returns the
//!   same answer; a retried `Reward` is a no-op reported as duplicate);
//! - delayed rewards: a decision waits `reward_timeout_seconds`; then its
//!   campaign's `default_reward` is learned exactly once ([`Engine::expire_due`]);
//! - write-behind persistence: each state change is written to the store
//!   *before* the method returns, and only then applied in memory, so a
//!   failed write changes nothing.
//!
//! Concurrency: the campaign map is behind a `RwLock` taken only to look a
//! campaign up (read) or to create/delete one (write). Each campaign has its
//! own mutex; decisions live in a sharded index. No lock is held across an
//! `.await` (the engine has none: it is synchronous).
//!
//! Retention: a resolved decision is remembered (to answer duplicates and
//! late rewards correctly) until its deadline plus one more reward timeout;
//! after that its id is unknown (`NOT_FOUND`).

mod decisions;
mod state;
mod stats;

pub use stats::{ArmReport, SegmentReport};

use crate::campaign::{
    self, limits, validate_id, validate_segment, ArmSpec, CampaignSpec, PolicySpec,
};
use crate::error::{invalid, Error, Result};
use crate::store::{
    DecisionRecord, DecisionStatus, GroupCommit, LinearRow, PosteriorKey, PosteriorRow, Store,
};
use crate::FastMap;
use decisions::{Decision, DecisionIndex};
use parking_lot::RwLock;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use state::{CampaignCell, CampaignState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Decisions expired or forgotten per hold of a campaign's lock.
const EXPIRY_BATCH: usize = 256;

/// Where the engine reads the time (wall clock in ms since the Unix epoch).
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// A clock tests and the simulator move by hand.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// How the engine is built.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Seed for every campaign's RNG (mixed with the campaign id); `None` = from the OS.
    pub seed: Option<u64>,
    pub clock: Clock,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            seed: None,
            clock: Clock::System,
        }
    }
}

/// A `Choose` request after conversion from the wire.
#[derive(Debug, Clone, Default)]
pub struct ChooseRequest {
    pub campaign_id: String,
    pub segment: String,
    pub context: Vec<(String, f64)>,
    /// Caller-chosen idempotency key.
    pub decision_id: Option<String>,
}

/// The answer to a `Choose`.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Shared with the engine's own record of the decision.
    pub decision_id: Arc<str>,
    /// Index of the arm in the campaign's arms (arms are only ever appended).
    pub arm: usize,
    pub arm_id: String,
    pub propensity: f64,
}

/// The answer to a `Reward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardOutcome {
    Learned,
    Duplicate,
}

#[derive(Debug)]
pub struct Engine {
    /// Campaign id → campaign. Read-locked to look up, write-locked only to
    /// create or delete; never held while a campaign's own lock is taken
    /// for long.
    campaigns: RwLock<FastMap<Arc<str>, Arc<CampaignCell>>>,
    decisions: DecisionIndex,
    store: Arc<dyn Store>,
    commit: Option<GroupCommit>,
    clock: Clock,
    seed: u64,
    /// Server-generated decision ids: a random per-process prefix and a counter.
    id_prefix: String,
    id_counter: AtomicU64,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Engine {
    /// Builds an engine over `store`, loading everything it holds.
    pub fn open(store: Arc<dyn Store>, options: EngineOptions) -> Result<Self> {
        let seed = options.seed.unwrap_or_else(|| rand::rng().random());
        let engine = Engine {
            campaigns: RwLock::new(FastMap::default()),
            decisions: DecisionIndex::default(),
            store,
            commit: None,
            clock: options.clock,
            seed,
            // From the OS, not the seed: ids must differ across restarts
            // even when decisions are seeded.
            id_prefix: format!("{:016x}", rand::rng().random::<u64>()),
            id_counter: AtomicU64::new(0),
        };
        engine.load()?;
        Ok(engine)
    }

    /// Makes every mutating call wait for a group commit before returning
    /// from [`Engine::wait_durable`] (`--durability strict`).
    pub fn with_group_commit(mut self, commit: GroupCommit) -> Self {
        self.commit = Some(commit);
        self
    }

    fn load(&self) -> Result<()> {
        let snap = self.store.load()?;
        let mut map = self.campaigns.write();
        for spec in snap.campaigns {
            let cell = self.new_cell(spec);
            map.insert(cell.id.clone(), cell);
        }
        for (key, row) in snap.posteriors {
            let Some(cell) = map.get(&*key.campaign) else {
                continue;
            };
            let mut st = cell.state.lock();
            let arm = key.arm as usize;
            if arm >= st.spec.arms.len() {
                continue;
            }
            let tally = &mut st.segment_mut(&key.segment).arms[arm];
            tally.counts = row.counts;
            tally.through = row.through;
            st.outcome_seq = st.outcome_seq.max(row.through);
        }
        for (campaign, arm, row) in snap.linear {
            let Some(cell) = map.get(&*campaign) else {
                continue;
            };
            let mut st = cell.state.lock();
            let arm = arm as usize;
            let fits = st.linear.get(arm).is_some_and(|l| l.dim() == row.arm.dim());
            if fits {
                st.outcome_seq = st.outcome_seq.max(row.through);
                st.linear[arm] = row.arm;
                st.linear_through[arm] = row.through;
            }
        }
        let mut decisions = snap.decisions;
        decisions.sort_by_key(|d| d.deadline_ms);
        let mut orphans = Vec::new();
        let mut folded = Vec::new();
        let mut linear_folded = Vec::new();
        for d in decisions {
            let Some(cell) = map.get(&*d.campaign) else {
                orphans.push(d.id);
                continue;
            };
            let id = d.id;
            let mut st = cell.state.lock();
            let arm = d.arm as usize;
            if arm >= st.spec.arms.len() {
                orphans.push(id);
                continue;
            }
            if d.status == DecisionStatus::Pending {
                st.segment_mut(&d.segment).arms[arm].pending += 1;
            } else {
                st.outcome_seq = st.outcome_seq.max(d.outcome_seq);
                let tally = &mut st.segment_mut(&d.segment).arms[arm];
                if d.outcome_seq > tally.through {
                    // The process stopped between the decision's write and
                    // its row's: count the outcome now, exactly once.
                    tally.counts.add(d.reward);
                    tally.through = d.outcome_seq;
                    folded.push((cell.clone(), d.segment.clone(), d.arm));
                }
                let through = st.linear_through.get(arm).copied().unwrap_or(u64::MAX);
                if let Some(x) = d.context.as_deref().filter(|_| d.outcome_seq > through) {
                    st.linear[arm].update(x, d.reward);
                    st.linear_through[arm] = d.outcome_seq;
                    linear_folded.push((cell.clone(), d.arm));
                }
            }
            st.deadlines.push_back((d.deadline_ms, id.clone()));
            self.decisions.shard(&id).lock().insert(
                id,
                Decision {
                    campaign: cell.clone(),
                    segment: d.segment,
                    arm: d.arm,
                    propensity: d.propensity,
                    created_ms: d.created_ms,
                    deadline_ms: d.deadline_ms,
                    status: d.status,
                    outcome_seq: d.outcome_seq,
                    reward: d.reward,
                    context: d.context,
                },
            );
        }
        for (cell, segment, arm) in folded {
            let mut st = cell.state.lock();
            let tally = st.segment_mut(&segment).arms[arm as usize];
            let key = PosteriorKey {
                campaign: cell.id.clone(),
                segment,
                arm,
            };
            let row = PosteriorRow {
                counts: tally.counts,
                through: tally.through,
            };
            self.store.put_posterior(&key, &row)?;
            tracing::warn!(campaign = %key.campaign, segment = %key.segment, arm, "outcome folded in after an interrupted write");
        }
        for (cell, arm) in linear_folded {
            let st = cell.state.lock();
            let row = LinearRow {
                arm: st.linear[arm as usize].clone(),
                through: st.linear_through[arm as usize],
            };
            self.store.put_linear(&st.spec.id, arm, &row)?;
        }
        for cell in map.values() {
            let mut st = cell.state.lock();
            let arms = st.spec.arms.len();
            let mut aggregate = vec![state::ArmTally::default(); arms];
            for seg in st.segments.values() {
                for (a, t) in seg.arms.iter().enumerate().take(arms) {
                    aggregate[a].counts.n += t.counts.n;
                    aggregate[a].counts.sum += t.counts.sum;
                    aggregate[a].pending += t.pending;
                }
            }
            st.aggregate = aggregate;
        }
        for id in orphans {
            self.store.remove_decision(&id)?;
        }
        tracing::info!(
            campaigns = map.len(),
            decisions = self.decisions.len(),
            "state loaded"
        );
        Ok(())
    }

    fn new_cell(&self, spec: CampaignSpec) -> Arc<CampaignCell> {
        let rng = SmallRng::seed_from_u64(self.seed ^ fnv1a(&spec.id));
        Arc::new(CampaignCell {
            id: spec.id.as_str().into(),
            state: parking_lot::Mutex::new(CampaignState::new(spec, rng)),
        })
    }

    fn campaign(&self, id: &str) -> Result<Arc<CampaignCell>> {
        self.campaigns
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("campaign {id:?}")))
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Waits until the effects of calls that returned before this one are
    /// durable. Immediate unless the engine runs with group commit.
    pub async fn wait_durable(&self) -> Result<()> {
        match &self.commit {
            Some(c) => Ok(c.wait().await?),
            None => Ok(()),
        }
    }

    /// Makes everything durable now (shutdown).
    pub fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    // ----- campaigns -------------------------------------------------------

    /// Creates a campaign; `ALREADY_EXISTS` if the id is taken.
    pub fn create_campaign(&self, spec: CampaignSpec) -> Result<CampaignSpec> {
        spec.validate()?;
        let mut map = self.campaigns.write();
        if map.contains_key(spec.id.as_str()) {
            return Err(Error::AlreadyExists(format!("campaign {:?}", spec.id)));
        }
        if map.len() >= limits::MAX_CAMPAIGNS {
            return Err(Error::ResourceExhausted(format!(
                "at most {} campaigns per daemon",
                limits::MAX_CAMPAIGNS
            )));
        }
        self.store.put_campaign(&spec)?;
        let cell = self.new_cell(spec.clone());
        map.insert(cell.id.clone(), cell);
        tracing::info!(campaign = %spec.id, arms = spec.arms.len(), "campaign created");
        Ok(spec)
    }

    pub fn get_campaign(&self, id: &str) -> Result<CampaignSpec> {
        Ok(self.campaign(id)?.state.lock().spec.clone())
    }

    /// All campaigns, ordered by id.
    pub fn list_campaigns(&self) -> Vec<CampaignSpec> {
        let cells: BTreeMap<Arc<str>, Arc<CampaignCell>> = self
            .campaigns
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        cells
            .values()
            .map(|c| c.state.lock().spec.clone())
            .collect()
    }

    /// Deletes a campaign with its statistics and decisions.
    pub fn delete_campaign(&self, id: &str) -> Result<()> {
        let mut map = self.campaigns.write();
        let cell = map
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("campaign {id:?}")))?;
        let st = cell.state.lock();
        let ids: Vec<String> = st
            .deadlines
            .iter()
            .chain(st.retention.iter())
            .map(|(_, d)| d.to_string())
            .collect();
        self.store.delete_campaign(id, &ids)?;
        map.remove(id);
        for d in &ids {
            self.decisions.shard(d).lock().remove(d.as_str());
        }
        tracing::info!(campaign = %id, decisions = ids.len(), "campaign deleted");
        Ok(())
    }

    /// Adds arms that start exploring at once.
    pub fn add_arms(&self, id: &str, arms: Vec<ArmSpec>) -> Result<CampaignSpec> {
        let cell = self.campaign(id)?;
        let mut st = cell.state.lock();
        campaign::validate_new_arms(&st.spec.arms, &arms)?;
        let mut spec = st.spec.clone();
        spec.arms.extend(arms.into_iter().map(|a| ArmSpec {
            id: a.id,
            retired: false,
        }));
        self.store.put_campaign(&spec)?;
        st.spec = spec;
        st.arms_changed();
        Ok(st.spec.clone())
    }

    /// Stops choosing an arm; its history stays readable.
    pub fn retire_arm(&self, id: &str, arm_id: &str) -> Result<CampaignSpec> {
        validate_id("arm_id", arm_id)?;
        let cell = self.campaign(id)?;
        let mut st = cell.state.lock();
        let arm = st
            .spec
            .arm_index(arm_id)
            .ok_or_else(|| Error::NotFound(format!("arm {arm_id:?} in campaign {id:?}")))?;
        if st.spec.arms[arm].retired {
            return Ok(st.spec.clone());
        }
        if st.spec.active_arms().count() == 1 {
            return Err(Error::FailedPrecondition(format!(
                "arm {arm_id:?} is the last active arm of campaign {id:?}"
            )));
        }
        let mut spec = st.spec.clone();
        spec.arms[arm].retired = true;
        self.store.put_campaign(&spec)?;
        st.spec = spec;
        st.arms_changed();
        Ok(st.spec.clone())
    }

    // ----- decisions -------------------------------------------------------

    /// Picks an arm, records the pending decision, and returns it.
    pub fn choose(&self, req: &ChooseRequest) -> Result<Choice> {
        validate_segment(&req.segment)?;
        if let Some(d) = &req.decision_id {
            validate_id("decision_id", d)?;
        }
        if req.context.len() > limits::MAX_CONTEXT_ENTRIES {
            return Err(invalid(format!(
                "context has more than {} entries",
                limits::MAX_CONTEXT_ENTRIES
            )));
        }
        let cell = self.campaign(&req.campaign_id)?;
        if let Some(id) = &req.decision_id {
            if let Some(existing) = self.decisions.get(id) {
                return self.replay(&cell, req, id, &existing);
            }
        }
        let now = self.clock.now_ms();
        let mut st = cell.state.lock();
        if !st.segments.contains_key(req.segment.as_str())
            && st.segments.len() >= limits::MAX_SEGMENTS
        {
            return Err(Error::ResourceExhausted(format!(
                "campaign {:?} has {} segments, the limit",
                req.campaign_id,
                limits::MAX_SEGMENTS
            )));
        }
        let x = context_vector(&st.spec.policy, &req.campaign_id, &req.context)?;
        st.segment_mut(&req.segment);
        let pick = st.choose(&req.segment, x.as_deref());
        let timeout_ms = u64::from(st.spec.reward_timeout_seconds) * 1000;
        let last_deadline = st.deadlines.back().map_or(0, |(d, _)| *d);
        let deadline_ms = (now + timeout_ms).max(last_deadline);
        let id: Arc<str> = match &req.decision_id {
            Some(d) => d.as_str().into(),
            None => self.fresh_decision_id(),
        };
        let segment = st
            .segment_key(&req.segment)
            .unwrap_or_else(|| req.segment.as_str().into());
        let decision = Decision {
            campaign: cell.clone(),
            segment,
            arm: pick.arm as u32,
            propensity: pick.propensity,
            created_ms: now,
            deadline_ms,
            status: DecisionStatus::Pending,
            outcome_seq: 0,
            reward: 0.0,
            context: x.map(Arc::from),
        };
        {
            let mut shard = self.decisions.shard(&id).lock();
            if let Some(existing) = shard.get(&id) {
                // A concurrent retry with the same id won the race.
                let existing = existing.clone();
                drop(shard);
                drop(st);
                return self.replay(&cell, req, &id, &existing);
            }
            self.store.put_decision(&record(&id, &decision))?;
            shard.insert(id.clone(), decision);
        }
        st.add_pending(&req.segment, pick.arm);
        st.deadlines.push_back((deadline_ms, id.clone()));
        Ok(Choice {
            arm: pick.arm,
            arm_id: st.spec.arms[pick.arm].id.clone(),
            decision_id: id,
            propensity: pick.propensity,
        })
    }

    /// A server-generated decision id not in use (a caller may have chosen
    /// one that looks like ours).
    fn fresh_decision_id(&self) -> Arc<str> {
        loop {
            let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
            // Fixed width, so ids sort in creation order: new keys land at
            // the right edge of the store's ordered keyspace.
            let id: Arc<str> = format!("{}-{n:012x}", self.id_prefix).into();
            if !self.decisions.shard(&id).lock().contains_key(&id) {
                return id;
            }
        }
    }

    /// The stored answer to a retried `Choose`.
    fn replay(
        &self,
        cell: &Arc<CampaignCell>,
        req: &ChooseRequest,
        id: &str,
        d: &Decision,
    ) -> Result<Choice> {
        if !Arc::ptr_eq(&d.campaign, cell) || *d.segment != *req.segment {
            return Err(invalid(format!(
                "decision_id {id:?} was already used for a different campaign or segment"
            )));
        }
        let st = cell.state.lock();
        Ok(Choice {
            decision_id: id.into(),
            arm: d.arm as usize,
            arm_id: st.spec.arms[d.arm as usize].id.clone(),
            propensity: d.propensity,
        })
    }

    /// Learns the reward of a decision.
    pub fn reward(&self, decision_id: &str, value: f64) -> Result<RewardOutcome> {
        if decision_id.is_empty() {
            return Err(invalid("decision_id must not be empty"));
        }
        if !value.is_finite() {
            return Err(invalid(format!("reward value must be finite, got {value}")));
        }
        let cell = self
            .decisions
            .get(decision_id)
            .map(|d| d.campaign)
            .ok_or_else(|| Error::NotFound(format!("decision {decision_id:?}")))?;
        let now = self.clock.now_ms();
        let mut st = cell.state.lock();
        let (lo, hi) = st.spec.policy.reward_range();
        if !(lo..=hi).contains(&value) {
            return Err(invalid(format!(
                "reward value must be in [{lo}, {hi}] for campaign {:?}, got {value}",
                st.spec.id
            )));
        }
        let mut shard = self.decisions.shard(decision_id).lock();
        // Re-read under the campaign lock: the decision may have been
        // resolved or its campaign deleted since the lookup above.
        let Some(id) = shard.get_key_value(decision_id).map(|(k, _)| k.clone()) else {
            return Err(Error::NotFound(format!("decision {decision_id:?}")));
        };
        let Some(d) = shard
            .get_mut(&id)
            .filter(|d| Arc::ptr_eq(&d.campaign, &cell))
        else {
            return Err(Error::NotFound(format!("decision {decision_id:?}")));
        };
        match d.status {
            DecisionStatus::Rewarded => return Ok(RewardOutcome::Duplicate),
            DecisionStatus::Expired => {
                return Err(Error::FailedPrecondition(format!(
                    "decision {decision_id:?} expired before its reward arrived"
                )))
            }
            DecisionStatus::Pending => {}
        }
        if now > d.deadline_ms {
            // Expired but not yet swept: resolve it now, exactly once.
            let default = st.spec.default_reward;
            resolve(
                &*self.store,
                &mut st,
                &id,
                d,
                default,
                DecisionStatus::Expired,
            )?;
            return Err(Error::FailedPrecondition(format!(
                "decision {decision_id:?} expired before its reward arrived"
            )));
        }
        resolve(
            &*self.store,
            &mut st,
            &id,
            d,
            value,
            DecisionStatus::Rewarded,
        )?;
        Ok(RewardOutcome::Learned)
    }

    /// Learns the default reward of every decision whose deadline has passed
    /// and forgets resolved decisions past their retention. Returns how many
    /// decisions expired.
    pub fn expire_due(&self) -> Result<usize> {
        let now = self.clock.now_ms();
        let cells: Vec<Arc<CampaignCell>> = self.campaigns.read().values().cloned().collect();
        let mut expired = 0;
        for cell in cells {
            // Bounded work per lock hold, so a burst of expiries never
            // stalls the campaign's decisions for long.
            loop {
                let (n, more) = self.expire_some(&cell, now)?;
                expired += n;
                if !more {
                    break;
                }
            }
        }
        Ok(expired)
    }

    /// Expires and forgets up to [`EXPIRY_BATCH`] decisions of one campaign.
    /// Returns how many expired and whether work is left.
    fn expire_some(&self, cell: &CampaignCell, now: u64) -> Result<(usize, bool)> {
        let mut st = cell.state.lock();
        let retention_ms = u64::from(st.spec.reward_timeout_seconds) * 1000;
        let (mut expired, mut budget) = (0, EXPIRY_BATCH);
        while let Some((deadline, id)) = st.deadlines.front().cloned() {
            if deadline >= now || budget == 0 {
                break;
            }
            budget -= 1;
            {
                let mut shard = self.decisions.shard(&id).lock();
                if let Some(d) = shard.get_mut(&*id) {
                    if d.status == DecisionStatus::Pending {
                        let default = st.spec.default_reward;
                        resolve(
                            &*self.store,
                            &mut st,
                            &id,
                            d,
                            default,
                            DecisionStatus::Expired,
                        )?;
                        expired += 1;
                    }
                }
            }
            st.deadlines.pop_front();
            st.retention
                .push_back((deadline.saturating_add(retention_ms), id));
        }
        while let Some((forget_at, id)) = st.retention.front().cloned() {
            if forget_at >= now || budget == 0 {
                break;
            }
            budget -= 1;
            self.store.remove_decision(&id)?;
            self.decisions.shard(&id).lock().remove(&*id);
            st.retention.pop_front();
        }
        Ok((expired, budget == 0))
    }

    /// Decisions known to the engine (pending and remembered), for metrics and tests.
    pub fn decision_count(&self) -> usize {
        self.decisions.len()
    }
}

/// Persists and applies one outcome (the next of the campaign's outcome
/// sequence): the resolved decision and the arm's new row, then the same in
/// memory. A failed write changes nothing in memory.
fn resolve(
    store: &dyn Store,
    st: &mut CampaignState,
    id: &Arc<str>,
    d: &mut Decision,
    reward: f64,
    status: DecisionStatus,
) -> Result<()> {
    let arm = d.arm as usize;
    let seq = st.outcome_seq + 1;
    let counts = st.counts_after(&d.segment, arm, reward);
    let key = PosteriorKey {
        campaign: d.campaign.id.clone(),
        segment: d.segment.clone(),
        arm: d.arm,
    };
    let mut resolved = d.clone();
    resolved.status = status;
    resolved.outcome_seq = seq;
    resolved.reward = reward;
    let linear = match (&d.context, st.linear.get(arm)) {
        (Some(x), Some(stats)) => {
            let mut stats = stats.clone();
            stats.update(x, reward);
            Some(LinearRow {
                arm: stats,
                through: seq,
            })
        }
        _ => None,
    };
    store.record_outcome(
        &key,
        &PosteriorRow {
            counts,
            through: seq,
        },
        linear.as_ref(),
        &record(id, &resolved),
    )?;
    st.learn(&d.segment, arm, counts, reward, seq);
    if let Some(l) = linear {
        st.linear[arm] = l.arm;
        st.linear_through[arm] = seq;
    }
    *d = resolved;
    Ok(())
}

fn record(id: &Arc<str>, d: &Decision) -> DecisionRecord {
    DecisionRecord {
        id: id.clone(),
        campaign: d.campaign.id.clone(),
        segment: d.segment.clone(),
        arm: d.arm,
        propensity: d.propensity,
        created_ms: d.created_ms,
        deadline_ms: d.deadline_ms,
        status: d.status,
        outcome_seq: d.outcome_seq,
        reward: d.reward,
        context: d.context.clone(),
    }
}

/// The context vector of a request for a campaign with `policy`: the
/// intercept (1) followed by the campaign's features in their order. `None`
/// for non-contextual campaigns, which accept no features at all.
fn context_vector(
    policy: &PolicySpec,
    campaign: &str,
    context: &[(String, f64)],
) -> Result<Option<Vec<f64>>> {
    let features = policy.features();
    if features.is_empty() {
        if let Some((name, _)) = context.first() {
            return Err(invalid(format!(
                "context feature {name:?} is unknown: campaign {campaign:?} uses no context features"
            )));
        }
        return Ok(None);
    }
    let mut x = vec![f64::NAN; features.len() + 1];
    x[0] = 1.0;
    for (name, v) in context {
        if !v.is_finite() {
            return Err(invalid(format!(
                "context feature {name:?} is not finite: {v}"
            )));
        }
        let i = features.iter().position(|f| f == name).ok_or_else(|| {
            invalid(format!(
                "context feature {name:?} is unknown to campaign {campaign:?}"
            ))
        })?;
        x[i + 1] = *v;
    }
    let missing_zero = matches!(
        policy,
        PolicySpec::LinUcb {
            missing_zero: true,
            ..
        }
    );
    for (i, f) in features.iter().enumerate() {
        if x[i + 1].is_nan() {
            if !missing_zero {
                return Err(invalid(format!(
                    "context feature {f:?} is missing (campaign {campaign:?} does not treat missing features as 0)"
                )));
            }
            x[i + 1] = 0.0;
        }
    }
    Ok(Some(x))
}

#[cfg(test)]
mod tests;
