//! Propensities are exact, tested the strong way: from the decision log's
//! full probability vectors, for every arm k (and, for slates, every
//! slot), the standardised sum
//!
//! z_k = Σ_t (1[a_t = k] − p_tk) / √(Σ_t p_tk (1 − p_tk))
//!
//! stays within ±4 over more than 10,000 decisions with rewards flowing
//! (each decision's vector is the one it was drawn from, whatever moved in
//! between: outcomes arriving late, expiries, pooling, decay). A vector that
//! was not the one the arm was drawn from (a stale cache logged after a
//! refresh, a floor applied twice, a slate marginal counted from other
//! draws) drifts by far more than 4 standard deviations over this many
//! decisions. (An inverse-propensity estimate of a rarely drawn arm's rate
//! is heavy-tailed and no test of this.)

use banditd::campaign::{ArmSpec, CampaignSpec, PolicySpec, Pooling};
use banditd::engine::{ChooseRequest, Clock, Engine, EngineOptions, VectorMode};
use banditd::journal::log::LogOptions;
use banditd::store::MemoryStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const DECISIONS: usize = 12_000;

/// How each customer is asked and what they do.
struct Traffic {
    /// Who computes Thompson vectors: with `Deferred`, vectors asked for
    /// are made every 7 decisions (as the daemon's background task would,
    /// a little later), and an offer is added half-way.
    mode: VectorMode,
    /// Conversion rate per arm (for contextual campaigns, at a zero context).
    rates: Vec<f64>,
    /// Segments the requests name, at random ("" = campaign-wide).
    segments: Vec<String>,
    /// Slots of a slate (1: a single offer).
    count: usize,
    /// Context features (contextual campaigns), each uniform in [0, 1].
    features: usize,
}

fn arms(values: &[f64]) -> Vec<ArmSpec> {
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| ArmSpec {
            id: format!("offer-{i}"),
            value,
            ..ArmSpec::default()
        })
        .collect()
}

fn thompson(floor: f64, pooling: Pooling) -> PolicySpec {
    PolicySpec::Thompson {
        prior_alpha: 1.0,
        prior_beta: 1.0,
        pooling,
        exploration_floor: floor,
    }
}

/// Runs the traffic through an engine with a decision log: one decision a
/// second, conversions reported 0–120 s later, the rest expiring at the
/// 600 s timeout. Returns z per slot and arm.
fn z_scores(spec: CampaignSpec, t: &Traffic, seed: u64) -> Vec<Vec<f64>> {
    let clock = Arc::new(AtomicU64::new(1_000_000_000));
    let mut options = EngineOptions {
        seed: Some(seed),
        clock: Clock::Manual(clock.clone()),
        vectors: t.mode,
        ..EngineOptions::default()
    };
    options.journal.decision_log = LogOptions::default();
    let engine = Engine::open(Arc::new(MemoryStore::new()), options).expect("engine");
    let id = spec.id.clone();
    let deferred = t.mode == VectorMode::Deferred;
    let k = spec.arms.len() + usize::from(deferred);
    engine.create_campaign(spec).expect("create");
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x9e37);
    let mut due: VecDeque<(u64, String, usize)> = VecDeque::new();
    for i in 0..DECISIONS {
        let now = clock.fetch_add(1_000, Ordering::Relaxed) + 1_000;
        while due.front().is_some_and(|d| d.0 <= now) {
            let (_, decision, slot) = due.pop_front().expect("front");
            engine
                .reward_slot(&decision, slot, 1.0)
                .expect("a reward in time");
        }
        if i % 50 == 0 {
            engine.expire_due().expect("sweep");
        }
        if deferred && i % 7 == 0 {
            engine.make_wanted_vectors();
        }
        if deferred && i == DECISIONS / 2 {
            engine
                .add_arms(
                    &id,
                    vec![ArmSpec {
                        id: "late-offer".into(),
                        ..ArmSpec::default()
                    }],
                )
                .expect("add an arm");
        }
        let x: Vec<f64> = (0..t.features).map(|_| rng.random()).collect();
        let req = ChooseRequest {
            campaign_id: id.clone(),
            segment: t.segments[rng.random_range(0..t.segments.len())].clone(),
            context: x
                .iter()
                .enumerate()
                .map(|(f, v)| (format!("x{f}"), *v))
                .collect(),
            count: t.count,
            ..ChooseRequest::default()
        };
        let c = engine.choose(&req).expect("choose");
        for (slot, s) in c.slate.iter().enumerate() {
            // Contextual: feature f raises arm f's rate.
            let lift: f64 = x
                .iter()
                .enumerate()
                .filter(|(f, _)| *f == s.arm)
                .map(|(_, v)| 0.1 * v)
                .sum();
            if rng.random::<f64>() < t.rates[s.arm] + lift {
                let delay = rng.random_range(0..=120_000);
                let at = now + delay;
                let pos = due.partition_point(|d| d.0 <= at);
                due.insert(pos, (at, c.decision_id.to_string(), slot));
            }
        }
    }
    let slots = t.count.max(1);
    let mut seen = vec![vec![0.0; k]; slots];
    let mut expected = vec![vec![0.0; k]; slots];
    let mut variance = vec![vec![0.0; k]; slots];
    let mut records = 0;
    let mut per_decision: HashMap<String, usize> = HashMap::new();
    engine
        .export_decisions(&id, 0, None, true, &mut |_, r| {
            let j = r.slot as usize;
            // Every arm the campaign had then (one more after it was added).
            assert!(r.probabilities.len() == k || (deferred && r.probabilities.len() == k - 1));
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
            records += 1;
            *per_decision.entry(r.decision_id.to_string()).or_default() += 1;
            true
        })
        .expect("export");
    assert_eq!(records, DECISIONS * slots, "every decision is logged");
    assert!(per_decision.values().all(|&n| n == slots));
    (0..slots)
        .map(|j| {
            (0..k)
                .map(|a| (seen[j][a] - expected[j][a]) / variance[j][a].sqrt().max(1e-12))
                .collect()
        })
        .collect()
}

fn check(name: &str, z: &[Vec<f64>]) {
    println!("{name}: z by slot and arm {z:.2?}");
    for (j, row) in z.iter().enumerate() {
        for (a, v) in row.iter().enumerate() {
            assert!(v.abs() < 4.0, "{name}: slot {j} arm {a}: z = {v:.2}");
        }
    }
}

fn campaign(id: &str, values: &[f64], policy: PolicySpec) -> CampaignSpec {
    CampaignSpec {
        id: id.into(),
        arms: arms(values),
        policy,
        reward_timeout_seconds: 600,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    }
}

const RATES: [f64; 5] = [0.05, 0.06, 0.08, 0.10, 0.11];

// Plain Thompson sampling, campaign-wide, the floor at 1%.
#[test]
fn thompson_propensities_are_exact() {
    let t = Traffic {
        mode: VectorMode::Inline,
        rates: RATES.to_vec(),
        segments: vec![String::new()],
        count: 1,
        features: 0,
    };
    let spec = campaign("plain", &[1.0; 5], thompson(0.01, Pooling::EmpiricalBayes));
    check("plain", &z_scores(spec, &t, 1));
}

// Value-aware Thompson sampling: P(best rate × value).
#[test]
fn value_aware_propensities_are_exact() {
    let t = Traffic {
        mode: VectorMode::Inline,
        rates: vec![0.12, 0.08, 0.06, 0.05, 0.03],
        segments: vec![String::new()],
        count: 1,
        features: 0,
    };
    let spec = campaign(
        "valued",
        &[0.5, 1.0, 1.5, 2.0, 3.0],
        thompson(0.01, Pooling::EmpiricalBayes),
    );
    check("valued", &z_scores(spec, &t, 2));
}

// Forty segments pooled by empirical Bayes (most sparse: they share the
// campaign's "no evidence of their own" vector until they move from it).
#[test]
fn pooled_segment_propensities_are_exact() {
    let t = Traffic {
        mode: VectorMode::Inline,
        rates: RATES.to_vec(),
        segments: (0..40).map(|s| format!("segment-{s}")).collect(),
        count: 1,
        features: 0,
    };
    let spec = campaign("pooled", &[1.0; 5], thompson(0.01, Pooling::EmpiricalBayes));
    check("pooled", &z_scores(spec, &t, 3));
}

// Decay: evidence halves every 20 minutes, so the posterior moves with
// time alone.
#[test]
fn decayed_propensities_are_exact() {
    let t = Traffic {
        mode: VectorMode::Inline,
        rates: RATES.to_vec(),
        segments: vec![String::new(), "a".into(), "b".into()],
        count: 1,
        features: 0,
    };
    let mut spec = campaign(
        "decayed",
        &[1.0; 5],
        thompson(0.01, Pooling::EmpiricalBayes),
    );
    spec.decay_half_life_seconds = Some(1_200);
    check("decayed", &z_scores(spec, &t, 4));
}

// Slates of 3 of 6 offers: every slot's marginal, the first being P(best).
#[test]
fn slate_propensities_are_exact_slot_by_slot() {
    let t = Traffic {
        mode: VectorMode::Inline,
        rates: vec![0.05, 0.06, 0.08, 0.10, 0.11, 0.04],
        segments: vec![String::new(), "a".into()],
        count: 3,
        features: 0,
    };
    let spec = campaign("slates", &[1.0; 6], thompson(0.01, Pooling::EmpiricalBayes));
    check("slates", &z_scores(spec, &t, 5));
}

// Linear Thompson sampling on two features.
#[test]
fn lints_propensities_are_exact() {
    let t = Traffic {
        mode: VectorMode::Inline,
        rates: vec![0.05, 0.06, 0.08, 0.07],
        segments: vec![String::new()],
        count: 1,
        features: 2,
    };
    let spec = campaign(
        "lints",
        &[1.0; 4],
        PolicySpec::LinTs {
            lambda: 1.0,
            scale: 0.2,
            epsilon: 0.02,
            features: vec!["x0".into(), "x1".into()],
            missing_zero: false,
        },
    );
    check("lints", &z_scores(spec, &t, 6));
}

// Deferred vectors (the daemon's way): decisions draw from the vector they
// have while a new one is made elsewhere, and from their old one restricted
// to the arms that may be shown when an offer is added; still exact, for
// single offers with pooled segments and for slates.
#[test]
fn deferred_vector_propensities_are_exact() {
    let mut rates = RATES.to_vec();
    rates.push(0.09);
    let t = Traffic {
        mode: VectorMode::Deferred,
        rates: rates.clone(),
        segments: (0..20).map(|s| format!("segment-{s}")).collect(),
        count: 1,
        features: 0,
    };
    let spec = campaign(
        "deferred",
        &[1.0; 5],
        thompson(0.01, Pooling::EmpiricalBayes),
    );
    check("deferred", &z_scores(spec, &t, 7));
    let t = Traffic {
        mode: VectorMode::Deferred,
        rates,
        segments: vec![String::new(), "a".into()],
        count: 3,
        features: 0,
    };
    let spec = campaign(
        "deferred-slates",
        &[1.0; 5],
        thompson(0.01, Pooling::EmpiricalBayes),
    );
    check("deferred slates", &z_scores(spec, &t, 8));
}
