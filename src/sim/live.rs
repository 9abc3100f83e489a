//! Live mode: the scenario's synthetic customers as real traffic against
//! one running daemon or several replicas, over the gRPC API.
//!
//! Creates a Thompson-per-segment campaign for the scenario on the first
//! target (and waits until every target knows it), sends each customer
//! through `Choose` (with its segment; targets taken in turn, as a
//! round-robin load balancer would), decides the conversion with the
//! customer's coin (`u < p(offer)`) and, for a conversion inside the
//! attribution window, sends `Reward(1)` to a target drawn at random after
//! the scenario's delay divided by `speedup`. Non-conversions are never
//! reported: the daemon learns its default reward (0) at the timeout, as
//! it would from a real ad server.
//!
//! Every Choose carries an idempotency key (a caller-chosen decision id),
//! so a call whose answer was lost — its replica killed, the connection
//! reset — is retried on the same target until it answers, and counts
//! exactly once either way; a reward whose outcome is unknown is retried
//! (on a random target again) until it is learned or refused. At the end
//! every target's `GetStats` is compared, per segment and offer, with what
//! was acknowledged, waiting (up to a bound) for replicas to converge, and
//! the expected regret against the best offer for each customer is
//! reported. Only loopback targets are accepted: this is a test and load
//! tool, not a traffic source for other machines.

use super::population::Population;
use super::scenario::Scenario;
use crate::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// (segment, offer); the segment `""` is the campaign-wide sum.
pub type Cell = (String, String);

/// How to drive the daemon.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// `http://127.x.x.x:PORT` or `http://localhost:PORT` (`https://` for
    /// TLS), with its CA and token: one daemon, or the replicas of one.
    pub targets: Vec<crate::client::Connect>,
    /// Choose calls in flight at once.
    pub concurrency: usize,
    /// Customers per second, or as fast as possible.
    pub rate: Option<f64>,
    /// Simulated time runs this many times faster than real time (delays and the timeout).
    pub speedup: f64,
    pub seed: u64,
    /// How long a call whose outcome is unknown is retried before it
    /// counts as an error.
    pub retry_for: Duration,
    /// How long replicas may take to agree with what was sent at the end.
    pub settle_for: Duration,
}

impl LiveOptions {
    /// Options for `targets` with the CLI's defaults.
    pub fn new(targets: Vec<crate::client::Connect>) -> Self {
        LiveOptions {
            targets,
            concurrency: 32,
            rate: None,
            speedup: 3600.0,
            seed: 1,
            retry_for: Duration::from_secs(30),
            settle_for: Duration::from_secs(10),
        }
    }
}

/// One target's view at the end.
#[derive(Debug, Clone, Default)]
pub struct TargetView {
    pub target: String,
    /// Per (segment, offer): (pulls, reward_sum).
    pub stats: BTreeMap<Cell, (u64, f64)>,
    /// How long after the traffic ended its statistics agreed with what
    /// was sent (`None`: not within `settle_for`).
    pub agreed_after: Option<Duration>,
}

/// What live mode sent and what the daemon reports.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    pub campaign_id: String,
    pub customers: u64,
    /// Calls that failed for good (refused, or unanswered within `retry_for`).
    pub errors: u64,
    /// Attempts that were retried (their first answer was lost).
    pub retries: u64,
    /// The failed calls by status code.
    pub refused: BTreeMap<String, u64>,
    /// Per (segment, offer), and per ("", offer) for the campaign:
    /// (decisions received, rewards acknowledged).
    pub sent: BTreeMap<Cell, (u64, u64)>,
    /// The first target's view (kept for one-daemon runs).
    pub daemon: BTreeMap<Cell, (u64, f64)>,
    pub views: Vec<TargetView>,
    /// Σ over customers of (best offer's rate − the chosen offer's rate).
    pub regret: f64,
    pub elapsed: Duration,
    /// Choose latency percentiles (first attempts).
    pub p50: Duration,
    pub p99: Duration,
}

fn agree(sent: &BTreeMap<Cell, (u64, u64)>, stats: &BTreeMap<Cell, (u64, f64)>) -> bool {
    sent.iter().all(|(cell, &(n, r))| {
        stats
            .get(cell)
            .is_some_and(|&(pulls, sum)| pulls == n && sum == r as f64)
    })
}

impl LiveReport {
    /// True when every target counted exactly what was sent.
    pub fn agrees(&self) -> bool {
        !self.views.is_empty() && self.views.iter().all(|v| agree(&self.sent, &v.stats))
    }

    pub fn summary(&self) -> String {
        let campaign: Vec<(&String, &(u64, u64))> = self
            .sent
            .iter()
            .filter(|((seg, _), _)| seg.is_empty())
            .map(|((_, arm), v)| (arm, v))
            .collect();
        let total: u64 = campaign.iter().map(|(_, v)| v.0).sum();
        let rewards: u64 = campaign.iter().map(|(_, v)| v.1).sum();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "Live run against campaign {} on {} target(s): {} customers in {:.1} s ({:.0} Choose/s), Choose latency p50 {:?}, p99 {:?}, {} errors, {} retried calls.\n",
            self.campaign_id, self.views.len(), self.customers, secs, total as f64 / secs, self.p50, self.p99, self.errors, self.retries
        );
        for (what, n) in &self.refused {
            out.push_str(&format!("  failed: {what} ×{n}\n"));
        }
        out.push_str(&format!(
            "{:<28} {:>10} {:>12} {:>14} {:>16}\n",
            "offer", "sent", "conversions", "daemon pulls", "daemon rewards"
        ));
        for (arm, (n, r)) in &campaign {
            let (pulls, sum) = self
                .daemon
                .get(&(String::new(), (*arm).clone()))
                .copied()
                .unwrap_or_default();
            out.push_str(&format!(
                "{arm:<28} {n:>10} {r:>12} {pulls:>14} {sum:>16.0}\n"
            ));
        }
        out.push_str(&format!(
            "{} conversions reported ({:.3}% of customers); expected regret {:.1} conversions ({:.3} per 1,000 customers).\n",
            rewards,
            100.0 * rewards as f64 / total.max(1) as f64,
            self.regret,
            1000.0 * self.regret / (self.customers.max(1) as f64),
        ));
        for v in &self.views {
            out.push_str(&format!(
                "{}: {}\n",
                v.target,
                match v.agreed_after {
                    Some(d) => format!(
                        "agrees with what was sent in every segment and offer ({:.2} s after the traffic ended)",
                        d.as_secs_f64()
                    ),
                    None => "DOES NOT agree with what was sent".to_string(),
                }
            ));
        }
        out
    }
}

fn check_target(target: &str) -> Result<(), String> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .ok_or_else(|| format!("--target {target:?}: expected http://127.0.0.1:PORT"))?;
    if rest.starts_with("127.") || rest.starts_with("localhost:") || rest.starts_with("[::1]:") {
        Ok(())
    } else {
        Err(format!(
            "--target {target:?}: live mode only sends traffic to loopback addresses"
        ))
    }
}

/// Whether an error leaves the call's outcome unknown (retry it) rather
/// than refused for good.
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
    )
}

type Conn = crate::client::Conn;

/// Calls `f` until it answers for good or `retry_for` has passed; returns
/// the answer and how many attempts were retried.
async fn with_retries<T, F, Fut>(retry_for: Duration, mut f: F) -> (Result<T, tonic::Status>, u64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + retry_for;
    let mut attempt = 0u64;
    let mut backoff = Duration::from_millis(50);
    loop {
        match f(attempt).await {
            Err(s) if retryable(s.code()) && Instant::now() < deadline => {
                attempt += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            other => return (other, attempt),
        }
    }
}

/// Every target's statistics per (segment, offer).
async fn view(conn: &Conn, campaign_id: &str) -> Result<BTreeMap<Cell, (u64, f64)>, String> {
    let stats = CampaignsClient::new(conn.clone())
        .get_stats(pb::GetStatsRequest {
            campaign_id: campaign_id.to_string(),
            segment: String::new(),
        })
        .await
        .map_err(|s| format!("GetStats failed: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(stats
        .segments
        .into_iter()
        .flat_map(|seg| {
            seg.arms
                .into_iter()
                .map(move |a| ((seg.segment.clone(), a.arm_id), (a.pulls, a.reward_sum)))
        })
        .collect())
}

/// Runs the scenario's customers against the daemon(s) at `opts.targets`.
pub async fn run_live(scenario: &Scenario, opts: &LiveOptions) -> Result<LiveReport, String> {
    if opts.targets.is_empty() {
        return Err("--target: give at least one".into());
    }
    for t in &opts.targets {
        check_target(&t.target)?;
    }
    if !(opts.speedup.is_finite() && opts.speedup >= 1.0) {
        return Err("--speedup: must be a number ≥ 1".into());
    }
    if !(1..=10_000).contains(&opts.concurrency) {
        return Err("--concurrency: must be in 1..=10000".into());
    }
    let mut conns = Vec::with_capacity(opts.targets.len());
    for t in &opts.targets {
        conns.push(t.connect().await.map_err(|e| e.to_string())?);
    }
    let conns: Arc<[Conn]> = conns.into();
    let safe: String = scenario
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    let campaign_id = format!("sim-{safe}-{}-{}", opts.seed, std::process::id());
    let window_s = f64::from(scenario.delay.attribution_window_minutes) * 60.0;
    let timeout_s = (window_s / opts.speedup).ceil().clamp(1.0, 30.0 * 86_400.0) as u32;
    let mut admin = CampaignsClient::new(conns[0].clone());
    admin
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(pb::Campaign {
                id: campaign_id.clone(),
                arms: scenario
                    .offers
                    .iter()
                    .map(|o| pb::Arm {
                        id: o.id.clone(),
                        retired: false,
                        ..Default::default()
                    })
                    .collect(),
                policy: Some(pb::campaign::Policy::Thompson(pb::ThompsonSampling {
                    segment_prior_strength: scenario.campaign.pooling.and_then(|p| p.strength()),
                    exploration_floor: scenario.campaign.exploration_floor,
                    ..pb::ThompsonSampling::default()
                })),
                reward_timeout_seconds: timeout_s,
                default_reward: 0.0,
                // Simulated time runs `speedup` times faster.
                decay_half_life_seconds: scenario
                    .campaign
                    .decay_half_life_seconds
                    .map(|h| ((f64::from(h) / opts.speedup).ceil() as u32).max(60)),
                holdout_fraction: 0.0,
            }),
        })
        .await
        .map_err(|s| format!("CreateCampaign failed: {:?}: {}", s.code(), s.message()))?;
    // Replicas learn of a new campaign at their next sync.
    for (t, conn) in opts.targets.iter().zip(conns.iter()) {
        let deadline = Instant::now() + opts.settle_for;
        loop {
            let known = CampaignsClient::new(conn.clone())
                .get_campaign(pb::GetCampaignRequest {
                    campaign_id: campaign_id.clone(),
                })
                .await;
            match known {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => {
                    return Err(format!(
                        "{}: the campaign did not arrive: {:?}: {}",
                        t.target,
                        s.code(),
                        s.message()
                    ))
                }
            }
        }
    }

    let population = Population::new(scenario);
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let sent: Arc<Mutex<BTreeMap<Cell, (u64, u64)>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let regret = Arc::new(Mutex::new(0.0f64));
    let refused: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let mut customers = 0u64;
    let mut probs = Vec::new();
    let offers: Arc<[String]> = scenario.offers.iter().map(|o| o.id.clone()).collect();
    for customer in population
        .stream(opts.seed)
        .take(scenario.total_customers() as usize)
    {
        if let Some(rate) = opts.rate {
            let due = start + Duration::from_secs_f64(customers as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        customers += 1;
        population.probabilities(&customer, &mut probs);
        let probs = probs.clone();
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let refused = refused.clone();
        let (sent, latencies, errors, retries, regret) = (
            sent.clone(),
            latencies.clone(),
            errors.clone(),
            retries.clone(),
            regret.clone(),
        );
        let conns = conns.clone();
        let offers = offers.clone();
        let campaign_id = campaign_id.clone();
        let segment = scenario.segments[customer.segment].name.clone();
        let delay = Duration::from_secs_f64(customer.delay_ms as f64 / 1000.0 / opts.speedup);
        let in_window = customer.delay_ms as f64 <= window_s * 1000.0;
        let retry_for = opts.retry_for;
        let index = customer.index;
        let seed = opts.seed;
        tasks.spawn(async move {
            use std::sync::atomic::Ordering::Relaxed;
            let target = (index % conns.len() as u64) as usize;
            let request = pb::ChooseRequest {
                campaign_id,
                segment: segment.clone(),
                decision_id: format!("c-{index}"),
                ..Default::default()
            };
            let t0 = Instant::now();
            let (reply, retried) = with_retries(retry_for, |attempt| {
                let mut bandit = BanditClient::new(conns[target].clone());
                let request = request.clone();
                let latencies = latencies.clone();
                async move {
                    let r = bandit.choose(request).await;
                    if attempt == 0 {
                        latencies.lock().await.push(t0.elapsed());
                    }
                    r
                }
            })
            .await;
            drop(permit);
            retries.fetch_add(retried, Relaxed);
            let reply = match reply {
                Ok(r) => r,
                Err(s) => {
                    errors.fetch_add(1, Relaxed);
                    *refused
                        .lock()
                        .await
                        .entry(format!("Choose {:?}", s.code()))
                        .or_default() += 1;
                    return;
                }
            };
            let d = reply.into_inner();
            let chosen = offers.iter().position(|o| *o == d.arm_id);
            let converts = chosen.is_some_and(|i| customer.u < probs[i]);
            if let Some(i) = chosen {
                let best = probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                *regret.lock().await += best - probs[i];
            }
            {
                let mut sent = sent.lock().await;
                sent.entry((segment.clone(), d.arm_id.clone()))
                    .or_default()
                    .0 += 1;
                sent.entry((String::new(), d.arm_id.clone())).or_default().0 += 1;
            }
            if !(converts && in_window) {
                return;
            }
            tokio::time::sleep(delay).await;
            let mut rng = rand::rngs::SmallRng::seed_from_u64(
                seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let (acked, retried) = with_retries(retry_for, |_| {
                // A load balancer: any target, a new one on each attempt.
                let mut bandit = BanditClient::new(conns[rng.random_range(0..conns.len())].clone());
                let decision_id = d.decision_id.clone();
                async move {
                    bandit
                        .reward(pb::RewardRequest {
                            decision_id,
                            value: 1.0,
                            slot: 0,
                        })
                        .await
                }
            })
            .await;
            retries.fetch_add(retried, Relaxed);
            match acked {
                // Learned once, now or by an attempt whose answer was lost.
                Ok(_) => {
                    let mut sent = sent.lock().await;
                    sent.entry((segment, d.arm_id.clone())).or_default().1 += 1;
                    sent.entry((String::new(), d.arm_id)).or_default().1 += 1;
                }
                Err(s) => {
                    errors.fetch_add(1, Relaxed);
                    *refused
                        .lock()
                        .await
                        .entry(format!("Reward {:?}", s.code()))
                        .or_default() += 1;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let sent = std::mem::take(&mut *sent.lock().await);

    let settled = Instant::now();
    let mut views = Vec::new();
    for (t, conn) in opts.targets.iter().zip(conns.iter()) {
        let deadline = settled + opts.settle_for;
        loop {
            let stats = view(conn, &campaign_id).await?;
            if agree(&sent, &stats) {
                views.push(TargetView {
                    target: t.target.clone(),
                    stats,
                    agreed_after: Some(settled.elapsed()),
                });
                break;
            }
            if Instant::now() >= deadline {
                views.push(TargetView {
                    target: t.target.clone(),
                    stats,
                    agreed_after: None,
                });
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let regret = *regret.lock().await;
    let refused = std::mem::take(&mut *refused.lock().await);
    Ok(LiveReport {
        campaign_id,
        customers,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        retries: retries.load(std::sync::atomic::Ordering::Relaxed),
        refused,
        daemon: views.first().map(|v| v.stats.clone()).unwrap_or_default(),
        sent,
        views,
        regret,
        elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
    })
}
