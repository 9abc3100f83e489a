//! Turns simulation results into words, tables, CSV and charts.
//!
//! Owns the statistics across runs (means with 95% t-intervals, paired
//! differences on the same customers), the printed summary, report.md,
//! metrics.csv and the chart data. It runs nothing and decides nothing.

use super::runner::{RunMetrics, SimResults};
use super::scenario::Scenario;
use super::strategy::StrategyKind;
use super::svg::{line_chart, Series};
use std::fmt::Write;

/// A mean with the half-width of its 95% t-interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub half: f64,
}

impl Interval {
    pub fn low(&self) -> f64 {
        self.mean - self.half
    }
    pub fn high(&self) -> f64 {
        self.mean + self.half
    }
}

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

/// Mean and 95% t-interval of `xs` (half-width 0 for a single run).
pub fn interval(xs: &[f64]) -> Interval {
    let n = xs.len();
    if n == 0 {
        return Interval {
            mean: f64::NAN,
            half: f64::NAN,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Interval { mean, half: 0.0 };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Interval {
        mean,
        half: t_975(n - 1) * (var / n as f64).sqrt(),
    }
}

/// Per-run values of one metric for strategy `s`.
fn per_run(r: &SimResults, s: usize, f: impl Fn(&RunMetrics) -> f64) -> Vec<f64> {
    r.runs[s].iter().map(f).collect()
}

fn conversions(m: &RunMetrics) -> f64 {
    m.total().conversions as f64
}

/// Conversions of each strategy across runs.
pub fn conversion_intervals(r: &SimResults) -> Vec<Interval> {
    (0..r.strategies.len())
        .map(|s| interval(&per_run(r, s, conversions)))
        .collect()
}

fn index_of(r: &SimResults, k: StrategyKind) -> Option<usize> {
    r.strategies.iter().position(|s| *s == k)
}

/// Paired relative lift of `s` over `base` (same customers in each run).
fn lift(r: &SimResults, s: usize, base: usize) -> Interval {
    let xs: Vec<f64> = r.runs[s]
        .iter()
        .zip(&r.runs[base])
        .map(|(a, b)| conversions(a) / conversions(b).max(1.0) - 1.0)
        .collect();
    interval(&xs)
}

fn pm(i: Interval, digits: usize) -> String {
    format!("{:.*} ± {:.*}", digits, i.mean, digits, i.half)
}

fn pct(i: Interval) -> String {
    format!("{:+.1}% ± {:.1}", 100.0 * i.mean, 100.0 * i.half)
}

/// The plain-words summary printed by `banditd simulate`.
pub fn summary(sc: &Scenario, r: &SimResults, runs: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Scenario {}: {} customers over {} days, {} offers, {} segments, {} runs (95% intervals).",
        sc.name,
        sc.total_customers(),
        sc.days,
        sc.offers.len(),
        sc.segments.len(),
        runs
    );
    let ab = index_of(r, StrategyKind::AbTest);
    let uni = index_of(r, StrategyKind::Uniform);
    let rev = sc.has_revenue();
    let _ = writeln!(
        o,
        "{:<36} {:>20} {:>9} {:>22} {:>18} {:>18}{}",
        "strategy",
        "conversions",
        "rate %",
        "regret (conv. lost)",
        "lift vs A/B",
        "lift vs uniform",
        if rev { "        revenue" } else { "" }
    );
    for (s, k) in r.strategies.iter().enumerate() {
        let conv = interval(&per_run(r, s, conversions));
        let rate = interval(&per_run(r, s, |m| {
            100.0 * conversions(m) / m.total().customers.max(1) as f64
        }));
        let regret = interval(&per_run(r, s, |m| m.total().regret));
        let l_ab = ab
            .filter(|a| *a != s)
            .map_or("-".into(), |a| pct(lift(r, s, a)));
        let l_un = uni
            .filter(|u| *u != s)
            .map_or("-".into(), |u| pct(lift(r, s, u)));
        let _ = write!(
            o,
            "{:<36} {:>20} {:>9.3} {:>22} {:>18} {:>18}",
            k.label(),
            pm(conv, 0),
            rate.mean,
            pm(regret, 1),
            l_ab,
            l_un
        );
        if rev {
            let _ = write!(
                o,
                " {:>14}",
                pm(interval(&per_run(r, s, |m| m.total().revenue)), 0)
            );
        }
        o.push('\n');
    }
    let bandits = [
        StrategyKind::ThompsonSegment,
        StrategyKind::ThompsonCampaign,
        StrategyKind::LinUcb,
    ];
    let best = bandits
        .iter()
        .filter_map(|k| index_of(r, *k))
        .max_by(|a, b| {
            conversion_intervals(r)[*a]
                .mean
                .total_cmp(&conversion_intervals(r)[*b].mean)
        });
    if let (Some(a), Some(b)) = (ab, best) {
        let diff: Vec<f64> = r.runs[b]
            .iter()
            .zip(&r.runs[a])
            .map(|(x, y)| conversions(x) - conversions(y))
            .collect();
        let d = interval(&diff);
        let verb = if d.mean >= 0.0 { "lost" } else { "won" };
        let _ = writeln!(
            o,
            "The A/B test {verb} {:.0} conversions (±{:.0}) compared with {}.",
            d.mean.abs(),
            d.half,
            r.strategies[b].label()
        );
    }
    if let Some(a) = ab {
        o.push_str(&ab_sentence(sc, r, a));
    }
    o
}

fn ab_sentence(sc: &Scenario, r: &SimResults, a: usize) -> String {
    let k = sc.offers.len() as u64;
    let n = r.runs[a].len();
    let decided: Vec<_> = r.runs[a]
        .iter()
        .filter_map(|m| m.ab.as_ref().and_then(|s| s.decided_at.zip(s.decision)))
        .collect();
    let right = r.runs[a]
        .iter()
        .zip(&r.true_best)
        .filter(|(m, tb)| {
            m.ab.as_ref()
                .and_then(|s| s.decision)
                .is_some_and(|d| d.winner == **tb)
        })
        .count();
    let sig = decided.iter().filter(|(_, d)| d.significant).count();
    let mut o = format!(
        "A/B test plan: {} customers per offer ({} in all; baseline {:.3}%, {} offers, α = 0.05{}, power 0.8).\n",
        r.ab_per_arm, r.ab_per_arm.saturating_mul(k), 100.0 * r.baseline_rate, k,
        if k > 2 { " Bonferroni-corrected" } else { "" }
    );
    if decided.is_empty() {
        let _ = writeln!(o, "The test never finished within the horizon ({} customers): it split traffic evenly to the end.", sc.total_customers());
    } else {
        let days = interval(
            &decided
                .iter()
                .map(|(t, _)| *t as f64 / 86_400_000.0)
                .collect::<Vec<_>>(),
        );
        let _ = writeln!(o, "It stopped (attribution window closed) on day {:.1} on average in {}/{} runs, picked the true best offer in {right}/{n} runs, significant in {sig}/{}.", days.mean, decided.len(), n, decided.len());
    }
    o
}

/// report.md.
pub fn markdown(sc: &Scenario, r: &SimResults, runs: usize, seed: u64) -> String {
    let mut o = format!("# Simulation: {}\n\n{}\n\nSeed {seed}, {runs} runs. Reproduce with `banditd simulate <scenario> --runs {runs} --seed {seed}`.\n\n## Summary\n\n```\n{}```\n\n", sc.name, sc.description.trim(), summary(sc, r, runs));
    o.push_str("Regret is expected conversions lost against the oracle (Σ p_oracle − p_chosen). Intervals are 95% t-intervals across runs; lifts are paired (every strategy sees the same customers and the same coin flips).\n\n");
    o.push_str("## Per segment (mean over runs)\n\n| strategy | segment | customers | conversions | rate % | regret |\n|---|---|---:|---:|---:|---:|\n");
    for (s, k) in r.strategies.iter().enumerate() {
        for (i, seg) in sc.segments.iter().enumerate() {
            let f = |g: &dyn Fn(&RunMetrics) -> f64| interval(&per_run(r, s, g)).mean;
            let cust = f(&|m| m.segments[i].customers as f64);
            let conv = f(&|m| m.segments[i].conversions as f64);
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} | {:.1} | {:.3} | {:.1} |",
                k.key(),
                seg.name,
                cust,
                conv,
                100.0 * conv / cust.max(1.0),
                f(&|m| m.segments[i].regret)
            );
        }
    }
    o.push_str("\n## Charts\n\n![cumulative regret](regret.svg)\n\n![conversion rate](conversion_rate.svg)\n\n![traffic share](traffic_share.svg)\n");
    o
}

/// metrics.csv: one row per bucket, strategy and run.
pub fn csv(sc: &Scenario, r: &SimResults) -> String {
    let mut o = String::from("strategy,run,bucket,customers_end,customers,conversions,expected_conversions,regret,revenue");
    for of in &sc.offers {
        let _ = write!(o, ",share_{}", of.id);
    }
    o.push('\n');
    for (s, k) in r.strategies.iter().enumerate() {
        for (run, m) in r.runs[s].iter().enumerate() {
            let mut end = 0;
            for (i, b) in m.buckets.iter().enumerate() {
                end += b.customers;
                let _ = write!(
                    o,
                    "{},{run},{i},{end},{},{},{:.4},{:.4},{:.2}",
                    k.key(),
                    b.customers,
                    b.conversions,
                    b.expected,
                    b.regret,
                    b.revenue
                );
                for c in &b.offer_counts {
                    let _ = write!(o, ",{:.5}", *c as f64 / b.customers.max(1) as f64);
                }
                o.push('\n');
            }
        }
    }
    o
}

/// The three charts, as (file name, SVG).
pub fn charts(sc: &Scenario, r: &SimResults) -> Vec<(&'static str, String)> {
    let x = |i: usize| ((i as u64 + 1) * r.bucket_size).min(sc.total_customers()) as f64;
    let mut regret = Vec::new();
    let mut rate = Vec::new();
    for (s, k) in r.strategies.iter().enumerate() {
        let cum: Vec<Vec<f64>> = r.runs[s]
            .iter()
            .map(|m| {
                m.buckets
                    .iter()
                    .scan(0.0, |acc, b| {
                        *acc += b.regret;
                        Some(*acc)
                    })
                    .collect()
            })
            .collect();
        let nb = cum.first().map_or(0, Vec::len);
        let col = |i: usize| cum.iter().map(|c| c[i]).collect::<Vec<f64>>();
        regret.push(Series {
            name: k.key().into(),
            points: (0..nb).map(|i| (x(i), interval(&col(i)).mean)).collect(),
            band: Some(
                (0..nb)
                    .map(|i| {
                        let c = col(i);
                        (
                            c.iter().copied().fold(f64::MAX, f64::min),
                            c.iter().copied().fold(f64::MIN, f64::max),
                        )
                    })
                    .collect(),
            ),
        });
        rate.push(Series {
            name: k.key().into(),
            points: (0..nb)
                .map(|i| {
                    (
                        x(i),
                        100.0
                            * interval(
                                &r.runs[s]
                                    .iter()
                                    .map(|m| {
                                        m.buckets[i].conversions as f64
                                            / m.buckets[i].customers.max(1) as f64
                                    })
                                    .collect::<Vec<_>>(),
                            )
                            .mean,
                    )
                })
                .collect(),
            band: None,
        });
    }
    let bandits = [
        StrategyKind::ThompsonSegment,
        StrategyKind::ThompsonCampaign,
        StrategyKind::LinUcb,
        StrategyKind::EpsilonGreedy,
    ];
    let conv = conversion_intervals(r);
    let best = bandits
        .iter()
        .filter_map(|k| index_of(r, *k))
        .max_by(|a, b| conv[*a].mean.total_cmp(&conv[*b].mean))
        .unwrap_or(0);
    let mut share: Vec<Series> = sc
        .offers
        .iter()
        .enumerate()
        .map(|(o, of)| Series {
            name: of.id.clone(),
            points: r.runs[best].first().map_or(Vec::new(), |m| {
                (0..m.buckets.len())
                    .map(|i| {
                        (
                            x(i),
                            100.0
                                * interval(
                                    &r.runs[best]
                                        .iter()
                                        .map(|m| {
                                            m.buckets[i].offer_counts[o] as f64
                                                / m.buckets[i].customers.max(1) as f64
                                        })
                                        .collect::<Vec<_>>(),
                                )
                                .mean,
                        )
                    })
                    .collect()
            }),
            band: None,
        })
        .collect();
    share.truncate(10);
    let title = format!(
        "Traffic share per offer: {} (first 10 offers)",
        r.strategies.get(best).map_or("", |k| k.key())
    );
    vec![
        (
            "regret.svg",
            line_chart(
                "Cumulative regret vs oracle (mean, min–max band)",
                "customers",
                "expected conversions lost",
                &regret,
            ),
        ),
        (
            "conversion_rate.svg",
            line_chart(
                "Conversion rate per time bucket (mean over runs)",
                "customers",
                "conversion rate %",
                &rate,
            ),
        ),
        (
            "traffic_share.svg",
            line_chart(&title, "customers", "share of traffic %", &share),
        ),
    ]
}
