//! Replicas that learn together through Redis.
//!
//! Each replica decides from its own memory (no network hop on `Choose`)
//! and learns locally; this module keeps the replicas' statistics and
//! campaign definitions together:
//!
//! - **Shipping** (every [`ReplicaOptions::ship_interval`]): the engine's
//!   own totals ([`Engine::replica_totals`], named additive sums) are
//!   compared with what Redis last acknowledged from this replica, and the
//!   fields that differ are sent as *absolute values* in one script call
//!   per batch ([`scripts::SHIP`]) with a per-replica sequence number.
//!   Redis moves each merged total by the difference to the replica's
//!   previous value, so a retried or repeated batch changes nothing, and a
//!   stale batch (lower sequence number) is ignored.
//! - **The outbox is the replica's own rows in sled**: what has not been
//!   shipped is exactly the difference between them and the replica's hash
//!   in Redis. So the backlog is bounded by the number of statistics, not
//!   of events; while Redis is down, learning goes on locally and the next
//!   batch after it returns carries everything, once; a replica killed
//!   with SIGKILL restarts with what sled kept (its durability mode) and
//!   its first batch ships whatever Redis had not acknowledged.
//! - **Pulling** (every [`ReplicaOptions::pull_interval`]): one script
//!   ([`scripts::PULL`]) reads, at one instant, the campaign definitions,
//!   the replica registry, and per campaign the merged totals and this
//!   replica's own part; the difference (the other replicas') goes to the
//!   engine ([`Engine::apply_remote`]). Definitions are applied to the
//!   local engine (created, arms added or retired, deleted).
//! - **Campaign changes** go to Redis first ([`Replica::create_campaign`]
//!   and friends, compare-and-set on a version), then to the local engine;
//!   the other replicas apply them at their next pull. With Redis
//!   unreachable they are refused (`UNAVAILABLE`); decisions and rewards
//!   are not affected.
//! - **Rewards reach their decision**: a server-generated decision id is
//!   prefixed with the replica's id (`r1~…`); a reward that lands on another
//!   replica is forwarded to the owner over gRPC (one hop, marked so it is
//!   never forwarded again), and the caller gets the owner's answer. A
//!   caller-chosen id names no replica: a replica that does not know it
//!   asks the others.
//! - **Redis losing its data** (a restart without persistence) shows as a
//!   missing or new epoch: every replica forgets what it believes shipped
//!   and ships its full totals again, so the merged totals are rebuilt
//!   exactly from the replicas' own rows. The first replica to reach the
//!   empty Redis (its pull, or a campaign change, which seeds first) seeds
//!   it in one script with its campaigns ([`scripts::INIT`]); the others
//!   follow those definitions.

pub mod scripts;

use crate::campaign::{ArmSpec, CampaignSpec};
use crate::engine::{Engine, RewardOutcome, Totals};
use crate::error::{Error, Result};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The prefix of every Redis key, by default.
pub const DEFAULT_PREFIX: &str = "banditd";
/// How often deltas are shipped, by default.
pub const DEFAULT_SHIP_INTERVAL: Duration = Duration::from_millis(500);
/// How often merged totals and definitions are pulled, by default.
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_millis(1000);
/// Fields per script call at most (a first or catch-up batch is split).
const MAX_BATCH_FIELDS: usize = 4096;
/// How long one Redis call may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a forwarded reward may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// The metadata key that marks a forwarded reward (its value: the sender).
pub const FORWARDED_HEADER: &str = "x-banditd-forwarded";
/// Separates the replica id from the engine's id in a decision id.
const OWNER_SEP: char = '~';

/// How a replica joins the others.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// `redis://HOST:PORT[/DB]`.
    pub redis_url: String,
    /// This replica's name, unique among the replicas (`[A-Za-z0-9_-]`, ≤ 64).
    pub replica_id: String,
    /// Where the other replicas reach this one for forwarded rewards.
    pub advertise_url: String,
    pub prefix: String,
    pub ship_interval: Duration,
    pub pull_interval: Duration,
}

/// Checks a replica id.
pub fn validate_replica_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!(
            "--replica-id {id:?}: must be 1 to 64 characters long"
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "--replica-id {id:?}: only letters, digits, '-' and '_' are allowed"
        ));
    }
    Ok(())
}

/// What an operator watches (metrics, logs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplicaStatus {
    /// The last call to Redis succeeded.
    pub redis_up: bool,
    /// Milliseconds since the merged totals were last pulled (`None`: never).
    pub staleness_ms: Option<u64>,
    /// Fields whose own value Redis has not acknowledged.
    pub backlog_fields: u64,
    pub batches_shipped: u64,
    pub pulls: u64,
    pub rewards_forwarded: u64,
}

/// A campaign as Redis defines it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Record {
    gen: u64,
    version: u64,
    spec: CampaignSpec,
}

#[derive(Debug, serde::Deserialize)]
struct PeerRecord {
    url: String,
}

/// What the sync loop knows, under one lock (never held across an await).
#[derive(Debug, Default)]
struct SyncState {
    /// The epoch of the Redis data the rest refers to.
    epoch: Option<String>,
    /// Campaign id → (generation, version) as last applied locally.
    campaigns: BTreeMap<String, (u64, u64)>,
    /// Generation → field → the value Redis acknowledged from this replica.
    shipped: BTreeMap<u64, Totals>,
    /// Replica id → advertised URL.
    peers: BTreeMap<String, String>,
}

/// One replica's link to the others.
#[derive(Debug)]
pub struct Replica {
    engine: Arc<Engine>,
    opts: ReplicaOptions,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    sync: Mutex<SyncState>,
    channels: Mutex<BTreeMap<String, tonic::transport::Channel>>,
    seq: AtomicU64,
    redis_up: AtomicBool,
    /// ms since the epoch of the last successful pull (0: never).
    pulled_ms: AtomicU64,
    backlog: AtomicU64,
    batches: AtomicU64,
    pulls: AtomicU64,
    forwarded: AtomicU64,
    ship: redis::Script,
    pull: redis::Script,
    epoch: redis::Script,
    peers: redis::Script,
    init: redis::Script,
    create: redis::Script,
    update: redis::Script,
    delete: redis::Script,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn unreachable_redis(e: &redis::RedisError) -> Error {
    tracing::warn!(error = %e, "redis call failed");
    Error::ReplicaUnavailable(
        "campaign changes need Redis, which is unreachable; decisions and rewards go on; retry later"
            .into(),
    )
}

/// The number in a script's string answer.
fn parse_u64(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

/// A flat `[k, v, k, v, …]` list as pairs.
fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// A flat hash of numbers as totals (unparseable values skipped).
fn totals(flat: Vec<String>) -> Totals {
    pairs(flat)
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse::<f64>().ok().filter(|x| x.is_finite())?)))
        .collect()
}

/// `merged − own`, field-wise.
pub fn others(merged: &Totals, own: &Totals) -> Totals {
    let mut out = merged.clone();
    for (k, v) in own {
        *out.entry(k.clone()).or_insert(0.0) -= v;
    }
    out.retain(|_, v| *v != 0.0);
    out
}

/// The fields of `local` that differ from `shipped`, with the value to
/// ship (0 for a field `shipped` has and `local` no longer has).
pub fn changes(local: &Totals, shipped: &Totals) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = local
        .iter()
        .filter(|(k, v)| shipped.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    out.extend(
        shipped
            .keys()
            .filter(|k| !local.contains_key(*k))
            .map(|k| (k.clone(), 0.0)),
    );
    out
}

/// Whether a local campaign can be kept as Redis's definition `remote`
/// (same policy and rules, its arms a prefix of the remote ones).
fn compatible(local: &CampaignSpec, remote: &CampaignSpec) -> bool {
    local.policy == remote.policy
        && local.reward_timeout_seconds == remote.reward_timeout_seconds
        && local.default_reward.to_bits() == remote.default_reward.to_bits()
        && local.decay_half_life_seconds == remote.decay_half_life_seconds
        && local.arms.len() <= remote.arms.len()
        && local
            .arms
            .iter()
            .zip(&remote.arms)
            .all(|(a, b)| a.id == b.id && (b.retired || !a.retired))
}

/// Where a reward goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// Made here: the engine's own id.
    Local(&'a str),
    /// Made by another replica.
    Owner(&'a str),
    /// Names no replica (caller-chosen, or from before replication).
    Unowned(&'a str),
}

impl Replica {
    /// Connects lazily: a Redis that is down at start-up is retried by the
    /// sync loop, and the replica serves meanwhile.
    pub fn new(engine: Arc<Engine>, opts: ReplicaOptions) -> std::result::Result<Self, String> {
        validate_replica_id(&opts.replica_id)?;
        let client = redis::Client::open(opts.redis_url.as_str())
            .map_err(|e| format!("--redis-url {:?}: {e}", opts.redis_url))?;
        Ok(Replica {
            engine,
            opts,
            client,
            conn: tokio::sync::Mutex::new(None),
            sync: Mutex::new(SyncState::default()),
            channels: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
            redis_up: AtomicBool::new(false),
            pulled_ms: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            pulls: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            ship: redis::Script::new(scripts::SHIP),
            pull: redis::Script::new(scripts::PULL),
            epoch: redis::Script::new(scripts::EPOCH),
            peers: redis::Script::new(scripts::PEERS),
            init: redis::Script::new(scripts::INIT),
            create: redis::Script::new(scripts::CREATE),
            update: redis::Script::new(scripts::UPDATE),
            delete: redis::Script::new(scripts::DELETE),
        })
    }

    pub fn id(&self) -> &str {
        &self.opts.replica_id
    }

    pub fn status(&self) -> ReplicaStatus {
        let pulled = self.pulled_ms.load(Ordering::Relaxed);
        ReplicaStatus {
            redis_up: self.redis_up.load(Ordering::Relaxed),
            staleness_ms: (pulled > 0).then(|| now_ms().saturating_sub(pulled)),
            backlog_fields: self.backlog.load(Ordering::Relaxed),
            batches_shipped: self.batches.load(Ordering::Relaxed),
            pulls: self.pulls.load(Ordering::Relaxed),
            rewards_forwarded: self.forwarded.load(Ordering::Relaxed),
        }
    }

    /// A sequence number above every earlier one, across restarts (time
    /// based, so nothing needs to be persisted for it).
    fn next_seq(&self) -> u64 {
        let floor = now_ms().saturating_mul(1000);
        let mut cur = self.seq.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(1).max(floor);
            match self
                .seq
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs a script; a failure drops the connection (the next call
    /// reconnects) and marks Redis down.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        args: &[String],
    ) -> redis::RedisResult<T> {
        let result = async {
            let mut conn = self.connection().await?;
            let mut call = script.prepare_invoke();
            for a in args {
                call.arg(a);
            }
            call.invoke_async::<T>(&mut conn).await
        }
        .await;
        match &result {
            Ok(_) => {
                if !self.redis_up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis reachable");
                }
            }
            Err(e) => {
                *self.conn.lock().await = None;
                if self.redis_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis unreachable: serving and learning locally, shipping resumes when it returns");
                }
            }
        }
        result
    }

    /// The sync loop: ships and pulls until `stop` turns true, then ships
    /// once more (best effort).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ship = tokio::time::interval(self.opts.ship_interval);
        ship.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pull = tokio::time::interval(self.opts.pull_interval);
        pull.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = pull.tick() => {
                    if let Err(e) = self.pull_once().await {
                        tracing::debug!(error = %e, "pull failed");
                    }
                }
                _ = ship.tick() => {
                    if let Err(e) = self.ship_once().await {
                        tracing::debug!(error = %e, "ship failed");
                    }
                }
                _ = stop.changed() => break,
            }
        }
        let last = tokio::time::timeout(Duration::from_secs(2), self.ship_once()).await;
        match last {
            Ok(Ok(())) => tracing::info!("last deltas shipped"),
            _ => {
                tracing::warn!("the last deltas could not be shipped; they go with the next start")
            }
        }
    }

    /// Ships what Redis has not acknowledged of this replica's totals.
    pub async fn ship_once(&self) -> std::result::Result<(), String> {
        let engine = self.engine.clone();
        let local = tokio::task::spawn_blocking(move || engine.replica_totals())
            .await
            .map_err(|e| e.to_string())?;
        // (gen, field, value) to ship.
        let mut pending: Vec<(u64, String, f64)> = Vec::new();
        {
            let sync = self.sync.lock();
            if sync.epoch.is_none() {
                // Not synced yet: what Redis holds is unknown.
                return Ok(());
            }
            for (id, totals) in &local {
                let Some(&(gen, _)) = sync.campaigns.get(&**id) else {
                    continue;
                };
                let empty = Totals::new();
                let shipped = sync.shipped.get(&gen).unwrap_or(&empty);
                pending.extend(
                    changes(totals, shipped)
                        .into_iter()
                        .map(|(f, v)| (gen, f, v)),
                );
            }
        }
        self.backlog.store(pending.len() as u64, Ordering::Relaxed);
        for chunk in pending.chunks(MAX_BATCH_FIELDS) {
            let seq = self.next_seq();
            let mut args = vec![
                self.opts.prefix.clone(),
                self.opts.replica_id.clone(),
                seq.to_string(),
            ];
            let mut i = 0;
            while i < chunk.len() {
                let gen = chunk[i].0;
                let run = chunk[i..].iter().take_while(|c| c.0 == gen).count();
                args.push(gen.to_string());
                args.push(run.to_string());
                for (_, f, v) in &chunk[i..i + run] {
                    args.push(f.clone());
                    args.push(format!("{v:?}"));
                }
                i += run;
            }
            let (applied, _last): (u64, String) = self
                .invoke(&self.ship, &args)
                .await
                .map_err(|e| e.to_string())?;
            let mut sync = self.sync.lock();
            // A batch refused as stale changed nothing: its fields stay
            // unacknowledged and go again with the next one.
            if applied == 1 {
                for (gen, f, v) in chunk {
                    let shipped = sync.shipped.entry(*gen).or_default();
                    if *v == 0.0 {
                        shipped.remove(f);
                    } else {
                        shipped.insert(f.clone(), *v);
                    }
                }
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.backlog
                    .fetch_sub(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Pulls definitions and merged totals, and applies them.
    pub async fn pull_once(&self) -> std::result::Result<(), String> {
        type Pulled = (
            String,
            Vec<String>,
            Vec<String>,
            Vec<(String, Vec<String>, Vec<String>)>,
        );
        let args = [
            self.opts.prefix.clone(),
            self.opts.replica_id.clone(),
            self.opts.advertise_url.clone(),
            now_ms().to_string(),
        ];
        let (epoch, campaigns, peers, stats): Pulled = self
            .invoke(&self.pull, &args)
            .await
            .map_err(|e| e.to_string())?;
        if epoch.is_empty() {
            // Redis is empty (new, or it lost its data): start an epoch and
            // give it this replica's campaigns; the next pull applies it.
            return self.initialise().await;
        }
        let records: Vec<(String, Record)> = pairs(campaigns)
            .into_iter()
            .filter_map(|(id, rec)| match serde_json::from_str::<Record>(&rec) {
                Ok(r) => Some((id, r)),
                Err(e) => {
                    tracing::warn!(campaign = %id, error = %e, "unreadable campaign record in redis; skipped");
                    None
                }
            })
            .collect();
        {
            let mut sync = self.sync.lock();
            if sync.epoch.as_deref() != Some(epoch.as_str()) {
                if sync.epoch.is_some() {
                    tracing::warn!(
                        "redis holds a new epoch (its data was lost or replaced): shipping every total again"
                    );
                }
                sync.epoch = Some(epoch);
                sync.shipped.clear();
                sync.campaigns.clear();
            }
            self.learn_peers(&mut sync, peers);
        }
        let engine = self.engine.clone();
        let known: BTreeMap<String, (u64, u64)> = self.sync.lock().campaigns.clone();
        let stats: Vec<(u64, Totals, Totals)> = stats
            .into_iter()
            .map(|(gen, merged, own)| (parse_u64(&gen), totals(merged), totals(own)))
            .collect();
        let (applied, adopted_own) = tokio::task::spawn_blocking(move || {
            let applied = apply_definitions(&engine, &known, &records);
            let by_gen: BTreeMap<u64, &String> =
                applied.iter().map(|(id, &(g, _))| (g, id)).collect();
            let mut own = BTreeMap::new();
            for (gen, merged, mine) in &stats {
                let Some(id) = by_gen.get(gen) else {
                    continue;
                };
                if let Err(e) = engine.apply_remote(id, &others(merged, mine)) {
                    tracing::debug!(campaign = %id, error = %e, "remote statistics not applied");
                }
                own.insert(*gen, mine.clone());
            }
            (applied, own)
        })
        .await
        .map_err(|e| e.to_string())?;
        {
            let mut sync = self.sync.lock();
            let live: std::collections::BTreeSet<u64> = applied.values().map(|&(g, _)| g).collect();
            sync.shipped.retain(|g, _| live.contains(g));
            // What Redis holds of ours, read at the same instant as the
            // merged totals, is what counts as shipped: after a restart it
            // is the starting point (only what differs goes again), and it
            // heals any belief the last batches left wrong.
            for (gen, own) in adopted_own {
                sync.shipped.insert(gen, own);
            }
            sync.campaigns = applied;
        }
        self.pulled_ms.store(now_ms(), Ordering::Relaxed);
        self.pulls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Adds (or moves) the replicas in Redis's flat `id, record` list.
    /// Peers are only ever added: after Redis lost its data, a replica that
    /// has not re-registered yet still made decisions that rewards must
    /// reach.
    fn learn_peers(&self, sync: &mut SyncState, flat: Vec<String>) {
        for (id, rec) in pairs(flat) {
            if let Ok(p) = serde_json::from_str::<PeerRecord>(&rec) {
                if sync.peers.get(&id) != Some(&p.url) {
                    self.channels.lock().remove(&id);
                    sync.peers.insert(id, p.url);
                }
            }
        }
    }

    /// Reads the registered replicas now (not at the next pull); false
    /// when Redis did not answer.
    async fn refresh_peers(&self) -> bool {
        match self
            .invoke::<Vec<String>>(&self.peers, std::slice::from_ref(&self.opts.prefix))
            .await
        {
            Ok(flat) => {
                let mut sync = self.sync.lock();
                self.learn_peers(&mut sync, flat);
                true
            }
            Err(_) => false,
        }
    }

    /// Starts an epoch in an empty Redis and registers this replica's campaigns.
    async fn initialise(&self) -> std::result::Result<(), String> {
        let epoch = format!("{:016x}", rand::random::<u64>());
        let mut args = vec![self.opts.prefix.clone(), epoch];
        for spec in self.engine.list_campaigns() {
            let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
            args.push(spec.id.clone());
            args.push(json);
        }
        let seeded: u64 = self
            .invoke(&self.init, &args)
            .await
            .map_err(|e| e.to_string())?;
        if seeded == 1 {
            tracing::info!("redis was empty: started an epoch with this replica's campaigns");
        }
        Ok(())
    }

    /// Before a campaign change: an empty Redis (new, or it lost its data)
    /// is seeded first, so that the change is made to the campaigns every
    /// replica will follow and is not undone by a seed after it.
    async fn ensure_epoch(&self) -> Result<()> {
        let epoch: String = self
            .invoke(&self.epoch, std::slice::from_ref(&self.opts.prefix))
            .await
            .map_err(|e| unreachable_redis(&e))?;
        if epoch.is_empty() {
            self.initialise()
                .await
                .map_err(|e| Error::ReplicaUnavailable(format!("redis: {e}")))?;
        }
        Ok(())
    }

    /// Creates a campaign on every replica (Redis first, then here).
    pub async fn create_campaign(&self, spec: CampaignSpec) -> Result<CampaignSpec> {
        spec.validate()?;
        let json = serde_json::to_string(&spec)
            .map_err(|e| Error::InvalidArgument(format!("campaign: {e}")))?;
        self.ensure_epoch().await?;
        let (created, gen): (u64, String) = self
            .invoke(
                &self.create,
                &[self.opts.prefix.clone(), spec.id.clone(), json],
            )
            .await
            .map_err(|e| unreachable_redis(&e))?;
        if created != 1 {
            return Err(Error::AlreadyExists(format!("campaign {:?}", spec.id)));
        }
        let gen = parse_u64(&gen);
        // A local leftover of a campaign deleted elsewhere goes first.
        if self.engine.get_campaign(&spec.id).is_ok() {
            let _ = self.engine.delete_campaign(&spec.id);
        }
        let created = self.engine.create_campaign(spec)?;
        self.sync
            .lock()
            .campaigns
            .insert(created.id.clone(), (gen, 1));
        Ok(created)
    }

    /// Changes a campaign's definition in Redis (compare-and-set, retried
    /// on a concurrent change), then here.
    async fn update_campaign(
        &self,
        id: &str,
        change: impl Fn(&mut CampaignSpec) -> Result<()>,
    ) -> Result<CampaignSpec> {
        self.ensure_epoch().await?;
        for _ in 0..5 {
            let mut conn = self.connection().await.map_err(|e| unreachable_redis(&e))?;
            let rec: Option<String> = redis::cmd("HGET")
                .arg(format!("{}:campaigns", self.opts.prefix))
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(|e| unreachable_redis(&e))?;
            let rec = rec.ok_or_else(|| Error::NotFound(format!("campaign {id:?}")))?;
            let rec: Record = serde_json::from_str(&rec).map_err(|e| {
                tracing::error!(campaign = %id, error = %e, "unreadable campaign record in redis");
                Error::ReplicaUnavailable(format!(
                    "the definition of campaign {id:?} in Redis is unreadable"
                ))
            })?;
            let mut spec = rec.spec.clone();
            change(&mut spec)?;
            if spec == rec.spec {
                self.apply_local(id, &spec)?;
                return self.engine.get_campaign(id);
            }
            let json = serde_json::to_string(&spec)
                .map_err(|e| Error::InvalidArgument(format!("campaign: {e}")))?;
            let (ok, version): (u64, String) = self
                .invoke(
                    &self.update,
                    &[
                        self.opts.prefix.clone(),
                        id.to_string(),
                        rec.gen.to_string(),
                        rec.version.to_string(),
                        json,
                    ],
                )
                .await
                .map_err(|e| unreachable_redis(&e))?;
            if ok == 1 {
                self.apply_local(id, &spec)?;
                self.sync
                    .lock()
                    .campaigns
                    .insert(id.to_string(), (rec.gen, parse_u64(&version)));
                return self.engine.get_campaign(id);
            }
        }
        Err(Error::Aborted(format!(
            "campaign {id:?} kept changing on other replicas; retry"
        )))
    }

    /// Brings the local campaign's arms to `spec`'s.
    fn apply_local(&self, id: &str, spec: &CampaignSpec) -> Result<()> {
        let local = self.engine.get_campaign(id)?;
        sync_arms(&self.engine, &local, spec)
    }

    pub async fn add_arms(&self, id: &str, arms: Vec<ArmSpec>) -> Result<CampaignSpec> {
        self.update_campaign(id, |spec| spec.add_arms(arms.clone()))
            .await
    }

    pub async fn retire_arm(&self, id: &str, arm_id: &str) -> Result<CampaignSpec> {
        self.update_campaign(id, |spec| spec.retire(arm_id).map(|_| ()))
            .await
    }

    /// Deletes a campaign everywhere (Redis first, then here).
    pub async fn delete_campaign(&self, id: &str) -> Result<()> {
        self.ensure_epoch().await?;
        let existed: u64 = self
            .invoke(&self.delete, &[self.opts.prefix.clone(), id.to_string()])
            .await
            .map_err(|e| unreachable_redis(&e))?;
        let local = self.engine.delete_campaign(id);
        {
            // One guard: in an `if let` the scrutinee's guard lives through
            // the body, and locking again there deadlocked (parking_lot
            // locks are not reentrant).
            let mut sync = self.sync.lock();
            if let Some((gen, _)) = sync.campaigns.remove(id) {
                sync.shipped.remove(&gen);
            }
        }
        match (existed, local) {
            (0, Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// The decision id a client sees for a server-generated engine id.
    pub fn public_id(&self, engine_id: &str) -> String {
        format!("{}{OWNER_SEP}{engine_id}", self.opts.replica_id)
    }

    pub fn route<'a>(&self, decision_id: &'a str) -> Route<'a> {
        match decision_id.split_once(OWNER_SEP) {
            Some((owner, rest)) if validate_replica_id(owner).is_ok() && !rest.is_empty() => {
                if owner == self.opts.replica_id {
                    Route::Local(rest)
                } else {
                    Route::Owner(owner)
                }
            }
            _ => Route::Unowned(decision_id),
        }
    }

    /// Learns a reward wherever its decision was made. `forwarded`: this
    /// call was forwarded by another replica (never forwarded again);
    /// `token`: the caller's `authorization` value, passed on.
    pub async fn reward(
        &self,
        decision_id: &str,
        slot: usize,
        value: f64,
        forwarded: bool,
        token: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<RewardOutcome> {
        match self.route(decision_id) {
            Route::Local(id) => self.engine.reward_slot(id, slot, value),
            Route::Owner(_) if forwarded => {
                Err(Error::NotFound(format!("decision {decision_id:?}")))
            }
            Route::Owner(owner) => self.forward(owner, decision_id, slot, value, token).await,
            Route::Unowned(id) => match self.engine.reward_slot(id, slot, value) {
                Err(Error::NotFound(m)) if !forwarded => {
                    // A replica that joined since the last pull may hold it.
                    let complete = self.refresh_peers().await;
                    let peers: Vec<String> = self
                        .sync
                        .lock()
                        .peers
                        .keys()
                        .filter(|p| **p != self.opts.replica_id)
                        .cloned()
                        .collect();
                    let mut unreachable = None;
                    for peer in peers {
                        match self.forward(&peer, id, slot, value, token).await {
                            Err(Error::NotFound(_)) => {}
                            Err(Error::ReplicaUnavailable(m)) => unreachable = Some(m),
                            other => return other,
                        }
                    }
                    Err(match unreachable {
                        Some(m) => Error::ReplicaUnavailable(m),
                        None if !complete => Error::ReplicaUnavailable(format!(
                            "{m} on the replicas known here, and redis (which lists the others) did not answer; retry later"
                        )),
                        None => Error::NotFound(m.trim_end_matches(" not found").to_string()),
                    })
                }
                other => other,
            },
        }
    }

    fn channel(&self, owner: &str) -> Result<tonic::transport::Channel> {
        if let Some(c) = self.channels.lock().get(owner) {
            return Ok(c.clone());
        }
        let unknown = || {
            Error::ReplicaUnavailable(format!(
                "the replica that made this decision ({owner}) is not registered; retry later"
            ))
        };
        let url = {
            let sync = self.sync.lock();
            match sync.peers.get(owner) {
                Some(u) => u.clone(),
                // Replicas stay registered: one Redis has never seen made
                // no decision (unless this replica has not pulled yet).
                None if sync.epoch.is_some() => {
                    return Err(Error::NotFound(format!("replica {owner:?}")))
                }
                None => return Err(unknown()),
            }
        };
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(url.clone()).map_err(|_| unknown())?;
        if url.starts_with("https://") {
            // A peer serving TLS is verified against the system's roots.
            endpoint = endpoint
                .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
                .map_err(|_| unknown())?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(1))
            .timeout(FORWARD_TIMEOUT)
            .connect_lazy();
        self.channels
            .lock()
            .insert(owner.to_string(), channel.clone());
        Ok(channel)
    }

    async fn forward(
        &self,
        owner: &str,
        decision_id: &str,
        slot: usize,
        value: f64,
        token: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<RewardOutcome> {
        let mut channel = self.channel(owner);
        if channel.is_err() {
            // It may have joined since the last pull; if Redis cannot say,
            // an unknown replica is not proof that the decision is unknown.
            if self.refresh_peers().await {
                channel = self.channel(owner);
            } else if let Err(Error::NotFound(_)) = channel {
                return Err(Error::ReplicaUnavailable(format!(
                    "the replica that made this decision ({owner}) is not known here and redis (which lists the replicas) did not answer; retry later"
                )));
            }
        }
        let channel = match channel {
            Err(Error::NotFound(_)) => {
                return Err(Error::NotFound(format!("decision {decision_id:?}")))
            }
            other => other?,
        };
        let mut client = crate::api::pb::bandit_client::BanditClient::new(channel);
        let mut req = tonic::Request::new(crate::api::pb::RewardRequest {
            decision_id: decision_id.to_string(),
            value,
            slot: slot as u32,
        });
        if let Ok(me) = self.opts.replica_id.parse() {
            req.metadata_mut().insert(FORWARDED_HEADER, me);
        }
        if let Some(t) = token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        match client.reward(req).await {
            Ok(r) => Ok(if r.into_inner().duplicate {
                RewardOutcome::Duplicate
            } else {
                RewardOutcome::Learned
            }),
            Err(s) => {
                use tonic::Code;
                let m = s.message().to_string();
                Err(match s.code() {
                    Code::NotFound => Error::NotFound(format!("decision {decision_id:?}")),
                    Code::InvalidArgument => Error::InvalidArgument(m),
                    Code::FailedPrecondition => Error::FailedPrecondition(m),
                    Code::ResourceExhausted => Error::ResourceExhausted(m),
                    code => {
                        self.channels.lock().remove(owner);
                        tracing::warn!(owner, ?code, message = %m, "forwarded reward failed");
                        Error::ReplicaUnavailable(format!(
                            "the replica that made this decision ({owner}) did not answer ({code:?}); retry later"
                        ))
                    }
                })
            }
        }
    }
}

/// Applies Redis's definitions to the engine; returns what is now applied
/// (id → gen, version). A local campaign Redis does not have is deleted.
fn apply_definitions(
    engine: &Engine,
    known: &BTreeMap<String, (u64, u64)>,
    records: &[(String, Record)],
) -> BTreeMap<String, (u64, u64)> {
    let mut applied = BTreeMap::new();
    let remote: std::collections::BTreeSet<&str> =
        records.iter().map(|(id, _)| id.as_str()).collect();
    for spec in engine.list_campaigns() {
        if !remote.contains(spec.id.as_str()) {
            match engine.delete_campaign(&spec.id) {
                Ok(()) => {
                    tracing::info!(campaign = %spec.id, "campaign deleted on another replica: deleted here")
                }
                Err(e) => {
                    tracing::warn!(campaign = %spec.id, error = %e, "could not delete a campaign deleted elsewhere")
                }
            }
        }
    }
    for (id, rec) in records {
        if rec.spec.id != *id {
            continue;
        }
        let current = known.get(id).copied();
        if current == Some((rec.gen, rec.version)) {
            applied.insert(id.clone(), (rec.gen, rec.version));
            continue;
        }
        let local = engine.get_campaign(id).ok();
        let keep = match (&local, current) {
            (Some(_), Some((gen, _))) if gen == rec.gen => true,
            (Some(l), None) => compatible(l, &rec.spec),
            _ => false,
        };
        let result = match local {
            Some(l) if keep => sync_arms(engine, &l, &rec.spec),
            Some(_) => engine
                .delete_campaign(id)
                .and_then(|()| engine.create_campaign(rec.spec.clone()).map(|_| ())),
            None => engine.create_campaign(rec.spec.clone()).map(|_| ()),
        };
        match result {
            Ok(()) => {
                applied.insert(id.clone(), (rec.gen, rec.version));
            }
            Err(e) => {
                tracing::warn!(campaign = %id, error = %e, "campaign definition not applied; retried at the next pull")
            }
        }
    }
    applied
}

/// Adds the arms `target` has beyond `local`'s and retires those it retired.
fn sync_arms(engine: &Engine, local: &CampaignSpec, target: &CampaignSpec) -> Result<()> {
    let new: Vec<ArmSpec> = target
        .arms
        .iter()
        .filter(|a| local.arm_index(&a.id).is_none())
        .map(|a| ArmSpec {
            id: a.id.clone(),
            retired: false,
            ..ArmSpec::default()
        })
        .collect();
    if !new.is_empty() {
        engine.add_arms(&local.id, new)?;
    }
    for arm in target.arms.iter().filter(|a| a.retired) {
        let here = local.arm_index(&arm.id).map(|i| local.arms[i].retired);
        if here != Some(true) {
            engine.retire_arm(&local.id, &arm.id)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, f64)]) -> Totals {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    // Only what differs is shipped, and a field that went away ships as 0.
    #[test]
    fn changes_are_the_differing_fields_and_vanished_ones_as_zero() {
        let local = t(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
        let shipped = t(&[("a", 1.0), ("b", 1.0), ("d", 4.0)]);
        let mut c = changes(&local, &shipped);
        c.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            c,
            vec![("b".into(), 2.0), ("c".into(), 3.0), ("d".into(), 0.0)]
        );
        assert!(changes(&local, &local).is_empty());
    }

    #[test]
    fn others_are_merged_less_own() {
        let merged = t(&[("a", 5.0), ("b", 2.0)]);
        let own = t(&[("a", 2.0), ("b", 2.0)]);
        assert_eq!(others(&merged, &own), t(&[("a", 3.0)]));
    }

    #[test]
    fn replica_ids_and_routes() {
        assert!(validate_replica_id("r-1_a").is_ok());
        assert!(validate_replica_id("").is_err());
        assert!(validate_replica_id("r 1").is_err());
        assert!(validate_replica_id(&"x".repeat(65)).is_err());
    }
}
