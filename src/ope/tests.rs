//! Tests of the whole evaluation: hand-computed logs, seeded synthetic logs
//! and the Open Bandit Dataset sample.

use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::estimators::{cross_fit_direct_model, doubly_robust, ips, Ridge};
use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

fn assert_estimate(got: Estimate, value: f64, low: f64, high: f64) {
    assert!(
        close(got.value, value) && close(got.ci_low, low) && close(got.ci_high, high),
        "{got:?} != ({value}, {low}, {high})"
    );
}

fn ok<T>(r: Result<T, OpeError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn event(
    action: usize,
    position: usize,
    reward: f64,
    pscore: f64,
    context: Vec<f64>,
) -> LoggedEvent {
    LoggedEvent {
        action,
        position,
        reward,
        pscore,
        context,
        timestamp_ms: None,
        logged_probs: None,
        segment: 0,
    }
}

fn log_of(events: Vec<LoggedEvent>, k: usize, positions: usize, context: usize) -> Log {
    Log {
        events,
        actions: (0..k).map(|a| a.to_string()).collect(),
        positions,
        context_names: (0..context).map(|c| format!("x{c}")).collect(),
        segments: vec![String::new()],
        source: "test".to_string(),
        format: LogFormat::ObpCsv,
    }
}

/// Four events, two actions: (action, reward, pscore) = (0,1,½), (1,0,½), (0,0,¼), (1,1,¾).
fn tiny_log() -> Log {
    log_of(
        vec![
            event(0, 0, 1.0, 0.5, vec![]),
            event(1, 0, 0.0, 0.5, vec![]),
            event(0, 0, 0.0, 0.25, vec![]),
            event(1, 0, 1.0, 0.75, vec![]),
        ],
        2,
        1,
        0,
    )
}

// IPS, SNIPS (delta-method interval), the logged value, ESS and max weight equal hand computations.
#[test]
fn hand_computed_tiny_log() {
    let log = tiny_log();
    let policy = ok(FixedArm::new(&log, "0"));
    let r = ok(evaluate(&log, &policy, &EvalOptions::default()));
    // w = [2, 0, 4, 0]; r·w = [2, 0, 0, 0]: mean ½, sd 1, half-width 1.96 · 1 / 2.
    assert_estimate(r.ips, 0.5, -0.48, 1.48);
    // SNIPS = 2 / 6; terms w(r − ⅓)/1.5 = [8/9, 0, −8/9, 0], sd √(128/243).
    assert_estimate(r.snips, 1.0 / 3.0, -0.37792591049704133, 1.044592577163708);
    assert_estimate(r.logged, 0.5, -0.06580326380583323, 1.0658032638058332);
    // Paired terms w·r − r = [1, 0, 0, −1]: mean 0, sd √(2/3).
    let h = 1.96 * (2.0f64 / 3.0).sqrt() / 2.0;
    assert_estimate(r.ips_minus_logged, 0.0, -h, h);
    assert!(close(r.ess, 36.0 / 20.0) && r.max_weight == 4.0 && r.n == 4);
    assert_eq!(r.policy, "fixed:0");
}

// DR's formula on the tiny log with a hand-given q̂ (0.3 for action 0, 0.6 for action 1).
#[test]
fn hand_computed_doubly_robust() {
    let rewards = [1.0, 0.0, 0.0, 1.0];
    let weights = [2.0, 0.0, 4.0, 0.0];
    let q_logged = [0.3, 0.6, 0.3, 0.6];
    let q_policy = [0.3; 4];
    // Terms 0.3 + w(r − q̂) = [1.7, 0.3, −0.9, 0.3].
    let dr = doubly_robust(&rewards, &weights, &q_logged, &q_policy);
    assert_estimate(dr, 0.35, -0.6917542896479953, 1.3917542896479955);
}

// DR with q̂ ≡ 0 is exactly IPS, value and interval.
#[test]
fn doubly_robust_with_zero_model_is_ips() {
    let mut rng = SmallRng::seed_from_u64(7);
    let rewards: Vec<f64> = (0..500).map(|_| rng.random::<f64>()).collect();
    let weights: Vec<f64> = (0..500).map(|_| 5.0 * rng.random::<f64>()).collect();
    let zeros = vec![0.0; 500];
    assert_eq!(
        doubly_robust(&rewards, &weights, &zeros, &zeros),
        ips(&rewards, &weights)
    );
}

// Ridge with one standardised context column matches its closed form (intercept = mean, slope shrunk by λ).
#[test]
fn ridge_closed_form() {
    // y = 1 + 2x on x = 0, 1, 2, 3: z = (x − 1.5)/√1.25, Σz² = 4, slope on z = 2 · 5/√1.25 / (4 + 1).
    let events = (0..4)
        .map(|x| event(0, 0, 1.0 + 2.0 * x as f64, 1.0, vec![x as f64, 9.0]))
        .collect();
    let log = log_of(events, 1, 1, 2);
    let model = ok(Ridge::fit(&log, &[0, 1, 2, 3], 1.0));
    assert_eq!(model.context.len(), 1, "the constant column is skipped");
    let at = |x: f64| model.base(&event(0, 0, 0.0, 1.0, vec![x, 9.0])) + model.action[0];
    assert!(close(at(3.5), 4.0 + 1.6 * 2.0), "{}", at(3.5));
    assert!(close(at(1.5), 4.0));
}

// Cross-fitting: a row's prediction never depends on its own reward, only on the other fold's.
#[test]
fn cross_fitting_hides_the_predicted_row() {
    let mut rng = SmallRng::seed_from_u64(11);
    let events: Vec<LoggedEvent> = (0..40)
        .map(|_| {
            let a = rng.random_range(0..3);
            event(
                a,
                rng.random_range(0..2),
                rng.random::<f64>(),
                1.0 / 3.0,
                vec![rng.random()],
            )
        })
        .collect();
    let mut log = log_of(events, 3, 2, 1);
    let probs = vec![vec![1.0 / 3.0; 3]; 40];
    let before = ok(cross_fit_direct_model(&log, &probs, 1.0));
    log.events[10].reward += 5.0;
    let after = ok(cross_fit_direct_model(&log, &probs, 1.0));
    assert_eq!(before.q_logged[10], after.q_logged[10]);
    assert_eq!(before.q_policy[10], after.q_policy[10]);
    assert_ne!(before.q_logged[11], after.q_logged[11]);
}

/// A seeded log of a uniform behaviour policy over 4 arms and 2 slots with
/// reward probability base[a] + 0.1·x, x uniform in [−1, 1]; `claimed_pscore`
/// is what the log says the propensity was (truth: ¼).
fn synthetic_log(seed: u64, n: usize, claimed_pscore: f64) -> Log {
    const BASE: [f64; 4] = [0.1, 0.3, 0.5, 0.2];
    let mut rng = SmallRng::seed_from_u64(seed);
    let events = (0..n)
        .map(|_| {
            let a = rng.random_range(0..4);
            let x: f64 = 2.0 * rng.random::<f64>() - 1.0;
            let click = rng.random::<f64>() < BASE[a] + 0.1 * x;
            event(
                a,
                rng.random_range(0..2),
                f64::from(u8::from(click)),
                claimed_pscore,
                vec![x],
            )
        })
        .collect();
    log_of(events, 4, 2, 1)
}

/// z-scores of IPS, SNIPS, DR against the true value 0.5 of `fixed:2`, over 30 seeded logs.
fn synthetic_z_scores(claimed_pscore: f64) -> Vec<[f64; 3]> {
    (0..30)
        .map(|seed| {
            let log = synthetic_log(seed, 2000, claimed_pscore);
            let policy = ok(FixedArm::new(&log, "2"));
            let r = ok(evaluate(&log, &policy, &EvalOptions::default()));
            let z = |e: Estimate| (e.value - 0.5) / (e.half_width() / estimators::Z95);
            [z(r.ips), z(r.snips), z(r.dr)]
        })
        .collect()
}

// Uniform log + fixed policy: IPS, SNIPS and DR are unbiased (each run's z within ±3 and
// the pooled mean's z within ±3); a log with a wrong propensity fails the same check.
#[test]
fn seeded_synthetic_logs_are_unbiased() {
    let zs = synthetic_z_scores(0.25);
    for (seed, z) in zs.iter().enumerate() {
        eprintln!(
            "seed {seed:2}: z(IPS) {:+.3}  z(SNIPS) {:+.3}  z(DR) {:+.3}",
            z[0], z[1], z[2]
        );
    }
    let runs = zs.len() as f64;
    for (i, name) in ["IPS", "SNIPS", "DR"].iter().enumerate() {
        assert!(
            zs.iter().all(|z| z[i].abs() < 3.0),
            "{name}: a run beyond ±3"
        );
        // Under unbiasedness each z is ≈ N(0, 1), so √R · mean(z) is too.
        let pooled = zs.iter().map(|z| z[i]).sum::<f64>() / runs.sqrt();
        eprintln!("{name}: pooled z {pooled:+.3}");
        assert!(pooled.abs() < 3.0, "{name}: pooled z {pooled}");
    }
    // The same experiment with pscore ½ claimed instead of ¼ halves IPS: z far below −3.
    let wrong = synthetic_z_scores(0.5);
    let pooled = wrong.iter().map(|z| z[0]).sum::<f64>() / runs.sqrt();
    eprintln!("IPS with a wrong propensity: pooled z {pooled:+.3}");
    assert!(pooled < -3.0);
}

// Fewer than two events, a policy that never agrees and a policy that is not a distribution are errors.
#[test]
fn evaluation_errors() {
    let log = tiny_log();
    let mut one = tiny_log();
    one.events.truncate(1);
    assert!(matches!(
        evaluate(&one, &Uniform, &EvalOptions::default()),
        Err(OpeError::NoEstimate(_))
    ));
    let mut never = tiny_log();
    never.actions.push("2".into());
    let policy = ok(FixedArm::new(&never, "2"));
    let err = evaluate(&never, &policy, &EvalOptions::default());
    assert!(matches!(&err, Err(OpeError::NoEstimate(m)) if m.contains("never agrees")));
    struct Half;
    impl EvalPolicy for Half {
        fn prob(&self, _: &Log, _: &LoggedEvent, _: usize) -> f64 {
            0.25
        }
        fn name(&self) -> String {
            "half".into()
        }
    }
    assert!(matches!(
        evaluate(&log, &Half, &EvalOptions::default()),
        Err(OpeError::Policy(_))
    ));
    let bad = EvalOptions {
        ridge_lambda: 0.0,
        ..EvalOptions::default()
    };
    assert!(evaluate(&log, &Uniform, &bad).is_err());
}

fn sample_report(ess: f64, max_weight: f64) -> EvalReport {
    let e = |v: f64, h: f64| Estimate {
        value: v,
        ci_low: v - h,
        ci_high: v + h,
    };
    EvalReport {
        policy: "uniform".into(),
        n: 1000,
        ips: e(0.03, 0.004),
        snips: e(0.0312, 0.004),
        dr: e(0.0305, 0.003),
        dm: 0.029,
        logged: e(0.0389, 0.0012),
        ips_minus_logged: e(-0.0089, 0.0041),
        ess,
        max_weight,
        reward_unit: "conversions".into(),
    }
}

// The JSON report has exactly the documented keys, each estimate as {value, ci_low, ci_high}.
#[test]
fn json_report_keys() {
    let json = sample_report(900.0, 2.0).to_json();
    let mut keys: Vec<&str> = json
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "dm",
            "dr",
            "ess",
            "ips",
            "ips_minus_logged",
            "logged",
            "max_weight",
            "n",
            "policy",
            "snips"
        ]
    );
    assert_eq!(json["snips"]["value"], 0.0312);
    assert_eq!(json["ips"]["ci_low"], 0.03 - 0.004);
    assert_eq!(json["n"], 1000);
}

// The table ends with the marketer's sentence per 1,000 customers, and warns only when weights degenerate.
#[test]
fn table_sentences_and_warning() {
    let table = sample_report(900.0, 2.0).to_table();
    eprintln!("{table}");
    assert!(table.contains(
        "uniform would have earned 31.2 ± 4.0 conversions per 1,000 customers (SNIPS; DR says 30.5 ± 3.0); the logged policy earned 38.9 ± 1.2."
    ));
    assert!(table.contains(
        "Paired on the same decisions (IPS): -8.9 ± 4.1 per 1,000 customers, less than the logged policy."
    ));
    assert!(!table.contains("few logged decisions"));
    let table = sample_report(5.0, 2.0).to_table();
    assert!(table.contains("the estimate rests on 5 effective decisions"));
    assert!(sample_report(900.0, 150.0)
        .to_table()
        .contains("few logged decisions agree"));
}

fn print_report(label: &str, r: &EvalReport) {
    eprintln!("{label}:");
    for (name, e) in [
        ("IPS", r.ips),
        ("SNIPS", r.snips),
        ("DR", r.dr),
        ("logged", r.logged),
    ] {
        eprintln!(
            "  {name:<6} {:.16e}  [{:.16e}, {:.16e}]",
            e.value, e.ci_low, e.ci_high
        );
    }
    eprintln!("  DM     {:.16e}", r.dm);
    eprintln!("  ESS    {:.16e}", r.ess);
    eprintln!("  max_w  {:.16e}", r.max_weight);
}

// The OBD sample: uniform on the random log is the log's own value (w ≡ 1); the BTS
// action distribution's figures are printed with 17 significant digits to pin against OBP.
#[test]
fn obd_figures() {
    let dir = Path::new("/work/shared/data/obd");
    if !dir.exists() {
        eprintln!("skipping: {} is absent", dir.display());
        return;
    }
    let random = ok(read_log(&dir.join("obd_all_random.csv"), LogFormat::ObpCsv));
    let opts = EvalOptions {
        reward_unit: "clicks".into(),
        ..EvalOptions::default()
    };
    let r = ok(evaluate(&random, &Uniform, &opts));
    assert_eq!(r.max_weight, 1.0);
    assert!(close(r.ess, 10_000.0));
    assert!(close(r.ips.value, 0.0038) && close(r.snips.value, 0.0038));
    assert_eq!(r.ips, r.logged);
    let bts = ok(ActionDistribution::from_file(
        &dir.join("obd_all_bts_action_dist.csv"),
        &random,
    ));
    let r = ok(evaluate(&random, &bts, &opts));
    print_report("BTS action distribution on obd_all_random.csv", &r);
    eprintln!("{}", r.to_table());
    assert_eq!(r.n, 10_000);
    assert!(r.ips.value.is_finite() && r.snips.value.is_finite() && r.dr.value.is_finite());

    let bts_log = ok(read_log(&dir.join("obd_all_bts.csv"), LogFormat::ObpCsv));
    let bts = ok(ActionDistribution::from_file(
        &dir.join("obd_all_bts_action_dist.csv"),
        &bts_log,
    ));
    let r = ok(evaluate(&bts_log, &bts, &opts));
    print_report("BTS action distribution on obd_all_bts.csv", &r);
    assert!(close(r.logged.value, 0.0042));
}
