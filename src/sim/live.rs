//! Live mode: the scenario's synthetic customers as real traffic against a
//! running daemon, over its gRPC API.
//!
//! Creates a Thompson-per-segment campaign for the scenario on the daemon,
//! sends each customer through `Choose` (with its segment), decides the
//! conversion with the customer's coin (`u < p(offer)`) and, for a
//! conversion inside the attribution window, sends `Reward(1)` after the
//! scenario's delay divided by `speedup`. Non-conversions are never reported:
//! the daemon learns its default reward (0) at the timeout, as it would from
//! a real ad server. At the end the daemon's `GetStats` is compared with what
//! was sent. Only loopback targets are accepted: this is a test and load
//! tool, not a traffic source for other machines.

use super::population::Population;
use super::scenario::Scenario;
use crate::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// How to drive the daemon.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// `http://127.x.x.x:PORT` or `http://localhost:PORT` (`https://` for
    /// TLS), with its CA and token.
    pub target: crate::client::Connect,
    /// Choose calls in flight at once.
    pub concurrency: usize,
    /// Customers per second, or as fast as possible.
    pub rate: Option<f64>,
    /// Simulated time runs this many times faster than real time (delays and the timeout).
    pub speedup: f64,
    pub seed: u64,
}

/// What live mode sent and what the daemon reports.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    pub campaign_id: String,
    pub customers: u64,
    pub errors: u64,
    /// Per arm: (decisions received, rewards acknowledged).
    pub sent: BTreeMap<String, (u64, u64)>,
    /// Per arm, from the daemon's GetStats: (pulls, reward_sum).
    pub daemon: BTreeMap<String, (u64, f64)>,
    pub elapsed: Duration,
    /// Choose latency percentiles.
    pub p50: Duration,
    pub p99: Duration,
}

impl LiveReport {
    /// True when the daemon counted exactly what was sent.
    pub fn agrees(&self) -> bool {
        self.sent.iter().all(|(arm, &(n, r))| {
            self.daemon
                .get(arm)
                .is_some_and(|&(pulls, sum)| pulls == n && sum == r as f64)
        })
    }

    pub fn summary(&self) -> String {
        let total: u64 = self.sent.values().map(|v| v.0).sum();
        let rewards: u64 = self.sent.values().map(|v| v.1).sum();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "Live run against campaign {}: {} customers in {:.1} s ({:.0} Choose/s), Choose latency p50 {:?}, p99 {:?}, {} errors.\n",
            self.campaign_id, self.customers, secs, total as f64 / secs, self.p50, self.p99, self.errors
        );
        out.push_str(&format!(
            "{:<28} {:>10} {:>12} {:>14} {:>16}\n",
            "offer", "sent", "conversions", "daemon pulls", "daemon rewards"
        ));
        for (arm, (n, r)) in &self.sent {
            let (pulls, sum) = self.daemon.get(arm).copied().unwrap_or_default();
            out.push_str(&format!(
                "{arm:<28} {n:>10} {r:>12} {pulls:>14} {sum:>16.0}\n"
            ));
        }
        out.push_str(&format!(
            "{} conversions reported ({:.3}% of customers); the daemon's statistics {} what was sent.\n",
            rewards,
            100.0 * rewards as f64 / total.max(1) as f64,
            if self.agrees() { "agree with" } else { "DO NOT agree with" }
        ));
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

/// Runs the scenario's customers against the daemon at `opts.target`.
pub async fn run_live(scenario: &Scenario, opts: &LiveOptions) -> Result<LiveReport, String> {
    check_target(&opts.target.target)?;
    if !(opts.speedup.is_finite() && opts.speedup >= 1.0) {
        return Err("--speedup: must be a number ≥ 1".into());
    }
    if !(1..=10_000).contains(&opts.concurrency) {
        return Err("--concurrency: must be in 1..=10000".into());
    }
    let channel = opts.target.connect().await.map_err(|e| e.to_string())?;
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
    let mut admin = CampaignsClient::new(channel.clone());
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
            }),
        })
        .await
        .map_err(|s| format!("CreateCampaign failed: {:?}: {}", s.code(), s.message()))?;

    let population = Population::new(scenario);
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let sent: Arc<Mutex<BTreeMap<String, (u64, u64)>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let mut customers = 0u64;
    let mut probs = Vec::new();
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
        let mut bandit = BanditClient::new(channel.clone());
        let (sent, latencies, errors) = (sent.clone(), latencies.clone(), errors.clone());
        let campaign_id = campaign_id.clone();
        let segment = scenario.segments[customer.segment].name.clone();
        let offers: Vec<String> = scenario.offers.iter().map(|o| o.id.clone()).collect();
        let delay = Duration::from_secs_f64(customer.delay_ms as f64 / 1000.0 / opts.speedup);
        let in_window = customer.delay_ms as f64 <= window_s * 1000.0;
        tasks.spawn(async move {
            let t0 = Instant::now();
            let reply = bandit
                .choose(pb::ChooseRequest {
                    campaign_id,
                    segment,
                    ..Default::default()
                })
                .await;
            latencies.lock().await.push(t0.elapsed());
            drop(permit);
            let Ok(reply) = reply else {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let d = reply.into_inner();
            let converts = offers
                .iter()
                .position(|o| *o == d.arm_id)
                .is_some_and(|i| customer.u < probs[i]);
            sent.lock().await.entry(d.arm_id.clone()).or_default().0 += 1;
            if !(converts && in_window) {
                return;
            }
            tokio::time::sleep(delay).await;
            let acked = bandit
                .reward(pb::RewardRequest {
                    decision_id: d.decision_id,
                    value: 1.0,
                })
                .await;
            match acked {
                Ok(_) => sent.lock().await.entry(d.arm_id).or_default().1 += 1,
                Err(_) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();

    let stats = admin
        .get_stats(pb::GetStatsRequest {
            campaign_id: campaign_id.clone(),
            segment: String::new(),
        })
        .await
        .map_err(|s| format!("GetStats failed: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let daemon = stats
        .segments
        .first()
        .map(|all| {
            all.arms
                .iter()
                .map(|a| (a.arm_id.clone(), (a.pulls, a.reward_sum)))
                .collect()
        })
        .unwrap_or_default();
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let sent = std::mem::take(&mut *sent.lock().await);
    Ok(LiveReport {
        campaign_id,
        customers,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        sent,
        daemon,
        elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
    })
}
