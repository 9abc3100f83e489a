//! Runs strategies over customer streams and keeps the metrics.
//!
//! Owns the event loop of one (run, strategy) pair (simulated time,
//! delayed conversion reports, the engine's timeouts), the per-bucket and
//! per-segment metrics, and the parallel schedule of runs across cores
//! (`std::thread::scope`, one engine per run and strategy). It does not
//! format anything (see `report`) and does not decide (see `strategy`).

use super::abrun::AbUnit;
use super::population::Population;
use super::scenario::Scenario;
use super::strategy::{argmax, top_offers, AbPlans, Decider, Setup, StrategyKind};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Options of a simulation.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub runs: usize,
    pub seed: u64,
    pub strategies: Vec<StrategyKind>,
    /// Minimum detectable relative lift for the A/B test's power calculation.
    pub mde: f64,
    /// Threads to use (0 = one per core).
    pub threads: usize,
    /// Write each strategy's decision log of each run into this folder as
    /// `STRATEGY-runNN.dsjson` (the daemon's export format).
    pub decision_log: Option<std::path::PathBuf>,
}

/// Metrics of one time bucket.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub customers: u64,
    pub conversions: u64,
    pub revenue: f64,
    /// Σ p(chosen offer).
    pub expected: f64,
    /// Σ p(oracle offer) − p(chosen offer).
    pub regret: f64,
    pub offer_counts: Vec<u64>,
    /// Per offer: Σ p(offer) over the bucket's customers (had everyone been
    /// shown that offer).
    pub offer_expected: Vec<f64>,
}

/// Metrics of one segment over the whole run.
#[derive(Debug, Clone, Default)]
pub struct SegmentOutcome {
    pub customers: u64,
    pub conversions: u64,
    pub regret: f64,
}

/// Customers, conversions and revenue of one side of a holdout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Side {
    pub customers: u64,
    pub conversions: u64,
    pub revenue: f64,
}

impl Side {
    pub fn rate(&self) -> f64 {
        if self.customers > 0 {
            self.conversions as f64 / self.customers as f64
        } else {
            0.0
        }
    }

    pub fn revenue_per_customer(&self) -> f64 {
        if self.customers > 0 {
            self.revenue / self.customers as f64
        } else {
            0.0
        }
    }
}

/// One strategy over one run.
#[derive(Debug, Clone, Default)]
pub struct RunMetrics {
    pub buckets: Vec<Bucket>,
    pub segments: Vec<SegmentOutcome>,
    /// The A/B tests (one per unit; empty for a bandit).
    pub ab: Vec<AbUnit>,
    /// Per offer, Σ over the run's customers of P(a conversion the engine
    /// learns of | this offer): the true probability when the customer's
    /// conversion delay falls inside the attribution window, else 0 (the
    /// reward a decision log records).
    pub reportable: Vec<f64>,
    /// Σ over the run's customers of their best offer's probability.
    pub oracle_expected: f64,
    /// Per segment and offer: Σ p over the segment's customers.
    pub segment_true: Vec<Vec<f64>>,
    /// Customers and conversions of the holdout's decisions, and of the
    /// policy's (campaigns with a holdout).
    pub holdout: Side,
    pub policy: Side,
    /// Per offer: conversions the engine learned of (inside the
    /// attribution window: what a conversion cap counts).
    pub offer_reported: Vec<u64>,
}

impl RunMetrics {
    pub fn total(&self) -> Bucket {
        let mut t = Bucket::default();
        for b in &self.buckets {
            t.customers += b.customers;
            t.conversions += b.conversions;
            t.revenue += b.revenue;
            t.expected += b.expected;
            t.regret += b.regret;
        }
        t
    }
}

/// Everything a simulation produced: `runs[strategy][run]`.
#[derive(Debug, Clone)]
pub struct SimResults {
    pub strategies: Vec<StrategyKind>,
    pub runs: Vec<Vec<RunMetrics>>,
    /// Customers per bucket (the last may hold fewer).
    pub bucket_size: u64,
    pub baseline_rate: f64,
    /// The A/B designs' plans (when an A/B design ran).
    pub plans: Option<AbPlans>,
    /// The offer with the best mean true rate over the whole horizon, per run.
    pub true_best: Vec<usize>,
    /// Per run: expected conversions of showing everyone, in each time
    /// bucket, that bucket's best offer (one offer for all at any moment,
    /// however it changes over time), and of showing each customer their own
    /// best offer (the oracle). Their difference is what personalisation can
    /// add, with the gains from following change over time left out.
    pub single_best_expected: Vec<f64>,
    pub oracle_expected: Vec<f64>,
    /// The seed of each run.
    pub seeds: Vec<u64>,
    /// Offers on each customer's page (the scenario's `slots`).
    pub slots: usize,
}

/// Buckets over the horizon in metrics and charts.
pub const BUCKETS: u64 = 60;

/// Seed of run `r` (splitmix64 of seed and run).
pub fn run_seed(seed: u64, run: usize) -> u64 {
    let mut z = seed
        ^ (run as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(0x1234_5678);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A conversion to report: (report time, customer number, decision id, slot).
type Conversion = Reverse<(u64, u64, Arc<str>, usize)>;

/// Runs one strategy over one run's customer stream; also returns the
/// Σ true p per offer (to name the true best offer).
/// With `log`, the strategy's decision log is written there (DSJSON, as
/// `banditd log export` writes it).
pub fn run_one(
    setup: &Setup,
    kind: StrategyKind,
    seed: u64,
    log: Option<&std::path::Path>,
) -> Result<(RunMetrics, Vec<f64>), crate::Error> {
    let s = setup.scenario;
    let pop = Population::new(s);
    let k = s.offers.len();
    let total = s.total_customers();
    let bucket_size = total.div_ceil(BUCKETS).max(1);
    let mut m = RunMetrics {
        buckets: vec![
            Bucket {
                offer_counts: vec![0; k],
                offer_expected: vec![0.0; k],
                ..Bucket::default()
            };
            total.div_ceil(bucket_size) as usize
        ],
        segments: vec![SegmentOutcome::default(); s.segments.len()],
        ab: Vec::new(),
        reportable: vec![0.0; k],
        oracle_expected: 0.0,
        segment_true: vec![vec![0.0; k]; s.segments.len()],
        holdout: Side::default(),
        policy: Side::default(),
        offer_reported: vec![0; k],
    };
    let strategy_seed = run_seed(seed, 1000 + kind as usize);
    let mut decider = Decider::new(kind, setup, strategy_seed, log.is_some())?;
    let window_ms = u64::from(s.delay.attribution_window_minutes) * 60_000;
    let slots = s.campaign.slots;
    let mut attention_desc = s.campaign.slot_attention.clone();
    attention_desc.sort_by(|a, b| b.total_cmp(a));
    // Only conversions are reported; the engine learns a non-conversion when
    // its reward timeout passes.
    let mut conversions: BinaryHeap<Conversion> = BinaryHeap::new();
    let mut probs = Vec::with_capacity(k);
    let mut true_sum = vec![0.0; k];
    let mut last_t = 0;
    for (seq, c) in pop.stream(seed).enumerate() {
        while conversions.peek().is_some_and(|e| e.0 .0 <= c.t_ms) {
            if let Some(Reverse((due, _, id, slot))) = conversions.pop() {
                decider.advance(due.max(last_t))?;
                decider.convert(&id, slot)?;
            }
        }
        decider.advance(c.t_ms)?;
        last_t = c.t_ms;
        pop.probabilities(&c, &mut probs);
        for (t, p) in true_sum.iter_mut().zip(&probs) {
            *t += p;
        }
        if c.delay_ms <= window_ms {
            for (t, p) in m.reportable.iter_mut().zip(&probs) {
                *t += p;
            }
        }
        let pick = decider.choose(setup, &c, &probs)?;
        // The best page the true rates allow: the likeliest offers in the
        // slots most looked at (one offer: the best one).
        let best = if slots == 1 {
            probs[argmax(&probs)]
        } else {
            top_offers(&probs, slots)
                .iter()
                .zip(&attention_desc)
                .map(|(&o, a)| a * probs[o])
                .sum()
        };
        m.oracle_expected += best;
        for (t, q) in m.segment_true[c.segment].iter_mut().zip(&probs) {
            *t += q;
        }
        // Slot 0 converts on the customer's coin (a page of one offer is
        // the single-offer model exactly); the other slots on coins of
        // their own, drawn with whether the customer looks at the slot.
        let mut page_rng = (slots > 1).then(|| {
            <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(
                c.index ^ seed.rotate_left(17) ^ 0x5107_5107,
            )
        });
        let (mut expected, mut converted_n, mut revenue) = (0.0, 0u64, 0.0);
        let b = &mut m.buckets[(c.index / bucket_size) as usize];
        for (slot, &offer) in pick.slate.iter().enumerate() {
            let attention = s.campaign.slot_attention.get(slot).copied().unwrap_or(1.0);
            let p = probs[offer];
            let converted = match page_rng.as_mut() {
                None => c.u < p,
                Some(r) => {
                    let looks = rand::Rng::random::<f64>(r) < attention;
                    let u = if slot == 0 {
                        c.u
                    } else {
                        rand::Rng::random::<f64>(r)
                    };
                    looks && u < p
                }
            };
            expected += attention * p;
            b.offer_counts[offer] += 1;
            if converted {
                converted_n += 1;
                revenue += s.offers[offer].revenue.unwrap_or(0.0);
            }
            if converted && c.delay_ms <= window_ms && pick.decision.is_some() {
                m.offer_reported[offer] += 1;
            }
            if let (true, Some(id)) = (converted && c.delay_ms <= window_ms, &pick.decision) {
                conversions.push(Reverse((c.t_ms + c.delay_ms, seq as u64, id.clone(), slot)));
            }
        }
        b.customers += 1;
        b.conversions += converted_n;
        b.expected += expected;
        b.regret += best - expected;
        for (t, q) in b.offer_expected.iter_mut().zip(&probs) {
            *t += q;
        }
        b.revenue += revenue;
        let side = if pick.holdout {
            &mut m.holdout
        } else {
            &mut m.policy
        };
        side.customers += 1;
        side.conversions += converted_n;
        side.revenue += revenue;
        let so = &mut m.segments[c.segment];
        so.customers += 1;
        so.conversions += converted_n;
        so.regret += best - expected;
    }
    while let Some(Reverse((due, _, id, slot))) = conversions.pop() {
        decider.advance(due.max(last_t))?;
        decider.convert(&id, slot)?;
    }
    // Let the last attribution window close (the A/B test may conclude).
    decider.horizon_ends(last_t);
    decider.advance(last_t + window_ms + 60_000)?;
    m.ab = decider.ab_units();
    if let Some(path) = log {
        decider.write_log(path)?;
    }
    Ok((m, true_sum))
}

/// One run of one strategy whose decision log is written to `log`;
/// returns the true value of always showing each offer, averaged over the
/// run's customers, in the log's terms (a conversion the engine learns of:
/// see [`RunMetrics::reportable`]): what an off-policy estimate from the
/// log should find.
pub fn run_logged(
    scenario: &Scenario,
    kind: StrategyKind,
    seed: u64,
    log: &std::path::Path,
) -> Result<Vec<f64>, crate::Error> {
    let setup = Setup::new(scenario, 0.1);
    let (m, _) = run_one(&setup, kind, seed, Some(log))?;
    let n = scenario.total_customers().max(1) as f64;
    Ok(m.reportable.iter().map(|t| t / n).collect())
}

type JobResult = Result<(RunMetrics, Vec<f64>), crate::Error>;

/// Runs every strategy `runs` times, in parallel across cores.
pub fn simulate(scenario: &Scenario, opts: &SimOptions) -> Result<SimResults, crate::Error> {
    if let Some(k) = opts.strategies.iter().find(|k| k.design().is_some()) {
        if scenario.campaign.slots > 1 {
            return Err(crate::Error::InvalidArgument(format!(
                "strategy {} is an A/B design, which shows one offer per customer; scenario {:?} fills pages of {} slots (leave the A/B designs out)",
                k.key(),
                scenario.name,
                scenario.campaign.slots
            )));
        }
    }
    let setup = Setup::new(scenario, opts.mde);
    let baseline_rate = setup.baseline_rate;
    let jobs: Vec<(usize, usize)> = (0..opts.runs)
        .flat_map(|r| (0..opts.strategies.len()).map(move |s| (r, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<JobResult>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    }
    .min(jobs.len().max(1));
    let tty = std::io::stderr().is_terminal();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(run, si)) = jobs.get(i) else { break };
                    let kind = opts.strategies[si];
                    let log = opts
                        .decision_log
                        .as_ref()
                        .map(|dir| dir.join(format!("{}-run{:02}.dsjson", kind.key(), run + 1)));
                    let out = run_one(&setup, kind, run_seed(opts.seed, run), log.as_deref());
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(out);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        progress(tty, jobs.len(), &done, || {
            workers.iter().all(|w| w.is_finished())
        });
    });
    let results = results
        .into_inner()
        .map_err(|_| crate::Error::InvalidArgument("a simulation thread panicked".into()))?;
    let mut runs = vec![Vec::with_capacity(opts.runs); opts.strategies.len()];
    let mut true_best = vec![0; opts.runs];
    let mut single_best_expected = vec![0.0; opts.runs];
    let mut oracle_expected = vec![0.0; opts.runs];
    for (&(run, si), r) in jobs.iter().zip(results) {
        let (m, true_sum) =
            r.ok_or_else(|| crate::Error::InvalidArgument("a simulation thread panicked".into()))??;
        true_best[run] = argmax(&true_sum);
        single_best_expected[run] = m
            .buckets
            .iter()
            .map(|b| best_fixed_page(&b.offer_expected, &scenario.campaign.slot_attention))
            .sum();
        oracle_expected[run] = m.oracle_expected;
        runs[si].push(m);
    }
    let total = scenario.total_customers();
    Ok(SimResults {
        strategies: opts.strategies.clone(),
        runs,
        bucket_size: total.div_ceil(BUCKETS).max(1),
        baseline_rate,
        plans: setup.plans_if_made().cloned(),
        true_best,
        single_best_expected,
        oracle_expected,
        seeds: (0..opts.runs).map(|r| run_seed(opts.seed, r)).collect(),
        slots: scenario.campaign.slots,
    })
}

/// Expected conversions of the best page for everyone from per-offer
/// expected conversions `e`: the best offer (one slot), or the likeliest
/// offers in the slots most looked at.
fn best_fixed_page(e: &[f64], attention: &[f64]) -> f64 {
    if attention.len() <= 1 {
        return e.iter().copied().fold(0.0, f64::max);
    }
    let mut a = attention.to_vec();
    a.sort_by(|x, y| y.total_cmp(x));
    top_offers(e, a.len())
        .iter()
        .zip(&a)
        .map(|(&o, w)| w * e[o])
        .sum()
}

/// A progress bar on the terminal once the simulation has taken a second
/// (none when stderr is not a terminal); returns when `finished` says so.
fn progress(tty: bool, jobs: usize, done: &AtomicUsize, finished: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    while !finished() {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if !tty || started.elapsed() < std::time::Duration::from_secs(1) {
            continue;
        }
        let b = bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(jobs as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "simulating {bar:40} {pos}/{len} runs × strategies, {elapsed} (about {eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        b.set_position(done.load(Ordering::Relaxed) as u64);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
