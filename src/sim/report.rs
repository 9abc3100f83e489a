//! Turns simulation results into words, tables and CSV.
//!
//! Owns the statistics across runs (means with 95% t-intervals, medians
//! with the 10th–90th percentiles, paired differences on the same
//! customers), the two effects a marketer asks about (what testing costs,
//! what personalisation is worth), the A/B designs' plans and outcomes, the
//! printed summary, report.md, metrics.csv and runs.csv. The HTML page and
//! its charts are in `html`. It runs nothing and decides nothing.

use super::abrun::Plan;
use super::runner::{RunMetrics, SimResults};
use super::scenario::Scenario;
use super::strategy::StrategyKind;
use super::svg::group;
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

/// The `q` quantile of `xs` (linear between order statistics, Hyndman &
/// Fan's type 7, as R and numpy compute it by default).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Across runs: the mean with its interval, and the median with the
/// 10th–90th percentiles (a bandit's outcomes are skewed: a run that
/// locks in on the wrong offer for days shows in the tails, not the mean).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: Interval,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
}

pub fn spread(xs: &[f64]) -> Spread {
    Spread {
        mean: interval(xs),
        median: quantile(xs, 0.5),
        p10: quantile(xs, 0.1),
        p90: quantile(xs, 0.9),
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

pub fn index_of(r: &SimResults, k: StrategyKind) -> Option<usize> {
    r.strategies.iter().position(|s| *s == k)
}

/// Per run, conversions of `a` minus conversions of `b` (same customers).
fn paired(r: &SimResults, a: usize, b: usize) -> Vec<f64> {
    r.runs[a]
        .iter()
        .zip(&r.runs[b])
        .map(|(x, y)| conversions(x) - conversions(y))
        .collect()
}

fn n0(v: f64) -> String {
    group(v, 0)
}

/// "1,169 conversions (95% interval 1,050 to 1,290; median 1,160, 10th-90th
/// percentile 980 to 1,340 across runs)", with `what` after the number.
fn spread_words(s: &Spread, what: &str) -> String {
    format!(
        "{}{what} (95% interval {} to {}; median {}, 10th-90th percentile {} to {} across runs)",
        n0(s.mean.mean),
        n0(s.mean.low()),
        n0(s.mean.high()),
        n0(s.median),
        n0(s.p10),
        n0(s.p90)
    )
}

/// A paired difference in words, by its sign: with verbs, "cost 57
/// conversions (…)" or "gained 57 conversions (…)"; without, "57 more (…)"
/// or "57 fewer (…)".
fn signed(diffs: &[f64], pos: &str, neg: &str, what: &str) -> String {
    let d = spread(diffs);
    if d.mean.mean >= 0.0 {
        let tail = if pos.is_empty() { " more" } else { what };
        format!(
            "{pos}{}{}",
            if pos.is_empty() { "" } else { " " },
            spread_words(&d, tail)
        )
    } else {
        let flipped: Vec<f64> = diffs.iter().map(|x| -x).collect();
        let tail = if neg.is_empty() { " fewer" } else { what };
        format!(
            "{neg}{}{}",
            if neg.is_empty() { "" } else { " " },
            spread_words(&spread(&flipped), tail)
        )
    }
}

/// The campaign-wide A/B designs, in the order they are compared.
const CAMPAIGN_WIDE_AB: [StrategyKind; 3] = [
    StrategyKind::AbTest,
    StrategyKind::AbSequential,
    StrategyKind::TestAndRoll,
];

/// The campaign-wide A/B design with the most conversions (mean over runs).
pub fn best_ab(r: &SimResults) -> Option<usize> {
    let conv = conversion_intervals(r);
    CAMPAIGN_WIDE_AB
        .iter()
        .filter_map(|k| index_of(r, *k))
        .max_by(|a, b| conv[*a].mean.total_cmp(&conv[*b].mean))
}

/// The two effects, as sentences: what testing costs (the best A/B design
/// against campaign-wide Thompson, both ending with one offer for everyone)
/// and what personalisation is worth (campaign-wide against per-segment
/// against contextual, and the ceiling the true rates allow).
pub fn effects(r: &SimResults) -> (Vec<String>, Vec<String>) {
    let mut cost = Vec::new();
    let ts = index_of(r, StrategyKind::ThompsonCampaign);
    if let (Some(a), Some(t)) = (best_ab(r), ts) {
        cost.push(format!(
            "Testing first {}: the A/B design with the most conversions in these runs, {}, against campaign-wide Thompson sampling on the same customers (both learn one offer for everyone, not one per segment; picking the best design afterwards flatters testing).",
            signed(&paired(r, t, a), "cost", "gained", " conversions"),
            r.strategies[a].label()
        ));
    }
    if let (Some(a), Some(t)) = (
        index_of(r, StrategyKind::AbSegment),
        index_of(r, StrategyKind::ThompsonSegment),
    ) {
        cost.push(format!(
            "Per segment, the same comparison: Thompson sampling per segment converted {} than the per-segment A/B test.",
            signed(&paired(r, t, a), "", "", "")
        ));
    }
    let mut value = Vec::new();
    if let Some(t) = ts {
        for k in [StrategyKind::ThompsonSegment, StrategyKind::LinUcb] {
            if let Some(p) = index_of(r, k) {
                value.push(format!(
                    "{} converted {} than campaign-wide Thompson sampling.",
                    r.strategies[p].label(),
                    signed(&paired(r, p, t), "", "", "")
                ));
            }
        }
    }
    let ceiling: Vec<f64> = r
        .oracle_expected
        .iter()
        .zip(&r.single_best_expected)
        .map(|(o, s)| o - s)
        .collect();
    let (what, whose) = if r.slots > 1 {
        ("page", "page")
    } else {
        ("offer", "offer")
    };
    if let Some(c) = ceiling.first() {
        if *c > 0.5 {
            let s = spread(&ceiling);
            value.push(format!(
                "The ceiling: showing each customer their own best {what} instead of one {what} for everyone (the best at each moment) is worth {} expected conversions (the oracle against the best {whose} of each of the 60 time slices, from the true rates; runs {} to {}).",
                n0(s.mean.mean),
                n0(quantile(&ceiling, 0.0)),
                n0(quantile(&ceiling, 1.0))
            ));
        } else {
            value.push(
                "Every customer's best offer is the same here: personalisation has nothing to gain (the oracle equals the best single offer at every moment)."
                    .into(),
            );
        }
    }
    (cost, value)
}

/// Percentage points with one decimal and a sign.
fn pp(v: f64) -> String {
    format!("{:+.2}", 100.0 * v)
}

/// Pages of several slots: each learning strategy's slates against the
/// uniformly shuffled slate (conversions, paired by run), and the share of
/// the best page's expected conversions each strategy's pages reached.
fn slate_lines(sc: &Scenario, r: &SimResults) -> Vec<String> {
    let attention: Vec<String> = sc
        .campaign
        .slot_attention
        .iter()
        .map(|a| format!("{:.0}%", 100.0 * a))
        .collect();
    let mut out = vec![format!(
        "Pages of {} slots (a ranked slate from Choose with count = {}; customers look at the slots with chance {}; every slot's conversion counts and is learned for its offer).",
        sc.campaign.slots,
        sc.campaign.slots,
        attention.join(", ")
    )];
    let uniform = index_of(r, StrategyKind::Uniform);
    for (s, k) in r.strategies.iter().enumerate() {
        if *k == StrategyKind::Uniform {
            continue;
        }
        let share: Vec<f64> = r.runs[s]
            .iter()
            .map(|m| {
                let t = m.total();
                if m.oracle_expected > 0.0 {
                    t.expected / m.oracle_expected
                } else {
                    f64::NAN
                }
            })
            .collect();
        let sh = spread(&share);
        let against = match uniform {
            Some(u) => format!(
                "; against the uniformly shuffled slate, {} conversions",
                signed(&paired(r, s, u), "", "", "")
            ),
            None => String::new(),
        };
        out.push(format!(
            "Slates of {}: {:.1}% of the best page's expected conversions (median {:.1}%, 10th-90th percentile {:.1}% to {:.1}%){against}.",
            k.label(),
            100.0 * sh.mean.mean,
            100.0 * sh.median,
            100.0 * sh.p10,
            100.0 * sh.p90
        ));
    }
    out
}

/// The marketer's settings in words: value-aware Thompson against
/// Thompson on conversions (revenue, paired by run), each bandit's uplift
/// over its holdout (conversion rate, per run), and each capped offer's
/// largest count in any run against its cap.
pub fn marketing(sc: &Scenario, r: &SimResults) -> Vec<String> {
    let mut out = Vec::new();
    if sc.campaign.slots > 1 {
        out.extend(slate_lines(sc, r));
    }
    if let (Some(v), Some(t)) = (
        index_of(r, StrategyKind::ThompsonValue),
        index_of(r, StrategyKind::ThompsonCampaign),
    ) {
        let rev: Vec<f64> = r.runs[v]
            .iter()
            .zip(&r.runs[t])
            .map(|(a, b)| a.total().revenue - b.total().revenue)
            .collect();
        out.push(format!(
            "Revenue: Thompson sampling on rate x value (each offer's revenue per conversion) earned {} in revenue than Thompson sampling on conversions, with {} conversions.",
            signed(&rev, "", "", ""),
            signed(&paired(r, v, t), "", "", "")
        ));
    }
    if sc.campaign.holdout_fraction > 0.0 {
        for (s, k) in r.strategies.iter().enumerate() {
            if !k.is_bandit() {
                continue;
            }
            let runs = &r.runs[s];
            let up: Vec<f64> = runs
                .iter()
                .map(|m| m.policy.rate() - m.holdout.rate())
                .collect();
            let held: Vec<f64> = runs.iter().map(|m| m.holdout.customers as f64).collect();
            let d = spread(&up);
            let policy_rate = interval(&runs.iter().map(|m| m.policy.rate()).collect::<Vec<_>>());
            let holdout_rate = interval(&runs.iter().map(|m| m.holdout.rate()).collect::<Vec<_>>());
            let revenue = if sc.has_revenue() {
                let rv: Vec<f64> = runs
                    .iter()
                    .map(|m| m.policy.revenue_per_customer() - m.holdout.revenue_per_customer())
                    .collect();
                let v = spread(&rv);
                format!(
                    "; in revenue {:+.3} per decision (95% interval {:+.3} to {:+.3}; median {:+.3})",
                    v.mean.mean,
                    v.mean.low(),
                    v.mean.high(),
                    v.median
                )
            } else {
                String::new()
            };
            out.push(format!(
                "Holdout ({:.0}% of decisions, uniform, never learned from; {} customers a run): {} converted {:.2}% against the holdout's {:.2}%, an uplift of {} points (95% interval {} to {}; median {}, 10th-90th percentile {} to {} across runs){revenue}.",
                100.0 * sc.campaign.holdout_fraction,
                n0(interval(&held).mean),
                k.label(),
                100.0 * policy_rate.mean,
                100.0 * holdout_rate.mean,
                pp(d.mean.mean),
                pp(d.mean.low()),
                pp(d.mean.high()),
                pp(d.median),
                pp(d.p10),
                pp(d.p90)
            ));
        }
    }
    for (o, offer) in sc.offers.iter().enumerate() {
        let b = offer.budget;
        if b.is_none() {
            continue;
        }
        let period = match b.period {
            crate::campaign::CapPeriod::Lifetime => "",
            crate::campaign::CapPeriod::Day => " a day",
        };
        let mut caps = Vec::new();
        if b.max_impressions > 0 {
            caps.push(format!(
                "{} impressions{period}",
                n0(b.max_impressions as f64)
            ));
        }
        if b.max_conversions > 0 {
            caps.push(format!(
                "{} conversions{period}",
                n0(b.max_conversions as f64)
            ));
        }
        let mut lines = Vec::new();
        for (s, k) in r.strategies.iter().enumerate() {
            if *k == StrategyKind::Oracle {
                continue;
            }
            let shown: Vec<f64> = r.runs[s]
                .iter()
                .map(|m| m.buckets.iter().map(|x| x.offer_counts[o]).sum::<u64>() as f64)
                .collect();
            let conv: Vec<f64> = r.runs[s]
                .iter()
                .map(|m| m.offer_reported[o] as f64)
                .collect();
            lines.push(format!(
                "{} {} shown (most {}), {} conversions (most {})",
                k.label(),
                n0(interval(&shown).mean),
                n0(quantile(&shown, 1.0)),
                n0(interval(&conv).mean),
                n0(quantile(&conv, 1.0))
            ));
        }
        out.push(format!(
            "Budget of {} (cap {} per campaign, counted by the engine in the conversions it learns of; the per-segment test runs a campaign per segment, the oracle ignores caps): mean per run, and the most in any run: {}.",
            offer.id,
            caps.join(" and "),
            lines.join("; ")
        ));
    }
    out
}

/// How one A/B strategy was planned, in words.
pub fn plan_words(sc: &Scenario, r: &SimResults, kind: StrategyKind, mde: f64) -> String {
    let k = sc.offers.len();
    let control = &sc.offers[sc.ab.control.min(k - 1)].id;
    let Some(p) = r.plans.as_ref() else {
        return String::new();
    };
    let base = format!(
        "a {:.0}% lift over the {:.2}% baseline, {} offers, α = 0.05 family-wise ({:.4} per comparison with the control {control}), power 0.8",
        100.0 * mde,
        100.0 * r.baseline_rate,
        k,
        super::abtest::corrected_alpha(0.05, k)
    );
    let capped = |plan: &Plan| {
        if plan.capped {
            format!(
                "; the horizon caps a test at {:.0}% of its customers, so it runs with {} per offer{}",
                100.0 * sc.ab.max_test_share,
                n0(plan.looks.last().copied().unwrap_or(0) as f64),
                plan.power
                    .map_or(String::new(), |w| format!(" (power {:.2})", w))
            )
        } else {
            String::new()
        }
    };
    match kind {
        StrategyKind::AbTest => format!(
            "Fixed horizon: sized for {base}: {} per offer{}. Every offer against the control by two-sided z-tests, Holm's step-down; the best offer that beats the control significantly is rolled out, otherwise the control stays.",
            n0(p.fixed.wanted_per_arm as f64),
            capped(&p.fixed)
        ),
        StrategyKind::AbSequential => {
            let b = p.sequential.sequential.as_ref().map_or(String::new(), |d| {
                d.boundaries
                    .iter()
                    .map(|z| format!("{z:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            format!(
                "Group-sequential: {} equally spaced looks with O'Brien-Fleming boundaries (z ≥ {b}), for {base}: at most {} per offer (the fixed size × {:.3}){}. Stops at the first look where an offer crosses (or every offer is significantly worse than the control).",
                p.sequential.looks.len(),
                n0(p.sequential.wanted_per_arm as f64),
                p.sequential.sequential.as_ref().map_or(1.0, |d| d.inflation),
                capped(&p.sequential)
            )
        }
        StrategyKind::TestAndRoll => format!(
            "Test & roll: the test size that maximises expected conversions over {} customers with the offers' rates a priori Normal({:.2}%, sd {:.2}%): {} per offer{}; then the offer with the highest posterior mean is rolled out, significant or not.",
            n0(sc.total_customers() as f64),
            100.0 * p.test_and_roll.prior.0,
            100.0 * p.test_and_roll.prior.1,
            n0(p.test_and_roll.wanted_per_arm as f64),
            capped(&p.test_and_roll)
        ),
        StrategyKind::AbSegment => {
            let per: Vec<String> = sc
                .segments
                .iter()
                .zip(&p.per_segment)
                .map(|(g, plan)| {
                    format!(
                        "{} {}{}",
                        g.name,
                        n0(plan.looks.last().copied().unwrap_or(0) as f64),
                        if plan.capped { " (capped)" } else { "" }
                    )
                })
                .collect();
            format!(
                "Per segment: a group-sequential test in each segment on its own customers, analysed and rolled out per segment; at most, per offer: {}.",
                per.join(", ")
            )
        }
        _ => String::new(),
    }
}

/// What one A/B strategy did over the runs, in words.
pub fn outcome_words(sc: &Scenario, r: &SimResults, s: usize) -> String {
    let runs = &r.runs[s];
    let n = runs.len();
    let units = runs.first().map_or(0, |m| m.ab.len());
    let mut o = String::new();
    for u in 0..units {
        let decided: Vec<f64> = runs
            .iter()
            .filter_map(|m| m.ab.get(u).and_then(|x| x.decided_at))
            .map(|t| t as f64 / 86_400_000.0)
            .collect();
        let significant = runs
            .iter()
            .filter(|m| {
                m.ab.get(u)
                    .and_then(|x| x.decision)
                    .is_some_and(|d| d.significant)
            })
            .count();
        let control = sc.ab.control.min(sc.offers.len() - 1);
        let kept = runs
            .iter()
            .filter(|m| {
                m.ab.get(u)
                    .and_then(|x| x.decision)
                    .is_some_and(|d| d.winner == control)
            })
            .count();
        let right = runs
            .iter()
            .enumerate()
            .filter(|(run, m)| {
                let truth = if units > 1 {
                    super::strategy::argmax(&m.segment_true[u])
                } else {
                    r.true_best[*run]
                };
                m.ab.get(u)
                    .and_then(|x| x.decision)
                    .is_some_and(|d| d.winner == truth)
            })
            .count();
        if units > 1 {
            let _ = write!(o, "In {}, it ", sc.segments[u].name);
        } else {
            o.push_str("It ");
        }
        if decided.is_empty() {
            let _ = write!(o, "never finished within the horizon. ");
            continue;
        }
        let split: Vec<f64> = runs
            .iter()
            .filter_map(|m| m.ab.get(u).map(|x| x.split as f64))
            .collect();
        let verdicts = if r.strategies[s] == StrategyKind::TestAndRoll {
            String::new()
        } else {
            format!(
                "rolled out a significant winner in {significant}, kept the control in {kept}; "
            )
        };
        let _ = write!(
            o,
            "stopped on day {:.1} (median; 10th-90th percentile {:.1} to {:.1}) in {}/{n} runs, after splitting {} customers evenly (median: the test's and those who arrived while its last outcomes came in); {verdicts}the offer rolled out was the true best in {right}/{n}. ",
            quantile(&decided, 0.5),
            quantile(&decided, 0.1),
            quantile(&decided, 0.9),
            decided.len(),
            n0(quantile(&split, 0.5))
        );
    }
    o.trim_end().to_string()
}

fn sep(o: &mut String) {
    o.push('\n');
}

/// The plain-words summary printed by `banditd simulate`.
pub fn summary(sc: &Scenario, r: &SimResults, runs: usize, mde: f64) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Scenario {}: {} customers over {} days, {} offers, {} segments, {} runs.",
        sc.name,
        n0(sc.total_customers() as f64),
        sc.days,
        sc.offers.len(),
        sc.segments.len(),
        runs
    );
    let _ = writeln!(
        o,
        "Conversions and regret (expected conversions lost against the oracle) per strategy, across runs:\nthe mean with its 95% interval, and the median with the 10th-90th percentile.\n"
    );
    let rev = sc.has_revenue();
    let _ = writeln!(
        o,
        "{:<40} {:>22} {:>26} {:>16} {:>22}{}",
        "strategy",
        "conversions: mean",
        "median [p10-p90]",
        "regret: mean",
        "median [p10-p90]",
        if rev { "          revenue: mean" } else { "" }
    );
    for (s, k) in r.strategies.iter().enumerate() {
        let conv = spread(&per_run(r, s, conversions));
        let regret = spread(&per_run(r, s, |m| m.total().regret));
        let _ = write!(
            o,
            "{:<40} {:>22} {:>26} {:>16} {:>22}",
            k.label(),
            format!("{} ± {}", n0(conv.mean.mean), n0(conv.mean.half)),
            format!("{} [{}-{}]", n0(conv.median), n0(conv.p10), n0(conv.p90)),
            format!("{} ± {}", n0(regret.mean.mean), n0(regret.mean.half)),
            format!(
                "{} [{}-{}]",
                n0(regret.median),
                n0(regret.p10),
                n0(regret.p90)
            ),
        );
        if rev {
            let v = interval(&per_run(r, s, |m| m.total().revenue));
            let _ = write!(o, " {:>22}", format!("{} ± {}", n0(v.mean), n0(v.half)));
        }
        o.push('\n');
    }
    let (cost, value) = effects(r);
    if !cost.is_empty() {
        sep(&mut o);
        o.push_str("What testing costs:\n");
        for c in &cost {
            let _ = writeln!(o, "  {c}");
        }
    }
    if !value.is_empty() {
        sep(&mut o);
        o.push_str("What personalisation is worth:\n");
        for v in &value {
            let _ = writeln!(o, "  {v}");
        }
    }
    let settings = marketing(sc, r);
    if !settings.is_empty() {
        sep(&mut o);
        o.push_str("Revenue, holdout, budgets and slates:\n");
        for v in &settings {
            let _ = writeln!(o, "  {v}");
        }
    }
    let ab: Vec<usize> = (0..r.strategies.len())
        .filter(|s| r.strategies[*s].design().is_some())
        .collect();
    if !ab.is_empty() {
        sep(&mut o);
        o.push_str("The A/B designs:\n");
        for s in ab {
            let k = r.strategies[s];
            let _ = writeln!(o, "  {}: {}", k.label(), plan_words(sc, r, k, mde));
            let _ = writeln!(o, "    {}", outcome_words(sc, r, s));
        }
    }
    o
}

/// report.md.
pub fn markdown(sc: &Scenario, r: &SimResults, runs: usize, seed: u64, mde: f64) -> String {
    let mut o = format!(
        "# Simulation: {}\n\n{}\n\nSeed {seed}, {runs} runs. Reproduce with `banditd simulate <scenario> --runs {runs} --seed {seed}`. The same page with charts: report.html.\n\n## Summary\n\n```\n{}```\n\n",
        sc.name,
        sc.description.trim(),
        summary(sc, r, runs, mde)
    );
    o.push_str("Regret is expected conversions lost against the oracle (Σ p_oracle − p_chosen). Intervals are 95% t-intervals across runs; differences are paired (every strategy sees the same customers and the same coin flips).\n\n");
    o.push_str("## Per segment (mean over runs)\n\n| segment | strategy | customers | conversions | rate % | regret |\n|---|---|---:|---:|---:|---:|\n");
    for row in segment_rows(sc, r) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {:.3} | {} |",
            row.segment,
            row.strategy,
            n0(row.customers),
            group(row.conversions, 1),
            row.rate_pct,
            group(row.regret, 1)
        );
    }
    o.push_str("\n## Files\n\n- `report.html`: this report with its charts (opens from disk, no network)\n- `runs.csv`: one row per strategy and run\n- `metrics.csv`: one row per time bucket, strategy and run\n");
    o
}

/// One row of the per-segment view.
pub struct SegmentRow {
    pub segment: String,
    pub strategy: String,
    pub customers: f64,
    pub conversions: f64,
    pub rate_pct: f64,
    pub regret: f64,
}

/// The per-segment view: for each segment and strategy, means over runs.
pub fn segment_rows(sc: &Scenario, r: &SimResults) -> Vec<SegmentRow> {
    let mut rows = Vec::new();
    for (i, seg) in sc.segments.iter().enumerate() {
        for (s, k) in r.strategies.iter().enumerate() {
            let f = |g: &dyn Fn(&RunMetrics) -> f64| interval(&per_run(r, s, g)).mean;
            let customers = f(&|m| m.segments[i].customers as f64);
            let conv = f(&|m| m.segments[i].conversions as f64);
            rows.push(SegmentRow {
                segment: seg.name.clone(),
                strategy: k.label().to_string(),
                customers,
                conversions: conv,
                rate_pct: 100.0 * conv / customers.max(1.0),
                regret: f(&|m| m.segments[i].regret),
            });
        }
    }
    rows
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

/// runs.csv: one row per strategy and run, with the A/B test's outcome
/// (`;`-separated per segment for the per-segment test).
pub fn runs_csv(sc: &Scenario, r: &SimResults) -> String {
    let mut o = String::from(
        "strategy,run,seed,customers,conversions,expected_conversions,regret,revenue,oracle_expected,best_single_offer_expected,ab_stopped_day,ab_winner,ab_significant\n",
    );
    for (s, k) in r.strategies.iter().enumerate() {
        for (run, m) in r.runs[s].iter().enumerate() {
            let t = m.total();
            let days: Vec<String> =
                m.ab.iter()
                    .map(|u| {
                        u.decided_at
                            .map_or(String::new(), |d| format!("{:.3}", d as f64 / 86_400_000.0))
                    })
                    .collect();
            let winners: Vec<String> =
                m.ab.iter()
                    .map(|u| {
                        u.decision
                            .map_or(String::new(), |d| sc.offers[d.winner].id.clone())
                    })
                    .collect();
            let sig: Vec<String> =
                m.ab.iter()
                    .map(|u| {
                        u.decision
                            .map_or(String::new(), |d| d.significant.to_string())
                    })
                    .collect();
            let _ = writeln!(
                o,
                "{},{},{},{},{},{:.3},{:.3},{:.2},{:.3},{:.3},{},{},{}",
                k.key(),
                run + 1,
                r.seeds.get(run).copied().unwrap_or(0),
                t.customers,
                t.conversions,
                t.expected,
                t.regret,
                t.revenue,
                r.oracle_expected.get(run).copied().unwrap_or(0.0),
                r.single_best_expected.get(run).copied().unwrap_or(0.0),
                days.join(";"),
                winners.join(";"),
                sig.join(";")
            );
        }
    }
    o
}

/// The median day each unit's test stopped and its test phase ended,
/// across runs (for the timeline on the regret chart).
pub fn ab_timeline(r: &SimResults, s: usize) -> Option<(f64, f64)> {
    let days = |f: &dyn Fn(&super::abrun::AbUnit) -> Option<u64>| {
        let v: Vec<f64> = r.runs[s]
            .iter()
            .filter_map(|m| m.ab.first().and_then(f))
            .map(|t| t as f64 / 86_400_000.0)
            .collect();
        (!v.is_empty()).then(|| quantile(&v, 0.5))
    };
    let stop = days(&|u| u.decided_at)?;
    let end = days(&|u| u.test_ended_at).unwrap_or(stop);
    Some((end.min(stop), stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_r_type_7() {
        let xs = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(quantile(&xs, 0.5), 3.0);
        assert!((quantile(&xs, 0.1) - 1.4).abs() < 1e-12);
        assert!((quantile(&xs, 0.9) - 7.6).abs() < 1e-12);
        assert_eq!(quantile(&[5.0], 0.9), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
