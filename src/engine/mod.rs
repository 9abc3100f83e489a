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
use decisions::{Decision, ForeignIndex, Locator};
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
    campaigns: RwLock<Campaigns>,
    /// Decisions whose ids this process did not generate.
    foreign: ForeignIndex,
    store: Arc<dyn Store>,
    commit: Option<GroupCommit>,
    clock: Clock,
    seed: u64,
    /// Server-generated decision ids: `{prefix}-{campaign no}-{slot}`, with a
    /// random per-process prefix.
    id_prefix: String,
}

/// The campaigns, by id and by this process's number for them.
#[derive(Debug, Default)]
struct Campaigns {
    by_id: FastMap<Arc<str>, Arc<CampaignCell>>,
    by_no: FastMap<u32, Arc<CampaignCell>>,
    next_no: u32,
}

impl Campaigns {
    fn insert(&mut self, cell: Arc<CampaignCell>) {
        self.by_no.insert(cell.no, cell.clone());
        self.by_id.insert(cell.id.clone(), cell);
    }

    fn remove(&mut self, id: &str) {
        if let Some(cell) = self.by_id.remove(id) {
            self.by_no.remove(&cell.no);
        }
    }

    fn next_no(&mut self) -> u32 {
        self.next_no += 1;
        self.next_no
    }
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
            campaigns: RwLock::new(Campaigns::default()),
            foreign: ForeignIndex::default(),
            store,
            commit: None,
            clock: options.clock,
            seed,
            // From the OS, not the seed: ids must differ across restarts
            // even when decisions are seeded.
            id_prefix: format!("{:016x}", rand::rng().random::<u64>()),
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
        let mut campaigns = self.campaigns.write();
        for spec in snap.campaigns {
            let no = campaigns.next_no();
            campaigns.insert(self.new_cell(spec, no));
        }
        let map = &campaigns.by_id;
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
            let slot = st.log.push(Decision {
                id: id.clone(),
                segment: d.segment,
                arm: d.arm,
                propensity: d.propensity,
                created_ms: d.created_ms,
                deadline_ms: d.deadline_ms,
                status: d.status,
                outcome_seq: d.outcome_seq,
                reward: d.reward,
                context: d.context,
            });
            self.foreign.shard(&id).lock().insert(
                id,
                Locator {
                    campaign: cell.clone(),
                    slot,
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
            decisions = map
                .values()
                .map(|c| c.state.lock().log.len())
                .sum::<usize>(),
            "state loaded"
        );
        Ok(())
    }

    fn new_cell(&self, spec: CampaignSpec, no: u32) -> Arc<CampaignCell> {
        let rng = SmallRng::seed_from_u64(self.seed ^ fnv1a(&spec.id));
        Arc::new(CampaignCell {
            id: spec.id.as_str().into(),
            no,
            state: parking_lot::Mutex::new(CampaignState::new(spec, rng)),
        })
    }

    fn campaign(&self, id: &str) -> Result<Arc<CampaignCell>> {
        self.campaigns
            .read()
            .by_id
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
        let mut campaigns = self.campaigns.write();
        if campaigns.by_id.contains_key(spec.id.as_str()) {
            return Err(Error::AlreadyExists(format!("campaign {:?}", spec.id)));
        }
        if campaigns.by_id.len() >= limits::MAX_CAMPAIGNS {
            return Err(Error::ResourceExhausted(format!(
                "at most {} campaigns per daemon",
                limits::MAX_CAMPAIGNS
            )));
        }
        self.store.put_campaign(&spec)?;
        let no = campaigns.next_no();
        campaigns.insert(self.new_cell(spec.clone(), no));
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
            .by_id
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
        let mut campaigns = self.campaigns.write();
        let cell = campaigns
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("campaign {id:?}")))?;
        let st = cell.state.lock();
        let ids: Vec<String> = st.log.iter().map(|d| d.id.to_string()).collect();
        self.store.delete_campaign(id, &ids)?;
        campaigns.remove(id);
        for d in &ids {
            self.foreign.remove(d);
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
            if let Some(found) = self.locate(id) {
                if let Some(choice) = self.replay(&cell, req, id, &found)? {
                    return Ok(choice);
                }
            }
            if self.parse_own_id(id).is_some() {
                // Reserved: it would collide with an id this server hands out.
                return Err(invalid(format!(
                    "decision_id {id:?} has the form of a server-generated id but names no known decision; choose another"
                )));
            }
        }
        let now = self.clock.now_ms();
        let mut st = cell.state.lock();
        let x = context_vector(&st.spec.policy, &req.campaign_id, &req.context)?;
        let Some(segment) = st.intern_segment(&req.segment, limits::MAX_SEGMENTS) else {
            return Err(Error::ResourceExhausted(format!(
                "campaign {:?} has {} segments, the limit",
                req.campaign_id,
                limits::MAX_SEGMENTS
            )));
        };
        let pick = st.choose(&req.segment, x.as_deref());
        let timeout_ms = u64::from(st.spec.reward_timeout_seconds) * 1000;
        let deadline_ms = (now + timeout_ms).max(st.log.last_deadline());
        let slot = st.log.next_slot();
        let decision = Decision {
            id: match &req.decision_id {
                Some(d) => d.as_str().into(),
                None => self.own_id(cell.no, slot),
            },
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
        let id = decision.id.clone();
        if req.decision_id.is_some() {
            let mut shard = self.foreign.shard(&id).lock();
            if let Some(existing) = shard.get(&id).cloned() {
                // A concurrent retry with the same id won the race.
                drop(shard);
                drop(st);
                return self
                    .replay(&cell, req, &id, &existing)?
                    .ok_or_else(|| Error::NotFound(format!("decision {id:?}")));
            }
            self.store.put_decision(&record(&cell.id, &decision))?;
            shard.insert(
                id.clone(),
                Locator {
                    campaign: cell.clone(),
                    slot,
                },
            );
        } else {
            self.store.put_decision(&record(&cell.id, &decision))?;
        }
        st.log.push(decision);
        st.add_pending(&req.segment, pick.arm);
        Ok(Choice {
            decision_id: id,
            arm: pick.arm,
            arm_id: st.spec.arms[pick.arm].id.clone(),
            propensity: pick.propensity,
        })
    }

    /// The id of slot `slot` of campaign number `no`: fixed-width slot, so
    /// a campaign's ids sort in creation order (new keys land at the right
    /// edge of the store's ordered keyspace). Twelve hex digits cover 2⁴⁸
    /// decisions per campaign per process (89 years at 100,000/s).
    fn own_id(&self, no: u32, slot: u64) -> Arc<str> {
        // By hand: `format!` costs several times more on this hot path.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        let prefix = self.id_prefix.as_bytes();
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut n = prefix.len();
        buf[n] = b'-';
        n += 1;
        let digits = (32 - no.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in (0..digits).rev() {
            buf[n] = HEX[((no >> (4 * i)) & 0xf) as usize];
            n += 1;
        }
        buf[n] = b'-';
        n += 1;
        for i in (0..12).rev() {
            buf[n] = HEX[((slot >> (4 * i)) & 0xf) as usize];
            n += 1;
        }
        // Only ASCII hex digits and '-' were written.
        Arc::from(std::str::from_utf8(&buf[..n]).unwrap_or_default())
    }

    /// (campaign number, slot) of an id this process generated.
    fn parse_own_id(&self, id: &str) -> Option<(u32, u64)> {
        let rest = id
            .strip_prefix(self.id_prefix.as_str())?
            .strip_prefix('-')?;
        let (no, slot) = rest.split_once('-')?;
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(no) || slot.len() != 12 || !hex(slot) {
            return None;
        }
        Some((
            u32::from_str_radix(no, 16).ok()?,
            u64::from_str_radix(slot, 16).ok()?,
        ))
    }

    /// Where a decision id points, if anywhere (its entry may since have
    /// been forgotten: check the id at the slot under the campaign's lock).
    fn locate(&self, id: &str) -> Option<Locator> {
        match self.parse_own_id(id) {
            Some((no, slot)) => Some(Locator {
                campaign: self.campaigns.read().by_no.get(&no)?.clone(),
                slot,
            }),
            None => self.foreign.get(id),
        }
    }

    /// The stored answer to a retried `Choose`; `None` if the decision was
    /// forgotten in the meantime.
    fn replay(
        &self,
        cell: &Arc<CampaignCell>,
        req: &ChooseRequest,
        id: &str,
        at: &Locator,
    ) -> Result<Option<Choice>> {
        let st = at.campaign.state.lock();
        let Some(d) = st.log.get(at.slot).filter(|d| *d.id == *id) else {
            return Ok(None);
        };
        if !Arc::ptr_eq(&at.campaign, cell) || *d.segment != *req.segment {
            return Err(invalid(format!(
                "decision_id {id:?} was already used for a different campaign or segment"
            )));
        }
        Ok(Some(Choice {
            decision_id: d.id.clone(),
            arm: d.arm as usize,
            arm_id: st.spec.arms[d.arm as usize].id.clone(),
            propensity: d.propensity,
        }))
    }

    /// Learns the reward of a decision.
    pub fn reward(&self, decision_id: &str, value: f64) -> Result<RewardOutcome> {
        if decision_id.is_empty() {
            return Err(invalid("decision_id must not be empty"));
        }
        if !value.is_finite() {
            return Err(invalid(format!("reward value must be finite, got {value}")));
        }
        let not_found = || Error::NotFound(format!("decision {decision_id:?}"));
        let at = self.locate(decision_id).ok_or_else(not_found)?;
        let now = self.clock.now_ms();
        let mut st = at.campaign.state.lock();
        let (lo, hi) = st.spec.policy.reward_range();
        if !(lo..=hi).contains(&value) {
            return Err(invalid(format!(
                "reward value must be in [{lo}, {hi}] for campaign {:?}, got {value}",
                st.spec.id
            )));
        }
        // Re-read under the campaign lock: the decision may have been
        // resolved or forgotten since the lookup above.
        let Some(d) = st.log.get(at.slot).filter(|d| *d.id == *decision_id) else {
            return Err(not_found());
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
                at.slot,
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
            at.slot,
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
        let cells: Vec<Arc<CampaignCell>> = self.campaigns.read().by_id.values().cloned().collect();
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
        while budget > 0 {
            let Some(slot) = st.log.next_overdue(now) else {
                break;
            };
            budget -= 1;
            if st
                .log
                .get(slot)
                .is_some_and(|d| d.status == DecisionStatus::Pending)
            {
                let default = st.spec.default_reward;
                resolve(
                    &*self.store,
                    &mut st,
                    slot,
                    default,
                    DecisionStatus::Expired,
                )?;
                expired += 1;
            }
            st.log.mark_swept();
        }
        while budget > 0 {
            let Some(id) = st
                .log
                .forgettable(now.saturating_sub(retention_ms))
                .map(|d| d.id.clone())
            else {
                break;
            };
            budget -= 1;
            self.store.remove_decision(&id)?;
            if self.parse_own_id(&id).is_none() {
                self.foreign.remove(&id);
            }
            st.log.pop_front();
        }
        Ok((expired, budget == 0))
    }

    /// Decisions known to the engine (pending and remembered), for metrics and tests.
    pub fn decision_count(&self) -> usize {
        let cells: Vec<Arc<CampaignCell>> = self.campaigns.read().by_id.values().cloned().collect();
        cells.iter().map(|c| c.state.lock().log.len()).sum()
    }
}

/// Persists and applies one outcome (the next of the campaign's outcome
/// sequence) of the decision in `slot`: the resolved decision and the arm's
/// new row, then the same in memory. A failed write changes nothing in
/// memory.
fn resolve(
    store: &dyn Store,
    st: &mut CampaignState,
    slot: u64,
    reward: f64,
    status: DecisionStatus,
) -> Result<()> {
    let Some(d) = st.log.get(slot) else {
        return Err(Error::NotFound(format!("decision slot {slot}")));
    };
    let mut resolved = d.clone();
    resolved.status = status;
    resolved.outcome_seq = st.outcome_seq + 1;
    resolved.reward = reward;
    let seq = resolved.outcome_seq;
    let arm = d.arm as usize;
    let counts = st.counts_after(&resolved.segment, arm, reward);
    let key = PosteriorKey {
        campaign: st.id.clone(),
        segment: resolved.segment.clone(),
        arm: resolved.arm,
    };
    let linear = match (&resolved.context, st.linear.get(arm)) {
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
        &record(&st.id, &resolved),
    )?;
    st.learn(&resolved.segment, arm, counts, reward, seq);
    if let Some(l) = linear {
        st.linear[arm] = l.arm;
        st.linear_through[arm] = seq;
    }
    if let Some(d) = st.log.get_mut(slot) {
        *d = resolved;
    }
    Ok(())
}

fn record(campaign: &Arc<str>, d: &Decision) -> DecisionRecord {
    DecisionRecord {
        id: d.id.clone(),
        campaign: campaign.clone(),
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
