//! Engine rules under a manual clock: expiry exactly once, retention,
//! reload from the store, determinism, ids, deletion, store failures.

use super::*;
use crate::campaign::{ArmSpec, CampaignSpec, PolicySpec};
use crate::journal::{check, JournalOptions, Mode};
use crate::store::MemoryStore;
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// LinUCB with α = λ = 1 on one feature (absent features refused).
fn linucb(epsilon: f64, feature: &str) -> PolicySpec {
    PolicySpec::LinUcb {
        alpha: 1.0,
        lambda: 1.0,
        epsilon,
        features: vec![feature.into()],
        missing_zero: false,
    }
}

fn spec(id: &str, arms: usize, timeout_s: u32, default_reward: f64) -> CampaignSpec {
    CampaignSpec {
        id: id.into(),
        arms: (0..arms)
            .map(|i| ArmSpec {
                id: format!("arm{i}"),
                retired: false,
                ..ArmSpec::default()
            })
            .collect(),
        policy: PolicySpec::thompson_default(),
        reward_timeout_seconds: timeout_s,
        default_reward,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    }
}

fn options(clock: &Arc<AtomicU64>, seed: u64, mode: Mode) -> EngineOptions {
    EngineOptions {
        seed: Some(seed),
        clock: Clock::Manual(clock.clone()),
        journal: JournalOptions {
            mode,
            batch_interval: Duration::from_millis(1),
            flush_interval: Duration::from_millis(1),
            ..JournalOptions::default()
        },
        ..EngineOptions::default()
    }
}

fn engine(store: Arc<MemoryStore>, clock: &Arc<AtomicU64>, seed: u64) -> Engine {
    Engine::open(store, options(clock, seed, Mode::Default)).expect("engine")
}

fn clean(store: &MemoryStore) -> check::CheckReport {
    let report = check::check(store).expect("check");
    assert!(report.is_clean(), "{report}");
    report
}

fn req(campaign: &str, segment: &str) -> ChooseRequest {
    ChooseRequest {
        campaign_id: campaign.into(),
        segment: segment.into(),
        ..ChooseRequest::default()
    }
}

fn totals(e: &Engine, id: &str) -> (u64, u64, f64) {
    let s = e.stats(id, "").expect("stats");
    s[0].arms.iter().fold((0, 0, 0.0), |(p, q, r), a| {
        (p + a.pulls, q + a.pending, r + a.reward_sum)
    })
}

// The default reward is learned once at the deadline, however often the
// sweep runs, and a late reward is FAILED_PRECONDITION.
#[test]
fn expiry_applies_default_reward_exactly_once() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 1);
    e.create_campaign(spec("c", 2, 10, 1.0)).expect("create");
    let d = e.choose(&req("c", "s")).expect("choose");
    clock.store(1_000_000 + 10_000, Ordering::Relaxed);
    assert_eq!(e.expire_due().expect("sweep"), 0, "not before the deadline");
    clock.store(1_000_000 + 10_001, Ordering::Relaxed);
    assert_eq!(e.expire_due().expect("sweep"), 1);
    assert_eq!(e.expire_due().expect("sweep"), 0);
    assert_eq!(totals(&e, "c"), (1, 0, 1.0));
    assert!(matches!(
        e.reward(&d.decision_id, 0.0),
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(totals(&e, "c"), (1, 0, 1.0));
}

// A reward arriving after the deadline but before the sweep also expires the
// decision (default reward) instead of learning the late value.
#[test]
fn late_reward_before_sweep_is_rejected_and_default_learned() {
    let clock = Arc::new(AtomicU64::new(5_000));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 2);
    e.create_campaign(spec("c", 2, 1, 0.0)).expect("create");
    let d = e.choose(&req("c", "")).expect("choose");
    clock.store(7_000, Ordering::Relaxed);
    assert!(matches!(
        e.reward(&d.decision_id, 1.0),
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(totals(&e, "c"), (1, 0, 0.0));
    assert_eq!(e.expire_due().expect("sweep"), 0, "already resolved");
}

// Resolved decisions are remembered for one more timeout, then forgotten
// (memory and store stay bounded).
#[test]
fn resolved_decisions_are_forgotten_after_retention() {
    let clock = Arc::new(AtomicU64::new(0));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 3);
    e.create_campaign(spec("c", 2, 10, 0.0)).expect("create");
    let d = e.choose(&req("c", "")).expect("choose");
    e.reward(&d.decision_id, 1.0).expect("reward");
    clock.store(15_000, Ordering::Relaxed);
    e.expire_due().expect("sweep");
    assert_eq!(
        e.reward(&d.decision_id, 1.0).expect("dup"),
        RewardOutcome::Duplicate
    );
    clock.store(20_001, Ordering::Relaxed);
    e.expire_due().expect("sweep");
    assert!(matches!(
        e.reward(&d.decision_id, 1.0),
        Err(Error::NotFound(_))
    ));
    assert_eq!(e.decision_count(), 0);
    e.sync().expect("sync");
    let report = check::check(&*store).expect("check");
    assert_eq!(report.decision_count(), 0, "forgotten in the store too");
    assert!(report.is_clean(), "{report}");
    assert_eq!(totals(&e, "c"), (1, 0, 1.0));
}

// An engine reopened over the same store has the same statistics and
// pending decisions, and expires them after the restart.
#[test]
fn reopened_engine_resumes_state() {
    let clock = Arc::new(AtomicU64::new(0));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 4);
    e.create_campaign(spec("c", 3, 10, 0.0)).expect("create");
    let mut ids = Vec::new();
    for i in 0..30 {
        let d = e
            .choose(&req("c", if i % 2 == 0 { "a" } else { "b" }))
            .expect("choose");
        if i % 3 == 0 {
            e.reward(&d.decision_id, 1.0).expect("reward");
        }
        ids.push(d.decision_id);
    }
    let before = e.stats("c", "").expect("stats");
    e.shutdown().expect("shutdown");
    drop(e);
    clean(&store);
    let e = engine(store, &clock, 4);
    assert_eq!(e.stats("c", "").expect("stats"), before);
    assert_eq!(
        e.reward(&ids[0], 1.0).expect("dup"),
        RewardOutcome::Duplicate
    );
    clock.store(10_001, Ordering::Relaxed);
    assert_eq!(e.expire_due().expect("sweep"), 20);
    assert_eq!(totals(&e, "c"), (30, 0, 10.0));
}

// The same seed gives the same decisions.
#[test]
fn same_seed_same_decisions() {
    let run = |seed| {
        let clock = Arc::new(AtomicU64::new(0));
        let e = engine(Arc::new(MemoryStore::new()), &clock, seed);
        e.create_campaign(spec("c", 5, 10, 0.0)).expect("create");
        (0..100)
            .map(|i| {
                let d = e.choose(&req("c", "s")).expect("choose");
                e.reward(&d.decision_id, f64::from(i % 2)).expect("reward");
                d.arm_id
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

// Uniform campaigns split evenly with exact propensity 1/K.
#[test]
fn uniform_split_is_even_with_exact_propensity() {
    let clock = Arc::new(AtomicU64::new(0));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 5);
    let mut s = spec("ab", 4, 10, 0.0);
    s.policy = PolicySpec::Uniform;
    e.create_campaign(s).expect("create");
    let mut counts = std::collections::HashMap::new();
    for _ in 0..8000 {
        let d = e.choose(&req("ab", "")).expect("choose");
        assert_eq!(d.propensity, 0.25);
        *counts.entry(d.arm_id).or_insert(0u32) += 1;
    }
    for (arm, n) in counts {
        assert!((1800..=2200).contains(&n), "{arm}: {n}");
    }
}

// A contextual decision that times out learns the default reward with the
// context it was made with: θ moves towards the default for that customer.
#[test]
fn contextual_expiry_updates_the_arm_with_the_stored_context() {
    let clock = Arc::new(AtomicU64::new(0));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 7);
    let mut s = spec("ctx", 1, 10, -2.0);
    s.policy = linucb(0.0, "is_mobile");
    e.create_campaign(s).expect("create");
    let mut r = req("ctx", "");
    r.context = vec![("is_mobile".into(), 1.0)];
    e.choose(&r).expect("choose");
    clock.store(10_001, Ordering::Relaxed);
    assert_eq!(e.expire_due().expect("sweep"), 1);
    let stats = e.stats("ctx", "").expect("stats");
    let arm = &stats[0].arms[0];
    // Ridge with λ = 1 and one observation x = (1, 1), r = −2: θ = (−2/3, −2/3).
    assert!(
        (arm.theta[0].1 + 2.0 / 3.0).abs() < 1e-12 && (arm.theta[1].1 + 2.0 / 3.0).abs() < 1e-12,
        "{arm:?}"
    );
    assert_eq!((arm.pulls, arm.reward_sum), (1, -2.0));
}

// The fingerprint (the fuzzer's "state unchanged" check) sees contextual
// learning and pending contextual decisions, and not a refused call.
#[test]
fn fingerprint_follows_contextual_statistics_and_ignores_refusals() {
    let clock = Arc::new(AtomicU64::new(0));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 7);
    let mut s = spec("ctx", 2, 10, -2.0);
    s.policy = linucb(0.0, "is_mobile");
    e.create_campaign(s).expect("create");
    let empty = e.fingerprint();
    let mut r = req("ctx", "");
    r.context = vec![("is_mobile".into(), 1.0)];
    e.choose(&r).expect("choose");
    let pending = e.fingerprint();
    assert_ne!(pending, empty, "a pending contextual decision counts");
    let mut bad = req("ctx", "");
    bad.context = vec![("is_mobile".into(), f64::NAN)];
    assert!(e.choose(&bad).is_err());
    assert_eq!(e.fingerprint(), pending, "a refused call changes nothing");
    clock.store(10_001, Ordering::Relaxed);
    assert_eq!(e.expire_due().expect("sweep"), 1);
    let learned = e.fingerprint();
    assert_ne!(learned, pending, "learning A and b counts");
    assert_eq!(e.fingerprint(), learned, "deterministic");
}

// Server-generated ids name their campaign and position: they parse back,
// sort in creation order within a run, stay valid after a restart, and a
// caller may not invent one; a caller-chosen id resolves through the index,
// also after a restart.
#[test]
fn own_ids_parse_back_survive_restarts_and_cannot_be_forged() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 3);
    e.create_campaign(spec("a", 2, 60, 0.0)).expect("create");
    e.create_campaign(spec("b", 2, 60, 0.0)).expect("create");
    let mut last = String::new();
    for i in 0..300u64 {
        let c = e
            .choose(&req(if i % 3 == 0 { "a" } else { "b" }, ""))
            .expect("choose");
        let (uid, at) = crate::journal::format::parse_decision_id(&c.decision_id).expect("parses");
        assert_eq!(*c.decision_id, *ids::own_id(uid, at));
        if i % 3 != 0 {
            assert!(*c.decision_id > *last, "creation order within a campaign");
            last = c.decision_id.to_string();
        }
    }
    let d = e.choose(&req("b", "")).expect("choose");
    // A retried Choose with the server's id replays; a forged one is refused.
    let mut retry = req("b", "");
    retry.decision_id = Some(d.decision_id.to_string());
    assert_eq!(e.choose(&retry).expect("replay"), d);
    let (uid, at) = crate::journal::format::parse_decision_id(&d.decision_id).expect("parses");
    let forged = ids::own_id(uid, (at.0, at.1 + 5)).to_string();
    retry.decision_id = Some(forged.clone());
    assert!(matches!(e.choose(&retry), Err(Error::InvalidArgument(_))));
    assert!(matches!(e.reward(&forged, 1.0), Err(Error::NotFound(_))));
    let mut own = req("a", "s");
    own.decision_id = Some("order-17".into());
    let mine = e.choose(&own).expect("caller id");
    assert_eq!(&*mine.decision_id, "order-17");
    e.shutdown().expect("shutdown");
    drop(e);
    let e = engine(store, &clock, 3);
    assert_eq!(
        e.reward(&d.decision_id, 1.0).expect("old id"),
        RewardOutcome::Learned
    );
    let next = e.choose(&req("b", "")).expect("choose");
    assert_ne!(
        next.decision_id, d.decision_id,
        "a new run: ids never repeat"
    );
    assert_eq!(
        e.reward("order-17", 1.0).expect("caller id"),
        RewardOutcome::Learned
    );
    assert_eq!(
        e.reward("order-17", 1.0).expect("dup"),
        RewardOutcome::Duplicate
    );
}

// The propensity logged with a Thompson decision follows the posterior: late
// in a campaign where one arm is clearly better, the logged probability of
// the chosen arm matches how often it is actually chosen (a cache that
// never refreshed would keep logging the first estimate, 0.5).
#[test]
fn thompson_propensity_tracks_the_posterior() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 4);
    e.create_campaign(spec("c", 2, 60, 0.0)).expect("create");
    let mut rng = SmallRng::seed_from_u64(4);
    let (mut chose_best, mut logged) = (0u32, 0.0);
    for i in 0..4000 {
        let d = e.choose(&req("c", "")).expect("choose");
        let p = if d.arm == 0 { 0.6 } else { 0.4 };
        let r = f64::from(u8::from(rng.random::<f64>() < p));
        e.reward(&d.decision_id, r).expect("reward");
        if i >= 3000 {
            chose_best += u32::from(d.arm == 0);
            logged += if d.arm == 0 {
                d.propensity
            } else {
                1.0 - d.propensity
            };
        }
    }
    let share = f64::from(chose_best) / 1000.0;
    let logged = logged / 1000.0;
    assert!(
        share > 0.9,
        "the better arm gets most late traffic: {share}"
    );
    assert!(
        (logged - share).abs() < 0.05,
        "logged P(best) {logged} vs share {share}"
    );
}

// A deleted campaign never comes back: work that still holds it (here the
// expiry sweep, a Reward and AddArms racing the delete) changes nothing,
// and a campaign re-created with the same id starts from nothing, also
// after a restart.
#[test]
fn a_deleted_campaign_never_comes_back() {
    let clock = Arc::new(AtomicU64::new(1_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 8);
    e.create_campaign(spec("c", 2, 10, 1.0)).expect("create");
    let mut ids = Vec::new();
    for _ in 0..20 {
        let d = e.choose(&req("c", "s")).expect("choose");
        ids.push(d.decision_id);
    }
    e.reward(&ids[0], 1.0).expect("reward");
    let held = e.campaign("c").expect("cell");
    let located = e.locate(&ids[1]).expect("located");
    e.delete_campaign("c").expect("delete");
    clock.store(20_000, Ordering::Relaxed);
    assert_eq!(e.expire_some(&held, 20_000).expect("sweep"), (0, false));
    assert!(matches!(
        e.lock_for_change(&located.campaign, 1),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(e.reward(&ids[1], 1.0), Err(Error::NotFound(_))));
    e.create_campaign(spec("c", 2, 10, 1.0)).expect("re-create");
    assert_eq!(totals(&e, "c"), (0, 0, 0.0));
    assert!(matches!(e.reward(&ids[2], 1.0), Err(Error::NotFound(_))));
    e.sync().expect("sync");
    let report = clean(&store);
    assert_eq!(report.decision_count(), 0);
    drop(e);
    let e = engine(Arc::new(store.crashed()), &clock, 8);
    assert_eq!(totals(&e, "c"), (0, 0, 0.0));
    assert_eq!(e.expire_due().expect("sweep"), 0);
}

// Strict durability: once a write fails, the change whose batch failed is
// reported applied-but-not-durable (DATA_LOSS), every later change is
// refused before it touches anything (UNAVAILABLE), and nothing ever
// reports success again.
#[tokio::test]
async fn a_store_failure_refuses_changes_and_reports_what_was_applied() {
    let clock = Arc::new(AtomicU64::new(1_000));
    let store = Arc::new(MemoryStore::new());
    let e = Engine::open(store.clone(), options(&clock, 9, Mode::Strict)).expect("open");
    e.create_campaign(spec("c", 2, 10, 0.0)).expect("create");
    e.wait_durable().await.expect("durable");
    let d = e.choose(&req("c", "")).expect("choose");
    e.wait_durable().await.expect("durable");
    store.fail_after(1);
    e.reward(&d.decision_id, 1.0).expect("applied in memory");
    assert!(matches!(e.wait_durable().await, Err(Error::NotDurable(_))));
    let before = totals(&e, "c");
    assert!(matches!(
        e.choose(&req("c", "")),
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(
        e.create_campaign(spec("d", 2, 10, 0.0)),
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(e.delete_campaign("c"), Err(Error::Unavailable(_))));
    clock.store(100_000, Ordering::Relaxed);
    assert!(matches!(e.expire_due(), Ok(0) | Err(Error::Unavailable(_))));
    assert_eq!(totals(&e, "c"), before, "refused calls changed nothing");
    assert!(e.store_failure().is_some());
    assert!(matches!(e.wait_durable().await, Err(Error::NotDurable(_))));
}

// A campaign at its cap of pending decisions refuses the next Choose with
// RESOURCE_EXHAUSTED and changes nothing; resolving one makes room.
#[test]
fn pending_decisions_are_capped_per_campaign() {
    let clock = Arc::new(AtomicU64::new(1_000));
    let e = Engine::in_memory(EngineOptions {
        max_pending_per_campaign: 3,
        ..options(&clock, 10, Mode::Default)
    });
    e.create_campaign(spec("c", 2, 10, 0.0)).expect("create");
    let ids: Vec<_> = (0..3)
        .map(|_| e.choose(&req("c", "new")).expect("choose").decision_id)
        .collect();
    assert!(matches!(
        e.choose(&req("c", "other")),
        Err(Error::ResourceExhausted(_))
    ));
    assert_eq!(e.decision_count(), 3);
    assert!(e
        .stats("c", "")
        .expect("stats")
        .iter()
        .all(|s| s.segment != "other"));
    e.reward(&ids[0], 1.0).expect("reward");
    e.choose(&req("c", "")).expect("room again");
}

/// What a test remembers of acknowledged changes (for the crash model).
#[derive(Default)]
struct Acks {
    /// decision id → (campaign, arm id, reward acknowledged).
    decisions: std::collections::HashMap<String, (String, String, Option<f64>)>,
}

// The crash model: random traffic (segments, caller ids, retries, rewards,
// expiries, forgetting, delete and re-create), with crashes at random
// moments that keep only what was flushed. After every crash the store's
// invariants hold, and in strict mode every acknowledged decision and
// reward survived.
#[tokio::test]
async fn crashes_keep_every_strict_acknowledgement_and_the_invariants() {
    use rand::Rng;
    for seed in 0..12u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mode = if seed % 2 == 0 {
            Mode::Strict
        } else {
            Mode::Default
        };
        let clock = Arc::new(AtomicU64::new(1_000_000));
        let mut store = Arc::new(MemoryStore::new());
        // Strict: nothing is forgotten during the run, so every
        // acknowledgement must be found. Default: forgetting is exercised.
        let opts = EngineOptions {
            retention: (mode == Mode::Strict).then(|| Duration::from_secs(3600)),
            ..options(&clock, seed, mode)
        };
        let mut e = Engine::open(store.clone(), opts.clone()).expect("open");
        let mut acks = Acks::default();
        let names = ["x", "y"];
        for name in names {
            e.create_campaign(spec(name, 3, 5, 0.0)).expect("create");
        }
        e.sync().expect("sync");
        let mut live: Vec<String> = Vec::new();
        for step in 0..1500 {
            clock.fetch_add(rng.random_range(0..40), Ordering::Relaxed);
            let name = names[rng.random_range(0..2)];
            match rng.random_range(0..100) {
                0..=44 => {
                    let mut r = req(name, ["", "a", "b"][rng.random_range(0..3)]);
                    if rng.random_bool(0.2) {
                        r.decision_id = Some(format!("caller-{seed}-{step}"));
                    }
                    if let Ok(d) = e.choose(&r) {
                        if r.decision_id.is_some() && rng.random_bool(0.3) {
                            assert_eq!(e.choose(&r).expect("retry"), d, "a retry replays");
                        }
                        if e.wait_durable().await.is_ok() {
                            acks.decisions
                                .insert(d.decision_id.to_string(), (name.into(), d.arm_id, None));
                        }
                        live.push(d.decision_id.to_string());
                    }
                }
                45..=79 if !live.is_empty() => {
                    let id = live.swap_remove(rng.random_range(0..live.len()));
                    let v = f64::from(u8::from(rng.random_bool(0.5)));
                    if matches!(e.reward(&id, v), Ok(RewardOutcome::Learned))
                        && e.wait_durable().await.is_ok()
                    {
                        if let Some(a) = acks.decisions.get_mut(&id) {
                            a.2 = Some(v);
                        }
                    }
                }
                80..=89 => {
                    e.expire_due().expect("sweep");
                }
                90..=91 => {
                    e.delete_campaign(name).expect("delete");
                    e.create_campaign(spec(name, 3, 5, 0.0)).expect("re-create");
                    e.wait_durable().await.expect("durable");
                    acks.decisions.retain(|_, a| a.0 != name);
                }
                92..=93 => e.sync().expect("sync"),
                94 => {
                    // Crash: keep only what was flushed, then restart.
                    drop(e);
                    store = Arc::new(store.crashed());
                    let report = clean(&store);
                    if mode == Mode::Strict {
                        for (id, (campaign, arm, reward)) in &acks.decisions {
                            let f = report
                                .decision(id)
                                .unwrap_or_else(|| panic!("seed {seed}: acknowledged {id} lost"));
                            assert_eq!((&f.campaign, &f.arm), (campaign, arm), "{id}");
                            if let Some(v) = reward {
                                assert_eq!(
                                    f.outcome,
                                    Some((crate::journal::Resolution::Rewarded, *v)),
                                    "{id}"
                                );
                            }
                        }
                    }
                    e = Engine::open(store.clone(), opts.clone()).expect("reopen");
                    live.retain(|id| e.locate(id).is_some());
                }
                _ => {}
            }
        }
        e.sync().expect("sync");
        clean(&store);
    }
}

// A contextual campaign refuses rewards and feature values whose squares
// or sums could overflow its statistics (they would make the data directory
// unreadable), and changes nothing.
#[test]
fn contextual_inputs_that_could_overflow_are_refused() {
    let clock = Arc::new(AtomicU64::new(0));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 11);
    let mut s = spec("ctx", 2, 10, 0.0);
    s.policy = linucb(0.1, "spend");
    e.create_campaign(s.clone()).expect("create");
    let mut r = req("ctx", "");
    r.context = vec![("spend".into(), 1e200)];
    assert!(matches!(e.choose(&r), Err(Error::InvalidArgument(_))));
    assert_eq!(e.decision_count(), 0);
    r.context = vec![("spend".into(), 1e6)];
    let d = e.choose(&r).expect("largest value accepted");
    assert!(matches!(
        e.reward(&d.decision_id, 1e308),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        e.reward(&d.decision_id, -1e9).expect("largest reward"),
        RewardOutcome::Learned
    );
    s.id = "ctx2".into();
    s.default_reward = 1e300;
    assert!(matches!(
        e.create_campaign(s),
        Err(Error::InvalidArgument(_))
    ));
}

// A caller-chosen id freed by forgetting may be reused by another
// campaign, and deleting the first campaign afterwards does not take the
// id from its new owner, before or after a restart.
#[test]
fn a_reused_caller_id_stays_with_its_new_owner() {
    let clock = Arc::new(AtomicU64::new(1_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 12);
    e.create_campaign(spec("a", 2, 1, 0.0)).expect("create");
    e.create_campaign(spec("b", 2, 60, 0.0)).expect("create");
    let mut r = req("a", "");
    r.decision_id = Some("order-9".into());
    e.choose(&r).expect("choose");
    clock.store(10_000, Ordering::Relaxed);
    e.expire_due().expect("sweep: expired, then forgotten");
    e.expire_due().expect("sweep");
    assert!(matches!(e.reward("order-9", 1.0), Err(Error::NotFound(_))));
    r.campaign_id = "b".into();
    e.choose(&r).expect("the id is free again");
    e.delete_campaign("a").expect("delete");
    assert_eq!(
        e.reward("order-9", 1.0).expect("b's"),
        RewardOutcome::Learned
    );
    e.sync().expect("sync");
    clean(&store);
    drop(e);
    let e = engine(Arc::new(store.crashed()), &clock, 12);
    assert_eq!(
        e.reward("order-9", 1.0).expect("b's"),
        RewardOutcome::Duplicate
    );
}

// The logged Thompson propensity is the probability the arm was drawn
// with: the inverse-propensity estimate of every arm's rate from the logged
// decisions is unbiased. Offers at 10/8/6%, rewards flowing, 60 seeds of
// 4,000 decisions: per arm, the mean of the per-seed estimates is within 3
// standard errors (across seeds) of the true rate. (IPS estimates of a
// rarely chosen arm are skewed, so single seeds mostly fall short and a
// few overshoot; only their average is unbiased.) A propensity estimated
// apart from the draw was 7.8 standard errors off.
#[test]
fn logged_thompson_propensities_give_unbiased_ips_estimates() {
    use rand::Rng;
    let rates = [0.10, 0.08, 0.06];
    let seeds = 60u64;
    let mut estimates = vec![Vec::new(); 3];
    for seed in 0..seeds {
        let clock = Arc::new(AtomicU64::new(1_000));
        let e = Engine::in_memory(options(&clock, seed, Mode::Default));
        e.create_campaign(spec("c", 3, 60, 0.0)).expect("create");
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x1b5);
        let n = 4_000;
        let mut sums = [0.0; 3];
        for _ in 0..n {
            let d = e.choose(&req("c", "")).expect("choose");
            assert!(d.propensity >= crate::campaign::DEFAULT_EXPLORATION_FLOOR - 1e-12);
            let r = f64::from(u8::from(rng.random::<f64>() < rates[d.arm]));
            e.reward(&d.decision_id, r).expect("reward");
            sums[d.arm] += r / d.propensity;
        }
        for k in 0..3 {
            estimates[k].push(sums[k] / n as f64);
        }
    }
    for (k, est) in estimates.iter().enumerate() {
        let m = est.iter().sum::<f64>() / seeds as f64;
        let sd = (est.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (seeds - 1) as f64).sqrt();
        let z = (m - rates[k]) / (sd / (seeds as f64).sqrt());
        eprintln!("arm {k}: IPS mean {m:.4} (true {}), z {z:.2}", rates[k]);
        assert!(z.abs() < 3.0, "arm {k}: z {z:.2}");
    }
}

// Pending decisions do not bias what the campaign believes: one offer
// converting 20% of the time, conversions arriving uniformly over a 1,000 s
// window, one decision a second for three windows. Counting conversions at
// once and failures at the timeout would put the estimate near 0.24; with
// pending decisions as fractional trials it is 0.2 within noise, for
// Thompson sampling (posterior mean), ε-greedy and LinUCB (prediction).
#[test]
fn pending_decisions_do_not_bias_the_estimates() {
    use rand::Rng;
    let linucb = PolicySpec::LinUcb {
        alpha: 0.0,
        lambda: 1.0,
        epsilon: 0.0,
        features: vec!["constant".into()],
        missing_zero: true,
    };
    for policy in [
        PolicySpec::thompson_default(),
        PolicySpec::EpsilonGreedy { epsilon: 0.0 },
        linucb,
    ] {
        let mut estimates = Vec::new();
        for seed in 0..6u64 {
            let clock = Arc::new(AtomicU64::new(1_000_000));
            let e = Engine::in_memory(options(&clock, seed, Mode::Default));
            let mut s = spec("c", 1, 1000, 0.0);
            s.policy = policy.clone();
            e.create_campaign(s).expect("create");
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut due: Vec<(u64, Arc<str>)> = Vec::new();
            for t in 0..3000u64 {
                clock.store(1_000_000 + t * 1000, Ordering::Relaxed);
                let now = 1_000_000 + t * 1000;
                due.retain(|(at, id)| {
                    if *at <= now {
                        e.reward(id, 1.0).expect("reward in time");
                        false
                    } else {
                        true
                    }
                });
                if t % 10 == 0 {
                    e.expire_due().expect("sweep");
                }
                let d = e.choose(&req("c", "")).expect("choose");
                if rng.random::<f64>() < 0.2 {
                    due.push((now + rng.random_range(0..999_000), d.decision_id));
                }
            }
            let stats = e.stats("c", "").expect("stats");
            let a = &stats[0].arms[0];
            let estimate = if matches!(policy, PolicySpec::LinUcb { .. }) {
                0.5 * (a.ci_low + a.ci_high)
            } else {
                a.mean
            };
            estimates.push(estimate);
        }
        let m = estimates.iter().sum::<f64>() / estimates.len() as f64;
        eprintln!("{policy:?}: estimates {estimates:.3?}, mean {m:.3}");
        assert!((m - 0.2).abs() < 0.012, "{policy:?}: mean estimate {m:.3}");
    }
}

// Linear Thompson sampling as a campaign policy logs exact propensities:
// the inverse-propensity estimate of each arm's mean reward over random
// contexts is unbiased (40 seeds of 2,000 decisions, within 3 standard
// errors across seeds), and it learns: late decisions go to the customer's
// own best arm clearly more often than a random choice would (1/3).
#[test]
fn lints_logs_exact_propensities_and_learns() {
    use rand::Rng;
    // Expected click rate of arm k for a customer with feature f ∈ [0, 1].
    let rate = |k: usize, f: f64| [0.05 + 0.10 * f, 0.12, 0.15 - 0.10 * f][k];
    let truth = [0.10, 0.12, 0.10]; // averages over f ~ U(0, 1)
    let seeds = 100u64;
    let mut estimates = vec![Vec::new(); 3];
    let mut late_best = 0.0;
    for seed in 0..seeds {
        let clock = Arc::new(AtomicU64::new(1_000));
        let e = Engine::in_memory(options(&clock, seed, Mode::Default));
        let mut s = spec("c", 3, 60, 0.0);
        s.policy = PolicySpec::LinTs {
            scale: 1.0,
            lambda: 1.0,
            epsilon: 0.05,
            features: vec!["f".into()],
            missing_zero: false,
        };
        e.create_campaign(s).expect("create");
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x7a);
        let n = 2_000;
        let mut sums = [0.0; 3];
        for i in 0..n {
            let f: f64 = rng.random();
            let mut r = req("c", "");
            r.context = vec![("f".into(), f)];
            let d = e.choose(&r).expect("choose");
            assert!(d.propensity >= 0.05 / 3.0 - 1e-12, "{}", d.propensity);
            let reward = f64::from(u8::from(rng.random::<f64>() < rate(d.arm, f)));
            e.reward(&d.decision_id, reward).expect("reward");
            sums[d.arm] += reward / d.propensity;
            if i >= n - 500 {
                let best = (0..3)
                    .max_by(|&a, &b| rate(a, f).total_cmp(&rate(b, f)))
                    .unwrap_or(0);
                late_best += f64::from(u8::from(d.arm == best)) / 500.0;
            }
        }
        for k in 0..3 {
            estimates[k].push(sums[k] / n as f64);
        }
    }
    for (k, est) in estimates.iter().enumerate() {
        let m = est.iter().sum::<f64>() / seeds as f64;
        let sd = (est.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (seeds - 1) as f64).sqrt();
        let z = (m - truth[k]) / (sd / (seeds as f64).sqrt());
        eprintln!("arm {k}: IPS mean {m:.4} (true {}), z {z:.2}", truth[k]);
        assert!(z.abs() < 3.0, "arm {k}: z {z:.2}");
    }
    let share = late_best / seeds as f64;
    eprintln!("share of late decisions on the customer's best arm: {share:.3}");
    assert!(share > 0.4, "{share:.3} (a random choice: 0.333)");
}

// What the campaign learned beyond the counts survives a restart: the
// delay distribution and, with a half-life, the decayed evidence; the
// report at the same moment is the same before and after.
#[test]
fn delay_and_decay_survive_a_restart() {
    let clock = Arc::new(AtomicU64::new(10_000_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 13);
    let mut s = spec("c", 2, 3600, 0.0);
    s.decay_half_life_seconds = Some(600);
    e.create_campaign(s).expect("create");
    for i in 0..400u64 {
        clock.store(10_000_000 + i * 10_000, Ordering::Relaxed);
        let d = e.choose(&req("c", "s")).expect("choose");
        if i % 3 == 0 {
            clock.store(10_000_000 + i * 10_000 + 5_000, Ordering::Relaxed);
            e.reward(&d.decision_id, 1.0).expect("reward");
        }
    }
    let before = e.stats("c", "").expect("stats");
    e.shutdown().expect("shutdown");
    drop(e);
    let e = engine(store, &clock, 13);
    let after = e.stats("c", "").expect("stats");
    for (b, a) in before.iter().zip(&after) {
        for (x, y) in b.arms.iter().zip(&a.arms) {
            assert_eq!(
                (x.pulls, x.pending, x.reward_sum),
                (y.pulls, y.pending, y.reward_sum)
            );
            assert!((x.mean - y.mean).abs() < 1e-9, "{x:?} vs {y:?}");
            assert!(
                (x.effective_trials - y.effective_trials).abs() < 1e-6,
                "{x:?} vs {y:?}"
            );
        }
    }
    assert!(
        before[0]
            .arms
            .iter()
            .all(|a| a.effective_trials < a.pulls as f64),
        "decay and pending count less"
    );
}

/// Runs a two-arm LinUCB campaign (one feature `spend`, uniform on [0, 1])
/// for `decisions` immediate rewards drawn by `reward(arm, spend, rng)`, and
/// returns, per arm, GetStats' interval and the true mean at the average
/// context the report is made at (the true means are `truth(arm, spend)`,
/// linear in `spend`).
fn contextual_intervals(
    seed: u64,
    decisions: usize,
    truth: fn(usize, f64) -> f64,
    reward: fn(usize, f64, &mut SmallRng) -> f64,
) -> Vec<(f64, f64, f64)> {
    use rand::Rng;
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let e = engine(Arc::new(MemoryStore::new()), &clock, seed);
    let mut s = spec("ctx", 2, 3600, 0.0);
    s.policy = linucb(0.3, "spend");
    e.create_campaign(s).expect("create");
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut spend_sum = 0.0;
    for _ in 0..decisions {
        let spend: f64 = rng.random();
        spend_sum += spend;
        let mut r = req("ctx", "");
        r.context = vec![("spend".into(), spend)];
        let c = e.choose(&r).expect("choose");
        let value = reward(c.arm, spend, &mut rng);
        e.reward(&c.decision_id, value).expect("reward");
        clock.fetch_add(10, Ordering::SeqCst);
    }
    let average = spend_sum / decisions as f64;
    let report = e.stats("ctx", "").expect("stats");
    report[0]
        .arms
        .iter()
        .enumerate()
        .map(|(a, arm)| (arm.ci_low, arm.ci_high, truth(a, average)))
        .collect()
}

// GetStats' contextual interval (prediction at the average context ±
// 1.96 · residual sd · sqrt(xᵀA⁻¹x)) covers the true mean about 95% of the
// time, whatever the scale of the rewards. Before, the residual noise was
// left out (as if its sd were 1): revenue-like rewards with sd 3 were
// covered about half the time, click rates of a few percent got intervals
// several times too wide. Measured over these 100 seeds: 0.93 of the
// revenue intervals and 0.955 of the click intervals cover (0.425 of the
// revenue intervals with the old formula).
#[test]
fn contextual_interval_includes_the_residual_noise() {
    use rand_distr::{Distribution, Normal};
    fn revenue_truth(arm: usize, spend: f64) -> f64 {
        [10.0 + 3.0 * spend, 9.0 + 5.0 * spend][arm]
    }
    fn revenue(arm: usize, spend: f64, rng: &mut SmallRng) -> f64 {
        let noise = Normal::new(0.0, 3.0).expect("valid normal");
        revenue_truth(arm, spend) + noise.sample(rng)
    }
    fn click_truth(arm: usize, spend: f64) -> f64 {
        [0.02 + 0.04 * spend, 0.05 - 0.02 * spend][arm]
    }
    fn click(arm: usize, spend: f64, rng: &mut SmallRng) -> f64 {
        use rand::Rng;
        f64::from(u8::from(rng.random_bool(click_truth(arm, spend))))
    }
    let seeds = 100u64;
    let mut covered = 0;
    for seed in 0..seeds {
        for (lo, hi, truth) in contextual_intervals(seed, 400, revenue_truth, revenue) {
            covered += usize::from(lo <= truth && truth <= hi);
        }
    }
    let share = covered as f64 / (2 * seeds) as f64;
    assert!((0.85..=1.0).contains(&share), "revenue: covered {share}");

    let (mut covered, mut widths, mut count) = (0, 0.0, 0.0);
    for seed in 0..seeds {
        for (lo, hi, truth) in contextual_intervals(seed, 3000, click_truth, click) {
            covered += usize::from(lo <= truth && truth <= hi);
            widths += hi - lo;
            count += 1.0;
        }
    }
    let share = covered as f64 / count;
    assert!((0.85..=1.0).contains(&share), "clicks: covered {share}");
    // A 95% interval for a rate near 4% from about 1,500 outcomes per arm
    // is about ±0.01 wide; twice that is the bound (before: ±0.05).
    let half = widths / count / 2.0;
    assert!(half < 0.02, "clicks: mean half-width {half}");
}

// Both contextual policies keep their ridge statistics across a restart:
// θ, the residual noise and the tallies are the same after it (before,
// LinTS campaigns were not persisted and came back at λI).
#[test]
fn contextual_statistics_survive_a_restart() {
    use rand::Rng;
    for policy in [
        PolicySpec::LinUcb {
            alpha: 1.0,
            lambda: 1.0,
            epsilon: 0.1,
            features: vec!["spend".into()],
            missing_zero: false,
        },
        PolicySpec::LinTs {
            scale: 1.0,
            lambda: 1.0,
            epsilon: 0.1,
            features: vec!["spend".into()],
            missing_zero: false,
        },
    ] {
        let clock = Arc::new(AtomicU64::new(1_000_000));
        let store = Arc::new(MemoryStore::new());
        let e = engine(store.clone(), &clock, 5);
        let mut s = spec("ctx", 2, 3600, 0.0);
        s.policy = policy.clone();
        e.create_campaign(s).expect("create");
        let mut rng = SmallRng::seed_from_u64(9);
        for i in 0..600 {
            let spend: f64 = rng.random();
            let mut r = req("ctx", "");
            r.context = vec![("spend".into(), spend)];
            let c = e.choose(&r).expect("choose");
            clock.fetch_add(1_000, Ordering::SeqCst);
            if i < 500 {
                let value = if rng.random_bool(0.1 + 0.3 * spend) {
                    1.0
                } else {
                    0.0
                };
                e.reward(&c.decision_id, value).expect("reward");
            }
        }
        let before = e.stats("ctx", "").expect("stats");
        e.shutdown().expect("shutdown");
        drop(e);
        let e = engine(store, &clock, 5);
        let after = e.stats("ctx", "").expect("stats");
        for (x, y) in before[0].arms.iter().zip(&after[0].arms) {
            assert_eq!((x.pulls, x.pending), (y.pulls, y.pending), "{policy:?}");
            assert!(x.pulls > 100, "{policy:?}: {x:?}");
            assert!(x.theta.iter().any(|(_, t)| t.abs() > 1e-3), "{x:?}");
            for ((_, t), (_, u)) in x.theta.iter().zip(&y.theta) {
                assert!((t - u).abs() < 1e-9, "{policy:?}: θ {t} then {u}");
            }
            assert!((x.residual_sd - y.residual_sd).abs() < 1e-9, "{policy:?}");
        }
    }
}

fn export_all(e: &Engine, id: &str, pending: bool) -> Vec<ExportRecord> {
    let mut out = Vec::new();
    e.export_decisions(id, 0, None, pending, &mut |_, r| {
        out.push(r);
        true
    })
    .expect("export");
    out
}

// The decision log keeps every decision with the exact probabilities it
// was made with and its outcome, names decisions by position (never by a
// caller's id), survives a restart, and goes with its campaign.
#[test]
fn decision_log_exports_decisions_with_outcomes() {
    let clock = Arc::new(AtomicU64::new(5_000_000));
    let store = Arc::new(MemoryStore::new());
    let with_log = || {
        let mut o = options(&clock, 21, Mode::Default);
        o.journal.decision_log = crate::journal::log::LogOptions::default();
        o
    };
    let e = Engine::open(store.clone(), with_log()).expect("engine");
    e.create_campaign(spec("log", 3, 60, 0.0)).expect("create");
    let mut made = Vec::new();
    for i in 0..300u64 {
        clock.fetch_add(100, Ordering::SeqCst);
        let mut r = req("log", if i % 2 == 0 { "a" } else { "b" });
        if i % 10 == 0 {
            r.decision_id = Some(format!("customer-{i}"));
        }
        let c = e.choose(&r).expect("choose");
        if i % 3 == 0 {
            e.reward(&c.decision_id, 1.0).expect("reward");
        }
        made.push((c, i));
    }
    assert_eq!(export_all(&e, "log", false).len(), 100, "only resolved");
    assert_eq!(export_all(&e, "log", true).len(), 300);
    clock.fetch_add(120_000, Ordering::SeqCst);
    e.expire_due().expect("sweep");
    let log = export_all(&e, "log", false);
    assert_eq!(log.len(), 300);
    for (rec, (c, i)) in log.iter().zip(&made) {
        assert_eq!(rec.arm_id, c.arm_id);
        assert_eq!(rec.propensity, c.propensity);
        assert_eq!(rec.probabilities.len(), 3);
        assert_eq!(rec.probabilities[rec.arm_index], c.propensity, "exact");
        assert!((rec.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(
            !rec.decision_id.starts_with("customer"),
            "{}",
            rec.decision_id
        );
        assert_eq!(&*rec.segment, if i % 2 == 0 { "a" } else { "b" });
        match rec.outcome {
            ExportOutcome::Rewarded { value, .. } => assert!(i % 3 == 0 && value == 1.0),
            ExportOutcome::Default { value, .. } => assert!(i % 3 != 0 && value == 0.0),
            ExportOutcome::Pending => panic!("resolved"),
        }
    }
    let since = log[100].created_ms;
    let mut window = 0;
    e.export_decisions(
        "log",
        since,
        Some(log[199].created_ms),
        false,
        &mut |_, _| {
            window += 1;
            true
        },
    )
    .expect("window");
    assert_eq!(window, 100);
    e.shutdown().expect("shutdown");
    drop(e);
    let e = Engine::open(store.clone(), with_log()).expect("engine");
    assert_eq!(
        export_all(&e, "log", false),
        log,
        "the same after a restart"
    );
    e.sync().expect("sync");
    let report = clean(&store);
    assert_eq!(
        (report.decision_log.decisions, report.decision_log.outcomes),
        (300, 300),
        "{report}"
    );
    // `banditd check` reads every block: a damaged one is a violation.
    let mut damaged = None;
    store
        .scan(&mut |k, v| {
            if k.first() == Some(&crate::journal::log::LOG_TAG) && damaged.is_none() {
                let mut v = v.to_vec();
                v.truncate(v.len() - 1);
                damaged = Some((k.to_vec(), v));
            }
            Ok(())
        })
        .expect("scan");
    let (k, v) = damaged.expect("a log block");
    let original = {
        let mut found = None;
        store
            .scan(&mut |key, value| {
                if key == k.as_slice() {
                    found = Some(value.to_vec());
                }
                Ok(())
            })
            .expect("scan");
        found.expect("the block")
    };
    store
        .apply(&[crate::store::Op::Put(k.clone(), v)])
        .expect("damage");
    let report = check::check(&*store).expect("check");
    assert!(
        report.violations.iter().any(|v| v.contains("decision log")),
        "{report}"
    );
    store
        .apply(&[crate::store::Op::Put(k, original)])
        .expect("repair");
    clean(&store);
    e.delete_campaign("log").expect("delete");
    e.create_campaign(spec("log", 3, 60, 0.0))
        .expect("re-create");
    assert!(
        export_all(&e, "log", true).is_empty(),
        "the log went with the campaign"
    );
    e.sync().expect("sync");
    let mut log_keys = 0;
    store
        .scan(&mut |k, _| {
            log_keys += usize::from(k.first() == Some(&crate::journal::log::LOG_TAG));
            Ok(())
        })
        .expect("scan");
    assert_eq!(log_keys, 0);
}

// Contextual decisions are logged with their context and the policy's whole
// probability vector (LinUCB: ε/K plus the leaders' share; LinTS: the
// vector the arm was drawn from), the chosen arm's entry the propensity.
#[test]
fn decision_log_keeps_contextual_vectors_and_contexts() {
    let clock = Arc::new(AtomicU64::new(5_000_000));
    let mut o = options(&clock, 23, Mode::Default);
    o.journal.decision_log = crate::journal::log::LogOptions::default();
    let e = Engine::open(Arc::new(MemoryStore::new()), o).expect("engine");
    let features = vec!["age".to_string(), "is_mobile".to_string()];
    for (id, policy) in [
        (
            "ucb",
            PolicySpec::LinUcb {
                alpha: 1.0,
                lambda: 1.0,
                epsilon: 0.1,
                features: features.clone(),
                missing_zero: false,
            },
        ),
        (
            "lints",
            PolicySpec::LinTs {
                scale: 1.0,
                lambda: 1.0,
                epsilon: 0.1,
                features: features.clone(),
                missing_zero: false,
            },
        ),
    ] {
        let mut s = spec(id, 4, 60, 0.0);
        s.policy = policy;
        e.create_campaign(s).expect("create");
        for i in 0..50 {
            clock.fetch_add(10, Ordering::SeqCst);
            let mut r = req(id, "");
            r.context = vec![
                ("age".into(), f64::from(i) / 10.0),
                ("is_mobile".into(), 1.0),
            ];
            let c = e.choose(&r).expect("choose");
            e.reward(&c.decision_id, f64::from(i % 2)).expect("reward");
        }
        let log = export_all(&e, id, false);
        assert_eq!(log.len(), 50);
        for (i, rec) in log.iter().enumerate() {
            assert_eq!(rec.probabilities.len(), 4, "{id}");
            assert_eq!(rec.probabilities[rec.arm_index], rec.propensity, "{id}");
            assert!((rec.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(
                rec.probabilities.iter().all(|&p| p >= 0.1 / 4.0 - 1e-12),
                "{id}: the ε floor"
            );
            assert_eq!(
                rec.context,
                vec![
                    ("age".to_string(), i as f64 / 10.0),
                    ("is_mobile".to_string(), 1.0)
                ]
            );
        }
    }
}

// A decision the state remembers but the log lost is a violation of
// `banditd check` (they are written in one batch). 2,000 pending decisions
// fill more than one block (a block holds at most 6 KiB), whatever the
// batches' timing; the newest block is lost.
#[test]
fn check_finds_a_remembered_decision_missing_from_the_log() {
    let clock = Arc::new(AtomicU64::new(5_000_000));
    let store = Arc::new(MemoryStore::new());
    let mut o = options(&clock, 29, Mode::Default);
    o.journal.decision_log = crate::journal::log::LogOptions::default();
    let e = Engine::open(store.clone(), o).expect("engine");
    e.create_campaign(spec("lost", 10, 3600, 0.0))
        .expect("create");
    for _ in 0..2_000 {
        clock.fetch_add(10, Ordering::SeqCst);
        e.choose(&req("lost", "a")).expect("choose");
    }
    e.sync().expect("sync");
    let report = clean(&store);
    assert_eq!(report.decision_log.decisions, 2_000);
    assert!(report.decision_log.blocks >= 2, "{report}");
    let mut newest = None;
    store
        .scan(&mut |k, _| {
            if k.first() == Some(&crate::journal::log::LOG_TAG) && k.get(9) == Some(&b'd') {
                newest = Some(k.to_vec());
            }
            Ok(())
        })
        .expect("scan");
    store
        .apply(&[crate::store::Op::Delete(newest.expect("a decision block"))])
        .expect("lose");
    let report = check::check(&*store).expect("check");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("is not in the decision log")),
        "{report}"
    );
}

/// A Thompson campaign whose arms carry these values and budgets.
fn marketing_spec(id: &str, arms: &[(f64, crate::campaign::Budget)], holdout: f64) -> CampaignSpec {
    CampaignSpec {
        arms: arms
            .iter()
            .enumerate()
            .map(|(i, (value, budget))| ArmSpec {
                id: format!("arm{i}"),
                value: *value,
                budget: *budget,
                ..ArmSpec::default()
            })
            .collect(),
        holdout_fraction: holdout,
        ..spec(id, 1, 3600, 0.0)
    }
}

fn no_cap() -> crate::campaign::Budget {
    crate::campaign::Budget::default()
}

// A holdout of 20%: about a fifth of the decisions are flagged, each
// propensity is the exact mixture h/K + (1−h)·p, a holdout's reward changes
// no posterior, and the uplift of the policy over the holdout is reported
// with its interval; all of it survives a restart.
#[test]
fn holdout_decisions_are_flagged_exact_unlearned_and_give_the_uplift() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 21);
    e.create_campaign(marketing_spec("h", &[(1.0, no_cap()); 3], 0.2))
        .expect("create");
    let mut rng = SmallRng::seed_from_u64(3);
    let (mut held, n) = (0u32, 4000u32);
    for _ in 0..n {
        let before = totals(&e, "h");
        let d = e.choose(&req("h", "s")).expect("choose");
        assert!(d.propensity >= 0.2 / 3.0 - 1e-12, "{}", d.propensity);
        // arm0 converts at 30% (the policy finds it), the others at 5%.
        let rate = if d.arm == 0 { 0.3 } else { 0.05 };
        let r = f64::from(u8::from(rand::Rng::random_bool(&mut rng, rate)));
        e.reward(&d.decision_id, r).expect("reward");
        if d.holdout {
            held += 1;
            assert_eq!(totals(&e, "h"), before, "a holdout decision is not learned");
        }
    }
    // Binomial(4000, 0.2): sd 25; ±5 sd.
    assert!((675..=925).contains(&held), "{held} holdout decisions");
    let stats = e.stats("h", "").expect("stats");
    let u = stats[0].uplift.expect("uplift");
    assert_eq!(u.holdout_decisions, u64::from(held));
    assert_eq!(u.policy_decisions, u64::from(n - held));
    // The holdout converts at about (0.3 + 0.05 + 0.05)/3 ≈ 0.133; the policy
    // near 0.3: the uplift's interval excludes 0.
    assert!(u.ci_low > 0.0 && u.ci_high > u.uplift, "{u:?}");
    assert!((u.holdout_mean - 0.133).abs() < 0.04, "{u:?}");
    // The logged vector is the mixture: every entry at least h/K, summing to 1.
    let records = export_all(&e, "h", false);
    assert_eq!(records.iter().filter(|r| r.holdout).count(), held as usize);
    for r in records.iter().take(200) {
        assert!((r.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(
            r.probabilities[r.arm_index].to_bits(),
            r.propensity.to_bits()
        );
    }
    e.shutdown().expect("shutdown");
    drop(e);
    clean(&store);
    let e = engine(store, &clock, 21);
    assert_eq!(e.stats("h", "").expect("stats"), stats);
}

// A lifetime cap of 7 impressions holds exactly under 4 threads of
// concurrent calls: the arm gets 7 decisions, then probability 0 (the
// others renormalised), GetStats shows it capped, and a restart keeps it
// capped. With every arm capped, Choose is RESOURCE_EXHAUSTED.
#[test]
fn an_impression_cap_holds_exactly_under_concurrency_and_restarts() {
    use crate::campaign::{Budget, CapPeriod};
    let cap = |n| Budget {
        max_impressions: n,
        max_conversions: 0,
        period: CapPeriod::Lifetime,
    };
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let store = Arc::new(MemoryStore::new());
    let e = Arc::new(engine(store.clone(), &clock, 22));
    e.create_campaign(marketing_spec("b", &[(1.0, cap(7)), (1.0, cap(400))], 0.0))
        .expect("create");
    let served: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                s.spawn(move || {
                    (0..60)
                        .map(|_| e.choose(&req("b", "")).expect("choose").arm)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    let arm0 = served.iter().flatten().filter(|&&a| a == 0).count();
    assert_eq!(arm0, 7, "the cap is reached exactly, never exceeded");
    let d = e.choose(&req("b", "")).expect("choose");
    assert_eq!(
        (d.arm, d.propensity),
        (1, 1.0),
        "the capped arm has probability 0"
    );
    let stats = e.stats("b", "").expect("stats");
    assert!(stats[0].arms[0].capped && !stats[0].arms[1].capped);
    assert_eq!(stats[0].arms[0].period_impressions, 7);
    e.shutdown().expect("shutdown");
    drop(e);
    clean(&store);
    let e = engine(store, &clock, 22);
    let stats = e.stats("b", "").expect("stats");
    assert!(stats[0].arms[0].capped);
    assert_eq!(stats[0].arms[1].period_impressions, 241 - 7);
    for _ in 0..(400 - 234) {
        assert_eq!(e.choose(&req("b", "")).expect("choose").arm, 1);
    }
    let before = e.fingerprint();
    assert!(matches!(
        e.choose(&req("b", "")),
        Err(Error::ResourceExhausted(_))
    ));
    assert_eq!(e.fingerprint(), before, "a refused call changes nothing");
}

// A conversion cap reserves one conversion per pending decision: with a
// cap of 3, conversions + pending never pass 3 whatever the rewards, every
// decision of the arm converts (one round later) and it stops at exactly 3.
#[test]
fn a_conversion_cap_is_never_exceeded_by_pending_decisions() {
    use crate::campaign::{Budget, CapPeriod};
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 23);
    let capped = Budget {
        max_impressions: 0,
        max_conversions: 3,
        period: CapPeriod::Lifetime,
    };
    let mut spec = marketing_spec("v", &[(1.0, capped), (1.0, no_cap())], 0.0);
    spec.reward_timeout_seconds = 10;
    e.create_campaign(spec).expect("create");
    let mut waiting: Vec<Arc<str>> = Vec::new();
    let mut chosen0 = 0;
    for round in 0..200u64 {
        clock.store(1_000_000 + round * 4_000, Ordering::Relaxed);
        for id in waiting.drain(..) {
            e.reward(&id, 1.0).expect("reward within the timeout");
        }
        for _ in 0..3 {
            let d = e.choose(&req("v", "")).expect("choose");
            if d.arm == 0 {
                chosen0 += 1;
                waiting.push(d.decision_id);
            }
            let a = &e.stats("v", "").expect("stats")[0].arms[0];
            assert!(
                a.period_conversions + a.pending <= 3,
                "round {round}: {a:?}"
            );
        }
    }
    let a = &e.stats("v", "").expect("stats")[0].arms[0];
    assert_eq!((a.period_conversions, chosen0), (3, 3));
    assert!(a.capped);
}

// A daily impression cap is paced over the UTC day: by 6:00 at most a
// quarter is spent however much traffic comes, by the end of the day all
// of it, and the next day starts afresh.
#[test]
fn a_daily_cap_is_paced_over_the_day() {
    use crate::campaign::{Budget, CapPeriod};
    let day0 = 20_000 * 86_400_000u64;
    let clock = Arc::new(AtomicU64::new(day0));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 24);
    let daily = Budget {
        max_impressions: 240,
        max_conversions: 0,
        period: CapPeriod::Day,
    };
    e.create_campaign(marketing_spec("p", &[(5.0, daily), (1.0, no_cap())], 0.0))
        .expect("create");
    let mut by_hour = vec![0u64; 48];
    // 100 requests a minute for two days; arm 0 is the favourite (value 5).
    for minute in 0..(48 * 60u64) {
        clock.store(day0 + minute * 60_000, Ordering::Relaxed);
        for _ in 0..100 {
            let d = e.choose(&req("p", "")).expect("choose");
            if d.arm == 0 {
                by_hour[(minute / 60) as usize] += 1;
            }
        }
        if minute % 30 == 0 {
            e.expire_due().expect("sweep");
        }
    }
    let first6: u64 = by_hour[..6].iter().sum();
    assert!((59..=61).contains(&first6), "{first6} by 6:00 of 240/day");
    let day1: u64 = by_hour[..24].iter().sum();
    let day2: u64 = by_hour[24..].iter().sum();
    assert_eq!((day1, day2), (240, 240), "{by_hour:?}");
    assert!(by_hour.iter().all(|&h| h <= 11), "evenly: {by_hour:?}");
}

// Value-aware Thompson: arm0 converts at 8% for 1, arm1 at 4% for 5; after
// learning, the campaign plays arm1 (0.20 per decision against 0.08), and
// GetStats gives the expected value per decision.
#[test]
fn thompson_prefers_the_higher_rate_times_value() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 25);
    e.create_campaign(marketing_spec(
        "val",
        &[(1.0, no_cap()), (5.0, no_cap())],
        0.0,
    ))
    .expect("create");
    let mut rng = SmallRng::seed_from_u64(8);
    let mut late = [0u32; 2];
    for i in 0..6000 {
        let d = e.choose(&req("val", "")).expect("choose");
        let rate = [0.08, 0.04][d.arm];
        let r = f64::from(u8::from(rand::Rng::random_bool(&mut rng, rate)));
        e.reward(&d.decision_id, r).expect("reward");
        if i >= 5000 {
            late[d.arm] += 1;
        }
    }
    assert!(late[1] > 900, "{late:?}");
    let s = e.stats("val", "").expect("stats");
    let a = &s[0].arms[1];
    assert_eq!(a.value, 5.0);
    assert!((a.expected_value - 5.0 * a.mean).abs() < 1e-12);
    assert!((a.expected_value - 0.2).abs() < 0.03, "{a:?}");
    assert!(s[0].arms[1].prob_best > 0.95, "by value: {:?}", s[0].arms);
}

fn slate_req(campaign: &str, segment: &str, count: usize) -> ChooseRequest {
    ChooseRequest {
        count,
        ..req(campaign, segment)
    }
}

/// Resolved outcomes per arm.
fn pulls(e: &Engine, id: &str) -> Vec<u64> {
    e.stats(id, "").expect("stats")[0]
        .arms
        .iter()
        .map(|a| a.pulls - a.pending)
        .collect()
}

// A Thompson slate of 3 of 4 arms: distinct arms, each slot's logged
// vector sums to 1 and names its arm's propensity, and over many slates
// from one posterior each arm is at each slot as often as its logged
// position-wise propensity says. A reward names its slot and updates that
// slot's arm only; a slot the slate does not have, or the id of a slot
// other than the first, changes nothing.
#[test]
fn thompson_slates_are_distinct_exact_and_learned_slot_by_slot() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 5);
    e.create_campaign(spec("s", 4, 3600, 0.0)).expect("create");
    // A posterior that ranks the arms: arm k converted k of 8 times.
    for arm in 0..4usize {
        for i in 0..8 {
            loop {
                let d = e.choose(&req("s", "")).expect("choose");
                if d.arm == arm {
                    e.reward(&d.decision_id, f64::from(u8::from(i < arm)))
                        .expect("reward");
                    break;
                }
                e.reward(&d.decision_id, 0.5).expect("reward");
            }
        }
    }
    let before = pulls(&e, "s");
    // No outcome and no time passes, but the pending slots count as young
    // evidence: each slate is checked against the vector it was drawn from,
    // as logged (Σ (seen − logged) / √Σ p(1 − p) per slot and arm).
    let n = 20_000;
    let mut ids = Vec::new();
    for _ in 0..n {
        let c = e.choose(&slate_req("s", "", 3)).expect("slate");
        assert_eq!(c.slate.len(), 3);
        assert_eq!(
            (c.arm, c.propensity),
            (c.slate[0].arm, c.slate[0].propensity)
        );
        let mut arms: Vec<usize> = c.slate.iter().map(|s| s.arm).collect();
        arms.sort_unstable();
        arms.dedup();
        assert_eq!(arms.len(), 3, "distinct arms: {:?}", c.slate);
        ids.push(c);
    }
    let records = export_all(&e, "s", true);
    let mut seen = [[0f64; 4]; 3];
    let mut expected = [[0f64; 4]; 3];
    let mut variance = [[0f64; 4]; 3];
    let mut logged: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for r in records
        .iter()
        .filter(|r| matches!(r.outcome, ExportOutcome::Pending))
    {
        let j = r.slot as usize;
        assert!((r.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(
            r.probabilities[r.arm_index].to_bits(),
            r.propensity.to_bits()
        );
        seen[j][r.arm_index] += 1.0;
        for (a, &p) in r.probabilities.iter().enumerate() {
            expected[j][a] += p;
            variance[j][a] += p * (1.0 - p);
        }
        if r.decision_id == ids[0].decision_id {
            logged[j] = r.probabilities.clone();
        }
    }
    for j in 0..3 {
        assert_eq!(
            seen[j].iter().sum::<f64>(),
            f64::from(n),
            "one record per slot"
        );
        for a in 0..4 {
            let z = (seen[j][a] - expected[j][a]) / variance[j][a].sqrt().max(1e-9);
            assert!(
                z.abs() < 5.0,
                "slot {j} arm {a}: seen {}, logged {}",
                seen[j][a],
                expected[j][a]
            );
        }
    }
    // The best arm (3) leads the first slot; every arm is in some slot.
    assert!(
        (0..3).all(|a| logged[0][3] > logged[0][a]),
        "{:?}",
        logged[0]
    );
    assert!((0..4).all(|a| (0..3).any(|j| logged[j][a] > 0.0)));
    // A reward for slot 2 updates slot 2's arm only.
    let c = &ids[0];
    e.reward_slot(&c.decision_id, 2, 1.0).expect("slot 2");
    let mut want = before.clone();
    want[c.slate[2].arm] += 1;
    assert_eq!(pulls(&e, "s"), want);
    assert_eq!(
        e.reward_slot(&c.decision_id, 2, 1.0).expect("again"),
        RewardOutcome::Duplicate
    );
    assert!(matches!(
        e.reward_slot(&c.decision_id, 3, 1.0),
        Err(Error::InvalidArgument(m)) if m.contains("no slot 3")
    ));
    let (uid, at) = crate::journal::format::parse_decision_id(&c.decision_id).expect("server id");
    let slot1 = super::ids::own_id(uid, (at.0, at.1 + 1));
    assert!(matches!(e.reward(&slot1, 1.0), Err(Error::NotFound(_))));
    assert_eq!(pulls(&e, "s"), want, "refused rewards change nothing");
    // Slot 0 by the plain reward.
    e.reward(&c.decision_id, 0.0).expect("slot 0");
    want[c.slate[0].arm] += 1;
    assert_eq!(pulls(&e, "s"), want);
    // The pending slots survive a restart and can still be rewarded.
    let stats = e.stats("s", "").expect("stats");
    e.shutdown().expect("shutdown");
    drop(e);
    clean(&store);
    let e = engine(store, &clock, 5);
    assert_eq!(e.stats("s", "").expect("stats"), stats);
    e.reward_slot(&c.decision_id, 1, 1.0)
        .expect("slot 1 after restart");
    want[c.slate[1].arm] += 1;
    assert_eq!(pulls(&e, "s"), want);
    let other = &ids[1];
    e.reward_slot(&other.decision_id, 2, 1.0)
        .expect("another slate");
}

// Bad slate requests are refused and change nothing: more slots than the
// limit or than active arms (INVALID_ARGUMENT), more than the arms a cap
// leaves (RESOURCE_EXHAUSTED); a caller's id replays its slate, and is
// refused for another count.
#[test]
fn slate_requests_are_checked_and_replayed() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 9);
    let capped = crate::campaign::Budget {
        max_impressions: 2,
        ..no_cap()
    };
    e.create_campaign(marketing_spec(
        "c",
        &[(1.0, no_cap()), (1.0, no_cap()), (1.0, capped)],
        0.0,
    ))
    .expect("create");
    let bad = |count: usize| e.choose(&slate_req("c", "s", count));
    assert!(matches!(bad(17), Err(Error::InvalidArgument(m)) if m.contains("16 slots")));
    assert!(matches!(bad(4), Err(Error::InvalidArgument(m)) if m.contains("3 active arms")));
    assert_eq!(totals(&e, "c"), (0, 0, 0.0), "nothing changed");
    // A slate of 3 shows the capped arm each time, until its cap.
    for _ in 0..2 {
        let c = bad(3).expect("slate of 3");
        assert!(c.slate.iter().any(|s| s.arm == 2));
    }
    assert!(matches!(bad(3), Err(Error::ResourceExhausted(m)) if m.contains("only 2 arms")));
    let c = bad(2).expect("a slate of the 2 uncapped arms");
    assert!(c.slate.iter().all(|s| s.arm != 2));
    assert_eq!(totals(&e, "c").1, 8, "2 + 2 slates of 3, 1 of 2 pending");
    let id = ChooseRequest {
        decision_id: Some("page-7".into()),
        ..slate_req("c", "s", 2)
    };
    let first = e.choose(&id).expect("with an id");
    assert_eq!(e.choose(&id).expect("retry"), first);
    assert!(matches!(
        e.choose(&ChooseRequest { count: 1, ..id.clone() }),
        Err(Error::InvalidArgument(m)) if m.contains("slate of 2 slots")
    ));
    e.reward_slot("page-7", 1, 1.0)
        .expect("slot 1 by the caller's id");
    assert!(matches!(
        e.reward_slot("page-7", 2, 1.0),
        Err(Error::InvalidArgument(_))
    ));
    e.shutdown().expect("shutdown");
    drop(e);
    clean(&store);
}

// Score-ordered slates: LinUCB without exploration ranks the arms by their
// upper bound, each slot certain; ε-greedy puts the best mean first with
// 1 − ε + ε/K. A holdout slate mixes h/K into every slot.
#[test]
fn score_ordered_slates_and_holdout_slates() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 13);
    let mut lin = spec("l", 3, 3600, 0.0);
    lin.policy = linucb(0.0, "x");
    e.create_campaign(lin).expect("create");
    let ctx = |x: f64| ChooseRequest {
        context: vec![("x".into(), x)],
        ..slate_req("l", "", 3)
    };
    // Teach arm k a reward of k at x = 1, one slot at a time.
    for _ in 0..20 {
        let c = e.choose(&ctx(1.0)).expect("slate");
        for (j, s) in c.slate.iter().enumerate() {
            e.reward_slot(&c.decision_id, j, s.arm as f64)
                .expect("reward");
        }
    }
    let c = e.choose(&ctx(1.0)).expect("slate");
    let order: Vec<usize> = c.slate.iter().map(|s| s.arm).collect();
    assert_eq!(order, vec![2, 1, 0], "by upper bound");
    assert!(c.slate.iter().all(|s| s.propensity == 1.0), "{:?}", c.slate);

    let mut eg = spec("g", 4, 3600, 0.0);
    eg.policy = PolicySpec::EpsilonGreedy { epsilon: 0.2 };
    eg.holdout_fraction = 0.1;
    e.create_campaign(eg).expect("create");
    for _ in 0..200 {
        let c = e.choose(&slate_req("g", "", 2)).expect("slate");
        for (j, s) in c.slate.iter().enumerate() {
            let r = f64::from(u8::from(s.arm == 1));
            e.reward_slot(&c.decision_id, j, r).expect("reward");
        }
    }
    let mut held = 0;
    for _ in 0..200 {
        let c = e.choose(&slate_req("g", "", 2)).expect("slate");
        held += usize::from(c.holdout);
        for s in &c.slate {
            assert!(s.propensity >= 0.1 / 4.0 - 1e-12);
        }
        if c.slate[0].arm == 1 {
            let want = 0.1 / 4.0 + 0.9 * (0.8 + 0.2 / 4.0);
            assert!(
                (c.slate[0].propensity - want).abs() < 1e-12,
                "{:?}",
                c.slate
            );
        }
    }
    // Binomial(200, 0.1): 20 ± 4.2.
    assert!((3..=45).contains(&held), "{held}");
    e.shutdown().expect("shutdown");
    drop(e);
    clean(&store);
}

// While conversions are in and non-conversions still wait for their
// timeout, the uplift counts the pending decisions by G(age) as the
// posteriors do: each side's mean is near its true rate, not near 1 (what
// counting resolved decisions only gives, since only conversions have
// resolved); once everything has resolved the figures are the plain means.
#[test]
fn uplift_counts_pending_decisions_by_their_delay_weight() {
    let t0 = 1_000_000;
    let clock = Arc::new(AtomicU64::new(t0));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 31);
    e.create_campaign(marketing_spec("u", &[(1.0, no_cap()); 2], 0.5))
        .expect("create");
    let rate = [0.3, 0.1];
    let mut rng = SmallRng::seed_from_u64(8);
    let mut converts = Vec::new();
    let (mut sum, mut n) = ([0.0f64; 2], [0u32; 2]);
    for _ in 0..4000 {
        let d = e.choose(&req("u", "s")).expect("choose");
        let side = usize::from(d.holdout);
        let c = rand::Rng::random_bool(&mut rng, rate[d.arm]);
        sum[side] += f64::from(u8::from(c));
        n[side] += 1;
        if c {
            converts.push(d.decision_id);
        }
    }
    let truth = [sum[0] / f64::from(n[0]), sum[1] / f64::from(n[1])];
    // Every conversion arrives 10 minutes later; 30 minutes in, the others
    // are still pending (the timeout is an hour).
    clock.store(t0 + 600_000, Ordering::Relaxed);
    for id in &converts {
        e.reward(id, 1.0).expect("reward");
    }
    clock.store(t0 + 1_800_000, Ordering::Relaxed);
    let u = e.stats("u", "s").expect("stats")[0].uplift.expect("uplift");
    assert!(
        (u.policy_mean - truth[0]).abs() < 0.03,
        "{u:?} against {truth:?}"
    );
    assert!(
        (u.holdout_mean - truth[1]).abs() < 0.03,
        "{u:?} against {truth:?}"
    );
    assert!(
        u.ci_low < truth[0] - truth[1] && truth[0] - truth[1] < u.ci_high,
        "{u:?}"
    );
    // After the timeout: the plain means of every decision.
    clock.store(t0 + 3_700_000, Ordering::Relaxed);
    e.expire_due().expect("sweep");
    let u = e.stats("u", "").expect("stats")[0].uplift.expect("uplift");
    assert!((u.policy_mean - truth[0]).abs() < 1e-12, "{u:?}");
    assert!((u.holdout_mean - truth[1]).abs() < 1e-12, "{u:?}");
    assert_eq!(u.policy_decisions + u.holdout_decisions, 4000);
    e.shutdown().expect("shutdown");
    drop(e);
    clean(&store);
}

/// Campaign `id`'s campaign-wide tallies set as if arm a had learned
/// `outcomes[a] = (trials, successes)` (a state that takes tens of
/// thousands of decisions to reach through `choose`).
fn set_outcomes(e: &Engine, id: &str, outcomes: &[(u64, f64)]) {
    let cell = e.campaign(id).expect("campaign");
    let mut st = cell.state.lock();
    for (a, &(n, sum)) in outcomes.iter().enumerate() {
        st.aggregate[a].counts = crate::policy::thompson::ArmCounts { n, sum };
    }
}

// One P(best), exact where marketing lives, for GetStats, the single-offer
// draw and a slate's first slot. Rare conversions: Beta(2, 20000) against
// Beta(4, 30000) is 0.337 by the closed form (the ±8 sd quadrature this
// replaces reported 0.440 and drew from it). Values: two equal
// Beta(2, 20000) posteriors worth 1 and 1.5 split 35.2% / 64.8% (it
// reported 30.7% / 69.3%, and a slate of the same campaign logged 0.6416).
#[test]
fn stats_draws_and_slates_share_an_exact_p_best() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 12);
    let no_floor = PolicySpec::Thompson {
        prior_alpha: 1.0,
        prior_beta: 1.0,
        pooling: crate::campaign::Pooling::EmpiricalBayes,
        exploration_floor: 0.0,
    };
    let mut rare = spec("rare", 2, 3600, 0.0);
    rare.policy = no_floor.clone();
    e.create_campaign(rare).expect("create");
    set_outcomes(&e, "rare", &[(20_000, 1.0), (30_002, 3.0)]);
    let exact = crate::policy::beta::prob_greater_integer(2, 20_000.0, 4.0, 30_000.0);
    assert!((exact - 0.337).abs() < 5e-4);
    let s = e.stats("rare", "").expect("stats");
    let shown = [s[0].arms[0].prob_best, s[0].arms[1].prob_best];
    assert!(
        (shown[0] - exact).abs() < 1e-4,
        "GetStats {shown:?} vs {exact}"
    );
    let c = e.choose(&req("rare", "")).expect("choose");
    assert!(
        (c.propensity - shown[c.arm]).abs() < 1e-12,
        "{c:?} {shown:?}"
    );
    let c = e.choose(&slate_req("rare", "", 2)).expect("slate");
    assert!((c.slate[0].propensity - shown[c.slate[0].arm]).abs() < 1e-12);

    let mut valued = spec("valued", 2, 3600, 0.0);
    valued.policy = no_floor;
    valued.arms[1].value = 1.5;
    e.create_campaign(valued).expect("create");
    set_outcomes(&e, "valued", &[(20_000, 1.0), (20_000, 1.0)]);
    let s = e.stats("valued", "").expect("stats");
    let shown = [s[0].arms[0].prob_best, s[0].arms[1].prob_best];
    // 0.35199 by the adaptive reference (policy::prob_best's tests).
    assert!((shown[0] - 0.35199).abs() < 1e-4, "GetStats {shown:?}");
    for _ in 0..20 {
        let c = e.choose(&slate_req("valued", "", 2)).expect("slate");
        assert!((c.slate[0].propensity - shown[c.slate[0].arm]).abs() < 1e-12);
        let c = e.choose(&req("valued", "")).expect("choose");
        assert!((c.propensity - shown[c.arm]).abs() < 1e-12);
    }
}

// A Thompson vector is remade when a posterior has moved, not because time
// passed, traffic came or a segment is new: campaign-wide with a 1-minute
// window and one decision every 5 s, under 1% of decisions (the old rule,
// "a sixteenth of the window passed", remade it on almost every one); 500
// young segments with Zipf traffic (40 decisions each on average: their
// posteriors do move), under a quarter (the old rule made one at each new
// segment's first decision and then every other decision).
#[test]
fn vectors_are_remade_when_posteriors_move_not_with_time_or_segments() {
    let rates = [
        0.02, 0.022, 0.024, 0.026, 0.028, 0.03, 0.032, 0.034, 0.036, 0.038,
    ];
    let run = |segments: usize, timeout: u32, step_ms: u64| {
        let clock = Arc::new(AtomicU64::new(1_000_000));
        let e = engine(Arc::new(MemoryStore::new()), &clock, 13);
        e.create_campaign(spec("c", 10, timeout, 0.0))
            .expect("create");
        let weights: Vec<f64> = (1..=segments).map(|i| 1.0 / i as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut rng = SmallRng::seed_from_u64(13);
        let n = 20_000;
        for i in 0..n {
            clock.fetch_add(step_ms, Ordering::SeqCst);
            if i % 20 == 0 {
                e.expire_due().expect("sweep");
            }
            let mut u = rand::Rng::random::<f64>(&mut rng) * total;
            let mut s = 0;
            while s + 1 < segments && u > weights[s] {
                u -= weights[s];
                s += 1;
            }
            let name = if segments == 1 {
                String::new()
            } else {
                format!("s{s}")
            };
            let c = e.choose(&req("c", &name)).expect("choose");
            if rand::Rng::random::<f64>(&mut rng) < rates[c.arm] {
                e.reward(&c.decision_id, 1.0).expect("reward");
            }
        }
        let work = e.vector_work("c").expect("work");
        (
            work.made as f64 / f64::from(n),
            work.checks as f64 / f64::from(n),
        )
    };
    let (made, checks) = run(1, 60, 5_000);
    println!("1-minute window: {made} {checks}");
    assert!(
        made < 0.01 && checks < 0.2,
        "1-minute window: {made} {checks}"
    );
    let (made, checks) = run(500, 86_400, 1_000);
    assert!(made < 0.25 && checks < 0.6, "500 segments: {made} {checks}");
}

// Deferred vectors (the daemon's mode): no decision computes a vector. The
// first decisions draw from the uniform split, decisions whose posterior
// moved keep the vector they have, and the vectors asked for arrive when
// the background task runs, from the posterior as it is then.
#[test]
fn deferred_vectors_are_made_off_the_decision_path() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let mut o = options(&clock, 14, Mode::Default);
    o.vectors = VectorMode::Deferred;
    let e = Engine::open(Arc::new(MemoryStore::new()), o).expect("engine");
    e.create_campaign(spec("d", 3, 3600, 0.0)).expect("create");
    let first = e.choose(&req("d", "")).expect("choose");
    assert!((first.propensity - 1.0 / 3.0).abs() < 1e-12, "{first:?}");
    for _ in 0..300 {
        let c = e.choose(&req("d", "")).expect("choose");
        e.reward(&c.decision_id, f64::from(u8::from(c.arm == 2)))
            .expect("reward");
    }
    assert_eq!(
        e.vector_work("d").expect("work").made,
        0,
        "no decision made one"
    );
    assert!(e.make_wanted_vectors() >= 1);
    let made = e.vector_work("d").expect("work").made;
    assert!(made >= 1);
    // The new vector is P(best) now (what GetStats computes), with the floor.
    let best = e.stats("d", "").expect("stats")[0].arms[2].prob_best;
    let c = e.choose(&req("d", "")).expect("choose");
    let floor = crate::campaign::DEFAULT_EXPLORATION_FLOOR;
    assert_eq!(c.arm, 2, "{c:?}");
    assert!((c.propensity - (floor + (1.0 - 3.0 * floor) * best)).abs() < 1e-12);
    assert!(best > 0.99, "{best}");
    assert_eq!(e.make_wanted_vectors(), 0, "nothing moved since");
}
