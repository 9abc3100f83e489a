//! The charts and `report.html`: one self-contained page (styles and SVG
//! charts inline, no scripts, nothing fetched), for a marketer to open from
//! disk.
//!
//! Owns the chart data (cumulative regret with the A/B test's timeline,
//! conversion rate, traffic share, regret per segment) and the page's
//! layout. The numbers and sentences come from `report`.

use super::report::{self, interval, spread};
use super::runner::SimResults;
use super::scenario::Scenario;
use super::strategy::StrategyKind;
use super::svg::{bar_chart, esc, group, line_chart, Chart, Marker, Series, Span};
use std::fmt::Write;

/// The charts, as (file name, title, SVG).
pub fn charts(sc: &Scenario, r: &SimResults) -> Vec<(&'static str, String, String)> {
    let per_day = sc.customers_per_day.max(1) as f64;
    let day =
        |i: usize| ((i as u64 + 1) * r.bucket_size).min(sc.total_customers()) as f64 / per_day;
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
            points: (0..nb).map(|i| (day(i), interval(&col(i)).mean)).collect(),
            band: Some(
                (0..nb)
                    .map(|i| {
                        let c = col(i);
                        (report::quantile(&c, 0.1), report::quantile(&c, 0.9))
                    })
                    .collect(),
            ),
        });
        rate.push(Series {
            name: k.key().into(),
            points: (0..nb)
                .map(|i| {
                    let v: Vec<f64> = r.runs[s]
                        .iter()
                        .map(|m| {
                            m.buckets[i].conversions as f64 / m.buckets[i].customers.max(1) as f64
                        })
                        .collect();
                    (day(i), 100.0 * interval(&v).mean)
                })
                .collect(),
            band: None,
        });
    }
    // The campaign-wide A/B designs' timelines, median over runs: the best
    // one's test phase shaded, each one's stop (roll-out from then on).
    let mut spans = Vec::new();
    let mut markers = Vec::new();
    if let Some(a) = report::best_ab(r) {
        if let Some((end, _)) = report::ab_timeline(r, a) {
            spans.push(Span {
                from: 0.0,
                to: end,
                label: format!("{}: test phase", r.strategies[a].key()),
            });
        }
    }
    for (s, k) in r.strategies.iter().enumerate() {
        if k.design().is_none() || *k == StrategyKind::AbSegment {
            continue;
        }
        if let Some((_, stop)) = report::ab_timeline(r, s) {
            markers.push(Marker {
                x: stop,
                label: format!("{}: stops day {stop:.1}, rolls out", k.key()),
            });
        }
    }
    let conv = report::conversion_intervals(r);
    let bandits = [
        StrategyKind::ThompsonSegment,
        StrategyKind::ThompsonCampaign,
        StrategyKind::LinUcb,
        StrategyKind::EpsilonGreedy,
    ];
    let best = bandits
        .iter()
        .filter_map(|k| report::index_of(r, *k))
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
                        let v: Vec<f64> = r.runs[best]
                            .iter()
                            .map(|m| {
                                m.buckets[i].offer_counts[o] as f64
                                    / m.buckets[i].customers.max(1) as f64
                            })
                            .collect();
                        (day(i), 100.0 * interval(&v).mean)
                    })
                    .collect()
            }),
            band: None,
        })
        .collect();
    share.truncate(10);
    let share_title = format!(
        "Traffic share per offer: {} (first 10 offers)",
        r.strategies.get(best).map_or("", |k| k.key())
    );
    let names: Vec<String> = r.strategies.iter().map(|k| k.key().to_string()).collect();
    let groups: Vec<(String, Vec<f64>)> = sc
        .segments
        .iter()
        .enumerate()
        .map(|(i, g)| {
            (
                g.name.clone(),
                (0..r.strategies.len())
                    .map(|s| {
                        interval(
                            &r.runs[s]
                                .iter()
                                .map(|m| m.segments[i].regret)
                                .collect::<Vec<_>>(),
                        )
                        .mean
                    })
                    .collect(),
            )
        })
        .collect();
    let regret_title =
        "Cumulative regret against the oracle (mean; band: 10th-90th percentile of runs)";
    let rate_title = "Conversion rate (mean over runs)";
    let seg_title = "Regret per segment (mean over runs)";
    vec![
        (
            "regret.svg",
            regret_title.to_string(),
            line_chart(&Chart {
                title: regret_title,
                x_label: "day",
                y_label: "expected conversions lost",
                series: &regret,
                spans: &spans,
                markers: &markers,
            }),
        ),
        (
            "conversion_rate.svg",
            rate_title.to_string(),
            line_chart(&Chart {
                title: rate_title,
                x_label: "day",
                y_label: "conversion rate %",
                series: &rate,
                spans: &spans,
                markers: &[],
            }),
        ),
        (
            "traffic_share.svg",
            share_title.clone(),
            line_chart(&Chart {
                title: &share_title,
                x_label: "day",
                y_label: "share of traffic %",
                series: &share,
                spans: &[],
                markers: &[],
            }),
        ),
        (
            "segment_regret.svg",
            seg_title.to_string(),
            bar_chart(seg_title, "expected conversions lost", &names, &groups),
        ),
    ]
}

const STYLE: &str = "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{padding:.3em .7em;white-space:nowrap;border-bottom:1px solid #e5e5e5;text-align:right}th:first-child,td:first-child,th.l,td.l{text-align:left}th{background:#f6f6f6}.box{background:#f7f9fc;border-left:4px solid #1f77b4;padding:.6em 1em;margin:.8em 0}.muted{color:#666;font-size:.9em}figure{margin:1.2em 0}figcaption{color:#555;font-size:.9em}code{background:#f2f2f2;padding:0 .2em}";

/// report.html.
pub fn page(sc: &Scenario, r: &SimResults, runs: usize, seed: u64, mde: f64) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Simulation: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&sc.name)
    );
    let _ = writeln!(
        o,
        "<h1>Simulation: {}</h1><p>{}</p><p class=\"muted\">{} customers over {} days ({} a day), {} offers, {} segments; {runs} runs, seed {seed}. Reproduce with <code>banditd simulate &lt;scenario&gt; --runs {runs} --seed {seed}</code>.</p>",
        esc(&sc.name),
        esc(sc.description.trim()),
        group(sc.total_customers() as f64, 0),
        sc.days,
        group(sc.customers_per_day as f64, 0),
        sc.offers.len(),
        sc.segments.len()
    );
    let (cost, value) = report::effects(r);
    if !cost.is_empty() {
        o.push_str("<h2>What testing costs</h2>\n");
        for c in &cost {
            let _ = writeln!(o, "<div class=\"box\">{}</div>", esc(c));
        }
    }
    if !value.is_empty() {
        o.push_str("<h2>What personalisation is worth</h2>\n");
        for v in &value {
            let _ = writeln!(o, "<div class=\"box\">{}</div>", esc(v));
        }
    }
    let settings = report::marketing(sc, r);
    if !settings.is_empty() {
        o.push_str("<h2>Revenue, holdout, budgets and slates</h2>\n");
        for v in &settings {
            let _ = writeln!(o, "<div class=\"box\">{}</div>", esc(v));
        }
    }
    o.push_str("<h2>Every strategy</h2>\n<p class=\"muted\">Across runs: the mean with its 95% interval, and the median with the 10th-90th percentile. Regret: expected conversions lost against an oracle that knows every customer's true rates. Every strategy sees the same customers.</p>\n<table><tr><th>strategy</th><th>conversions (mean ± 95%)</th><th>median [p10-p90]</th><th>regret (mean ± 95%)</th><th>median [p10-p90]</th>");
    let rev = sc.has_revenue();
    if rev {
        o.push_str("<th>revenue (mean ± 95%)</th>");
    }
    o.push_str("</tr>\n");
    for (s, k) in r.strategies.iter().enumerate() {
        let c = spread(
            &r.runs[s]
                .iter()
                .map(|m| m.total().conversions as f64)
                .collect::<Vec<_>>(),
        );
        let g = spread(
            &r.runs[s]
                .iter()
                .map(|m| m.total().regret)
                .collect::<Vec<_>>(),
        );
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{} ± {}</td><td>{} [{}-{}]</td><td>{} ± {}</td><td>{} [{}-{}]</td>",
            esc(k.label()),
            group(c.mean.mean, 0),
            group(c.mean.half, 0),
            group(c.median, 0),
            group(c.p10, 0),
            group(c.p90, 0),
            group(g.mean.mean, 0),
            group(g.mean.half, 0),
            group(g.median, 0),
            group(g.p10, 0),
            group(g.p90, 0)
        );
        if rev {
            let v = interval(
                &r.runs[s]
                    .iter()
                    .map(|m| m.total().revenue)
                    .collect::<Vec<_>>(),
            );
            let _ = write!(o, "<td>{} ± {}</td>", group(v.mean, 0), group(v.half, 0));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
    let ab: Vec<usize> = (0..r.strategies.len())
        .filter(|s| r.strategies[*s].design().is_some())
        .collect();
    if !ab.is_empty() {
        o.push_str("<h2>The A/B designs</h2>\n");
        for s in ab {
            let k = r.strategies[s];
            let _ = writeln!(
                o,
                "<h3>{}</h3><p>{}</p><p>{}</p>",
                esc(k.label()),
                esc(&report::plan_words(sc, r, k, mde)),
                esc(&report::outcome_words(sc, r, s))
            );
        }
    }
    let charts = charts(sc, r);
    o.push_str("<h2>Over time</h2>\n");
    for (_, title, svg) in charts.iter().take(3) {
        let _ = writeln!(
            o,
            "<figure>{svg}<figcaption>{}</figcaption></figure>",
            esc(title)
        );
    }
    o.push_str("<h2>Per segment</h2>\n");
    if let Some((_, title, svg)) = charts.get(3) {
        let _ = writeln!(
            o,
            "<figure>{svg}<figcaption>{}</figcaption></figure>",
            esc(title)
        );
    }
    o.push_str("<table><tr><th>segment</th><th class=\"l\">strategy</th><th>customers</th><th>conversions</th><th>rate %</th><th>regret</th></tr>\n");
    for row in report::segment_rows(sc, r) {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
            esc(&row.segment),
            esc(&row.strategy),
            group(row.customers, 0),
            group(row.conversions, 1),
            row.rate_pct,
            group(row.regret, 1)
        );
    }
    o.push_str("</table>\n<p class=\"muted\">Files next to this page: runs.csv (one row per strategy and run), metrics.csv (per time bucket), report.md, and the charts as SVG.</p>\n</body></html>\n");
    o
}
