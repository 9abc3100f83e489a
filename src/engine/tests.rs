//! Engine rules under a manual clock: expiry exactly once, retention,
//! reload from the store, determinism.

use super::*;
use crate::campaign::PolicySpec;
use crate::store::MemoryStore;

fn spec(id: &str, arms: usize, timeout_s: u32, default_reward: f64) -> CampaignSpec {
    CampaignSpec {
        id: id.into(),
        arms: (0..arms)
            .map(|i| ArmSpec {
                id: format!("arm{i}"),
                retired: false,
            })
            .collect(),
        policy: PolicySpec::thompson_default(),
        reward_timeout_seconds: timeout_s,
        default_reward,
    }
}

fn engine(store: Arc<MemoryStore>, clock: &Arc<AtomicU64>, seed: u64) -> Engine {
    Engine::open(
        store,
        EngineOptions {
            seed: Some(seed),
            clock: Clock::Manual(clock.clone()),
        },
    )
    .expect("engine")
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
    assert!(store.load().expect("load").decisions.is_empty());
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
    drop(e);
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

// A restart after the decision's write but before its row's (the crash
// window of `record_outcome`) counts the outcome exactly once, also after
// further restarts; a restart after both writes does not count it again.
#[test]
fn interrupted_outcome_write_is_folded_in_exactly_once() {
    use crate::store::{PosteriorRow, Store};
    let clock = Arc::new(AtomicU64::new(0));
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), &clock, 6);
    e.create_campaign(spec("c", 2, 10, 0.0)).expect("create");
    let d1 = e.choose(&req("c", "s")).expect("choose");
    e.reward(&d1.decision_id, 1.0).expect("reward");
    let d2 = e.choose(&req("c", "s")).expect("choose");
    drop(e);
    // Simulate the crash window for d2: its resolved record reached the
    // store, its row did not.
    let snap = store.load().expect("load");
    let mut rec = snap
        .decisions
        .iter()
        .find(|d| *d.id == *d2.decision_id)
        .cloned()
        .expect("d2");
    rec.status = DecisionStatus::Rewarded;
    rec.outcome_seq = 2;
    rec.reward = 1.0;
    store.put_decision(&rec).expect("put");
    for _ in 0..3 {
        let e = engine(store.clone(), &clock, 6);
        assert_eq!(totals(&e, "c"), (2, 0, 2.0));
        assert_eq!(
            e.reward(&d2.decision_id, 1.0).expect("dup"),
            RewardOutcome::Duplicate
        );
    }
    let rows: Vec<PosteriorRow> = store
        .load()
        .expect("load")
        .posteriors
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(rows.iter().map(|r| r.counts.n).sum::<u64>(), 2);
    // The next outcome continues the sequence.
    let e = engine(store.clone(), &clock, 6);
    let d3 = e.choose(&req("c", "s")).expect("choose");
    e.reward(&d3.decision_id, 1.0).expect("reward");
    drop(e);
    let e = engine(store, &clock, 6);
    assert_eq!(totals(&e, "c"), (3, 0, 3.0));
}

// A contextual decision that times out learns the default reward with the
// context it was made with: θ moves towards the default for that customer.
#[test]
fn contextual_expiry_updates_the_arm_with_the_stored_context() {
    let clock = Arc::new(AtomicU64::new(0));
    let e = engine(Arc::new(MemoryStore::new()), &clock, 7);
    let mut s = spec("ctx", 1, 10, -2.0);
    s.policy = PolicySpec::LinUcb {
        alpha: 1.0,
        lambda: 1.0,
        epsilon: 0.0,
        features: vec!["is_mobile".into()],
        missing_zero: false,
    };
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

// Server-generated ids name their campaign and slot: they parse back, sort
// in creation order, and a caller may not invent one; a caller-chosen id and
// an id from before a restart resolve through the foreign index.
#[test]
fn own_ids_parse_back_and_cannot_be_forged() {
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
        let (no, slot) = e.parse_own_id(&c.decision_id).expect("own id parses");
        let expect = format!("{}-{no:x}-{slot:012x}", e.id_prefix);
        assert_eq!(*c.decision_id, *expect);
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
    let (no, slot) = e.parse_own_id(&d.decision_id).expect("parses");
    let forged = format!("{}-{no:x}-{:012x}", e.id_prefix, slot + 5);
    retry.decision_id = Some(forged.clone());
    assert!(matches!(e.choose(&retry), Err(Error::InvalidArgument(_))));
    assert!(matches!(e.reward(&forged, 1.0), Err(Error::NotFound(_))));
    // Caller-chosen ids, and all ids after a restart, go through the index.
    let mut own = req("a", "s");
    own.decision_id = Some("order-17".into());
    let mine = e.choose(&own).expect("caller id");
    assert_eq!(&*mine.decision_id, "order-17");
    drop(e);
    let e = engine(store, &clock, 3);
    assert!(
        e.parse_own_id(&d.decision_id).is_none(),
        "new prefix per process"
    );
    assert_eq!(
        e.reward(&d.decision_id, 1.0).expect("old id"),
        RewardOutcome::Learned
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
