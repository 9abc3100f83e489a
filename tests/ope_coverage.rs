//! Off-policy evaluation where the truth is known: the simulator writes its
//! decision log exactly as the daemon exports it, and the IPS estimate of a
//! fixed policy (each offer, and uniform) from that log must cover the
//! policy's true value (the simulator's conversion probabilities of the
//! conversions the engine can learn of, averaged over the run's customers)
//! in at least 90% of 100 seeds, for a uniform log
//! and for a Thompson log with a 5% exploration floor. IPS is unbiased
//! whatever the logging policy as long as every propensity is the one used
//! (Horvitz & Thompson 1952; Dudík, Langford & Li 2011), so this checks that
//! the logged propensities are exact and the interval honest.

use banditd::ope::{self, EvalOptions, LogFormat};
use banditd::sim::runner::run_logged;
use banditd::sim::scenario::Scenario;
use banditd::sim::strategy::StrategyKind;

const SEEDS: u64 = 100;

/// Two segments, three offers with different rates per segment; conversions
/// 10 hours late on average against a 24-hour window, so about 9% of them
/// arrive after the reward timeout and are logged as the default reward:
/// the truth is what the log can record (the simulator's
/// `RunMetrics::reportable`), not the raw conversion rate.
const SCENARIO: &str = r#"
name = "ope-coverage"
description = "three offers, two segments, short delays"
customers_per_day = 3000
days = 1

[[segments]]
name = "returning"
share = 0.5
lifecycle = "active"
channel = "email"
device = "desktop"

[[segments]]
name = "new_visitors"
share = 0.5
lifecycle = "new"
channel = "paid_search"
device = "mobile"

[[offers]]
id = "a"
[[offers]]
id = "b"
[[offers]]
id = "c"

[rates.returning]
a = 0.04
b = 0.08
c = 0.12

[rates.new_visitors]
a = 0.10
b = 0.06
c = 0.03

[delay]
kind = "exponential"
mean_minutes = 600
attribution_window_minutes = 1440

[campaign]
exploration_floor = 0.05
"#;

#[test]
fn ips_intervals_cover_the_true_value_from_uniform_and_thompson_logs() {
    let sc = Scenario::parse(SCENARIO).expect("scenario parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = Vec::new();
    for kind in [StrategyKind::Uniform, StrategyKind::ThompsonCampaign] {
        // (policy name, covered, runs) for fixed:a, fixed:b, fixed:c, uniform.
        let mut covered = [0u32; 4];
        let mut max_weight: f64 = 0.0;
        for seed in 0..SEEDS {
            let path = dir.path().join(format!("{}-{seed}.dsjson", kind.key()));
            let truth = run_logged(&sc, kind, 1000 + seed, &path).expect("simulation");
            let log = ope::read_log(&path, LogFormat::Banditd).expect("the log reads back");
            assert_eq!(
                log.events.len() as u64,
                sc.total_customers(),
                "every decision logged"
            );
            let uniform_truth = truth.iter().sum::<f64>() / truth.len() as f64;
            for (i, (spec, t)) in [
                ("fixed:a", truth[0]),
                ("fixed:b", truth[1]),
                ("fixed:c", truth[2]),
                ("uniform", uniform_truth),
            ]
            .into_iter()
            .enumerate()
            {
                let policy = ope::parse_policy(spec, &log).expect("policy");
                let r = ope::evaluate(&log, policy.as_ref(), &EvalOptions::default())
                    .expect("estimate");
                max_weight = max_weight.max(r.max_weight);
                if r.ips.ci_low <= t && t <= r.ips.ci_high {
                    covered[i] += 1;
                }
            }
        }
        for (i, name) in ["fixed:a", "fixed:b", "fixed:c", "uniform"]
            .iter()
            .enumerate()
        {
            let share = f64::from(covered[i]) / SEEDS as f64;
            lines.push(format!(
                "{} log, {name}: IPS 95% interval covers the truth in {}/{SEEDS} seeds ({:.0}%), largest weight {max_weight:.1}",
                kind.key(),
                covered[i],
                share * 100.0
            ));
            assert!(
                share >= 0.9,
                "{} log, {name}: coverage {share} below 90%",
                kind.key()
            );
        }
    }
    for l in &lines {
        println!("{l}");
    }
}
