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
use banditd::engine::{ChooseRequest, Clock, Engine, EngineOptions};
use banditd::error::{Error, Result};
use banditd::policy::thompson::{
    prob_best_exact, sample_argmax, sample_index, with_floor, BetaParams,
};
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
    let mut probs = prob_best_exact(&posts, 24);
    with_floor(&mut probs, 0.001);
    c.bench_function("policy/thompson_draw_from_vector_10_arms", |b| {
        b.iter(|| sample_index(black_box(&probs), &mut rng))
    });
    // ...and, when the posterior has moved, the vector recomputed.
    c.bench_function("policy/thompson_refresh_vector_10_arms", |b| {
        b.iter(|| prob_best_exact(black_box(&posts), 24))
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

criterion_group!(
    benches,
    policy,
    linucb,
    engine_memory,
    engine_sled,
    journal_sled
);
criterion_main!(benches);
