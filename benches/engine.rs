//! In-process budgets: Thompson `Choose` (10 arms) ≤ 1 µs, and `Reward`.
//!
//! `policy/*` is the pure sampling math; `engine/*` is the whole engine call
//! (validation, segment lookup, propensity cache, decision log, journal
//! append): `memory` persists nothing (the simulator's engine), `sled`
//! appends every change to the journal, whose writer thread batches it
//! into sled behind the caller's back (its cost shows up on the other
//! core, and in the gRPC load figures). `journal/*` is the writer's side:
//! one batch of 256 decisions and their outcomes, encoded and applied.

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use banditd::engine::{ChooseRequest, Clock, Engine, EngineOptions, VectorMode};
use banditd::error::{Error, Result};
use banditd::policy::prob_best::prob_best;
use banditd::policy::thompson::{sample_argmax, sample_index, with_floor, BetaParams};
use banditd::store::{SledOptions, SledStore, Store};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn campaign() -> CampaignSpec {
    CampaignSpec {
        id: "bench".into(),
        arms: (0..10)
            .map(|i| ArmSpec {
                id: format!("offer-{i}"),
                retired: false,
                ..ArmSpec::default()
            })
            .collect(),
        policy: PolicySpec::thompson_default(),
        reward_timeout_seconds: 1,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    }
}

fn policy(c: &mut Criterion) {
    let posts: Vec<BetaParams> = (0..10)
        .map(|i| BetaParams {
            alpha: 10.0 + f64::from(i),
            beta: 500.0,
        })
        .collect();
    let mut rng = SmallRng::seed_from_u64(1);
    c.bench_function("policy/thompson_sample_10_arms", |b| {
        b.iter(|| sample_argmax(black_box(&posts), &mut rng))
    });
    // The hot path now: an arm drawn from the cached probability vector...
    let mut probs = prob_best(&posts, None);
    with_floor(&mut probs, 0.001);
    c.bench_function("policy/thompson_draw_from_vector_10_arms", |b| {
        b.iter(|| sample_index(black_box(&probs), &mut rng))
    });
    // ...and, when the posterior has moved, the vector recomputed: ten arms
    // close together (all can be best), ten of a mature campaign (rates
    // 2.0–3.8%, 200 to 50,000 trials each), and rare conversions.
    c.bench_function("policy/thompson_refresh_vector_10_arms", |b| {
        b.iter(|| prob_best(black_box(&posts), None))
    });
    let mature: Vec<BetaParams> = (0..10)
        .map(|i| {
            let rate = 0.02 + 0.002 * f64::from(i);
            let n = [200.0, 250.0, 300.0, 400.0, 500.0, 700.0, 1e3, 2e3, 5e3, 5e4][i as usize];
            BetaParams {
                alpha: 1.0 + rate * n,
                beta: 1.0 + (1.0 - rate) * n,
            }
        })
        .collect();
    c.bench_function("policy/thompson_refresh_vector_10_arms_mature", |b| {
        b.iter(|| prob_best(black_box(&mature), None))
    });
    let rare: Vec<BetaParams> = (0..10)
        .map(|i| BetaParams {
            alpha: 1.0 + f64::from(i % 4),
            beta: 5_000.0 + 1_000.0 * f64::from(i),
        })
        .collect();
    c.bench_function("policy/thompson_refresh_vector_10_arms_rare", |b| {
        b.iter(|| prob_best(black_box(&rare), None))
    });
}

/// Runs `call`; when the journal's write queue is full (the bench calls
/// faster than the writer drains it on a busy machine) waits for the
/// writer and runs it again, as a client backing off would.
fn admitted<T>(engine: &Engine, what: &str, mut call: impl FnMut() -> Result<T>) -> T {
    loop {
        match call() {
            Err(Error::ResourceExhausted(_)) => engine.sync().expect("sync"),
            other => return other.expect(what),
        }
    }
}

/// Choose and reward through the engine; the manual clock moves 1 ms per
/// decision and the expiry sweep runs every 1000 decisions, so the state
/// stays at steady size (as in a running daemon).
fn engine_with(c: &mut Criterion, name: &str, store: Option<Arc<dyn Store>>) {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let options = EngineOptions {
        seed: Some(7),
        clock: Clock::Manual(clock.clone()),
        ..EngineOptions::default()
    };
    let engine = match store {
        Some(s) => Engine::open(s, options).expect("engine"),
        None => Engine::in_memory(options),
    };
    engine.create_campaign(campaign()).expect("create");
    let req = ChooseRequest {
        campaign_id: "bench".into(),
        segment: "returning-customers".into(),
        ..ChooseRequest::default()
    };
    // Warm the posteriors so propensity refreshes are rare, as in steady state.
    for i in 0..20_000u32 {
        let d = admitted(&engine, "choose", || engine.choose(&req));
        admitted(&engine, "reward", || {
            engine.reward(&d.decision_id, f64::from(i % 20 == 0))
        });
    }
    let mut n = 0u64;
    c.bench_function(&format!("engine/{name}/choose_10_arms"), |b| {
        b.iter(|| {
            n += 1;
            if n % 1000 == 0 {
                clock.fetch_add(1000, Ordering::Relaxed);
                admitted(&engine, "sweep", || engine.expire_due());
            }
            admitted(&engine, "choose", || engine.choose(black_box(&req)))
        })
    });
    let mut i = 0u32;
    c.bench_function(&format!("engine/{name}/choose_and_reward_10_arms"), |b| {
        b.iter(|| {
            i += 1;
            if i % 1000 == 0 {
                clock.fetch_add(1000, Ordering::Relaxed);
                admitted(&engine, "sweep", || engine.expire_due());
            }
            let d = admitted(&engine, "choose", || engine.choose(&req));
            admitted(&engine, "reward", || {
                engine.reward(&d.decision_id, f64::from(i % 20 == 0))
            })
        })
    });
    // A page of 3 slots: one slate (3 pending decisions) and a reward for
    // its first slot (the others expire).
    let slate = ChooseRequest {
        count: 3,
        ..req.clone()
    };
    let mut j = 0u32;
    c.bench_function(
        &format!("engine/{name}/slate_of_3_of_10_arms_and_reward"),
        |b| {
            b.iter(|| {
                j += 1;
                if j % 1000 == 0 {
                    clock.fetch_add(1000, Ordering::Relaxed);
                    admitted(&engine, "sweep", || engine.expire_due());
                }
                let d = admitted(&engine, "slate", || engine.choose(black_box(&slate)));
                admitted(&engine, "reward", || {
                    engine.reward(&d.decision_id, f64::from(j % 20 == 0))
                })
            })
        },
    );
}

fn engine_memory(c: &mut Criterion) {
    engine_with(c, "memory", None);
}

fn engine_sled(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(&SledOptions {
        path: dir.path().to_path_buf(),
        cache_bytes: 64 << 20,
    })
    .expect("sled");
    engine_with(c, "sled", Some(Arc::new(store)));
}

/// The writer's side of 256 decisions and their outcomes, as one batch:
/// the journal's appends, then one sync (encode, apply to sled, flush).
fn journal_sled(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(&SledOptions {
        path: dir.path().to_path_buf(),
        cache_bytes: 64 << 20,
    })
    .expect("sled");
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let engine = Engine::open(
        Arc::new(store),
        EngineOptions {
            seed: Some(7),
            clock: Clock::Manual(clock.clone()),
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    engine.create_campaign(campaign()).expect("create");
    let req = ChooseRequest {
        campaign_id: "bench".into(),
        segment: "returning-customers".into(),
        ..ChooseRequest::default()
    };
    c.bench_function("journal/sled/256_decisions_and_outcomes_then_sync", |b| {
        b.iter(|| {
            clock.fetch_add(1000, Ordering::Relaxed);
            admitted(&engine, "sweep", || engine.expire_due());
            for i in 0..256u32 {
                let d = admitted(&engine, "choose", || engine.choose(&req));
                admitted(&engine, "reward", || {
                    engine.reward(&d.decision_id, f64::from(i % 20 == 0))
                });
            }
            engine.sync().expect("sync")
        })
    });
}

/// LinUCB budgets: choose ≤ 10 µs for 20 arms × 20 features, update ≤ 2 µs.
fn linucb(c: &mut Criterion) {
    use banditd::policy::linucb::{choose_ucb, LinUcbParams, LinearArm};
    use rand::Rng;
    let (k, d) = (20, 21); // 20 features + the intercept
    let mut rng = SmallRng::seed_from_u64(3);
    let contexts: Vec<Vec<f64>> = (0..256)
        .map(|_| {
            std::iter::once(1.0)
                .chain((1..d).map(|_| rng.random::<f64>() - 0.5))
                .collect()
        })
        .collect();
    let mut arms: Vec<LinearArm> = (0..k).map(|_| LinearArm::new(d, 1.0)).collect();
    for (i, x) in contexts.iter().cycle().take(20_000).enumerate() {
        arms[i % k].update(x, f64::from(u8::from(i % 7 == 0)));
    }
    let active: Vec<usize> = (0..k).collect();
    let params = LinUcbParams {
        alpha: 1.0,
        lambda: 1.0,
        epsilon: 0.02,
    };
    let mut i = 0;
    c.bench_function("policy/linucb_choose_20_arms_20_features", |b| {
        b.iter(|| {
            i = (i + 1) % contexts.len();
            choose_ucb(black_box(&arms), &active, &contexts[i], &params, &mut rng)
        })
    });
    let mut arm = arms[0].clone();
    let mut j = 0;
    c.bench_function("policy/linucb_update_20_features", |b| {
        b.iter(|| {
            j = (j + 1) % contexts.len();
            arm.update(black_box(&contexts[j]), 1.0)
        })
    });
}

/// The production-shaped workload, in process: 10,000 segments with
/// Zipf-distributed traffic (exponent 1), 10 offers converting at 1.5–4.5%
/// (about 3% of decisions rewarded with 1, at once; the rest expire at the
/// timeout), for a 60 s and a 24 h timeout. The manual clock moves so that
/// a 500,000-decision warm-up covers 1.1 windows (steady state: expiries
/// as many as decisions); then 300,000 decisions are timed one by one.
/// Prints the latency distribution of `choose` and of `reward`, and how
/// many Thompson vectors were made and checked per decision, with vectors
/// made by the deciding call (`inline`, the simulator's way) and off the
/// decision path (`deferred`, the daemon's: made here between timed calls,
/// every 64 decisions, as its background task would).
fn production(_c: &mut Criterion) {
    use hdrhistogram::Histogram;
    use rand::Rng;
    use std::time::Instant;
    const SEGMENTS: usize = 10_000;
    const WARMUP: u64 = 500_000;
    const MEASURED: u64 = 300_000;
    let zipf: Vec<f64> = {
        let w: Vec<f64> = (1..=SEGMENTS).map(|i| 1.0 / i as f64).collect();
        let total: f64 = w.iter().sum();
        w.iter()
            .scan(0.0, |acc, x| {
                *acc += x / total;
                Some(*acc)
            })
            .collect()
    };
    let names: Vec<String> = (0..SEGMENTS).map(|i| format!("segment-{i}")).collect();
    let rates: Vec<f64> = (0..10)
        .map(|i| 0.015 + 0.003 * f64::from(i) + 0.0015)
        .collect();
    for (mode, timeout) in [
        (VectorMode::Deferred, 60u32),
        (VectorMode::Deferred, 86_400),
        (VectorMode::Inline, 60),
        (VectorMode::Inline, 86_400),
    ] {
        let name = match mode {
            VectorMode::Deferred => "deferred",
            VectorMode::Inline => "inline",
        };
        let clock = Arc::new(AtomicU64::new(1_000_000_000));
        let engine = Engine::in_memory(EngineOptions {
            seed: Some(7),
            clock: Clock::Manual(clock.clone()),
            vectors: mode,
            ..EngineOptions::default()
        });
        engine
            .create_campaign(CampaignSpec {
                reward_timeout_seconds: timeout,
                ..campaign()
            })
            .expect("create");
        let step_us = (1.1 * f64::from(timeout) * 1e6 / WARMUP as f64) as u64;
        let mut rng = SmallRng::seed_from_u64(11);
        let mut micros = 0u64;
        let mut choose_ns = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("hist");
        let mut reward_ns = choose_ns.clone();
        let mut before = None;
        for i in 0..WARMUP + MEASURED {
            if i == WARMUP {
                before = Some(engine.vector_work("bench").expect("work"));
            }
            micros += step_us;
            if micros >= 1000 {
                clock.fetch_add(micros / 1000, Ordering::Relaxed);
                micros %= 1000;
            }
            if i % 1000 == 0 {
                admitted(&engine, "sweep", || engine.expire_due());
            }
            if i % 64 == 0 {
                engine.make_wanted_vectors();
            }
            let u: f64 = rng.random();
            let segment = zipf.partition_point(|&c| c < u).min(SEGMENTS - 1);
            let req = ChooseRequest {
                campaign_id: "bench".into(),
                segment: names[segment].clone(),
                ..ChooseRequest::default()
            };
            let t0 = Instant::now();
            let d = admitted(&engine, "choose", || engine.choose(&req));
            let took = t0.elapsed().as_nanos() as u64;
            if rng.random::<f64>() < rates[d.arm] {
                let t0 = Instant::now();
                admitted(&engine, "reward", || engine.reward(&d.decision_id, 1.0));
                if i >= WARMUP {
                    let _ = reward_ns.record(t0.elapsed().as_nanos().max(1) as u64);
                }
            }
            if i >= WARMUP {
                let _ = choose_ns.record(took.max(1));
            }
        }
        let work = engine.vector_work("bench").expect("work");
        let before = before.unwrap_or_default();
        let per = |x: u64| x as f64 / MEASURED as f64;
        for (what, h) in [("choose", &choose_ns), ("reward", &reward_ns)] {
            println!(
                "engine/production/{name}/timeout_{timeout}s/{what}: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.1} µs, mean {:.2} µs ({} calls)",
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3,
                h.value_at_quantile(0.999) as f64 / 1e3,
                h.max() as f64 / 1e3,
                h.mean() / 1e3,
                h.len()
            );
        }
        println!(
            "engine/production/{name}/timeout_{timeout}s: per decision, {:.5} vectors made and {:.4} checks",
            per(work.made - before.made),
            per(work.checks - before.checks)
        );
    }
}

criterion_group!(
    benches,
    policy,
    linucb,
    engine_memory,
    engine_sled,
    journal_sled,
    production
);
criterion_main!(benches);
