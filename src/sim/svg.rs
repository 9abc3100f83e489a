//! Hand-written SVG charts (no crates): line charts with optional min–max
//! bands, shaded spans and vertical markers, and grouped bar charts.
//!
//! Owns only drawing: axes on round tick values (1, 2 or 5 × 10ⁿ), numbers
//! with thousands separators, legends. Knows nothing about strategies or
//! scenarios.

use std::fmt::Write;

/// One line of a chart, with an optional band (low, high) per point.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub band: Option<Vec<(f64, f64)>>,
}

/// A shaded stretch of the x axis (for example an A/B test's test phase).
pub struct Span {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// A vertical line at `x` (for example the day a test stopped).
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// A line chart.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    pub spans: &'a [Span],
    pub markers: &'a [Marker],
}

pub const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Round tick values covering [lo, hi]: about `target` ticks at a step of
/// 1, 2 or 5 × 10ⁿ (Heckbert, "Nice numbers for graph labels", 1990).
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let raw = (hi - lo) / target.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let n = (last - first) as usize;
    (0..=n.min(100))
        .map(|i| (first + i as f64) * step)
        .collect()
}

/// `v` with thousands separators and the decimals a tick step of `step` needs.
pub fn fmt_number(v: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|d| {
            let scaled = step.abs() * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(6) as usize;
    group(v, decimals)
}

/// `v` rounded to `decimals`, with a comma between thousands.
pub fn group(v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    let negative = v < 0.0 && out.chars().any(|c| c.is_ascii_digit() && c != '0');
    if negative {
        format!("−{out}")
    } else {
        out
    }
}

const W: f64 = 860.0;
const H: f64 = 440.0;
const L: f64 = 84.0;
const R: f64 = 250.0;
const T: f64 = 40.0;
const B: f64 = 54.0;

fn frame(o: &mut String, title: &str) {
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12" role="img" aria-label="{t}">"#,
        t = esc(title)
    );
    let _ = writeln!(
        o,
        r#"<rect width="{W}" height="{H}" fill="white"/><text x="{L}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
}

fn axis_labels(o: &mut String, x_label: &str, y_label: &str) {
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
        (L + W - R) / 2.0,
        H - 12.0,
        esc(x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (T + H - B) / 2.0,
        esc(y_label)
    );
}

/// Horizontal grid lines and their labels at the y ticks.
fn y_grid(o: &mut String, ticks: &[f64], step: f64, py: &dyn Fn(f64) -> f64) {
    for y in ticks {
        let _ = writeln!(
            o,
            r##"<line x1="{L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - R,
            L - 6.0,
            py(*y) + 4.0,
            fmt_number(*y, step),
            yy = py(*y)
        );
    }
}

fn legend(o: &mut String, i: usize, name: &str, color: &str, bar: bool) {
    let ly = T + 10.0 + 18.0 * i as f64;
    if bar {
        let _ = writeln!(
            o,
            r#"<rect x="{}" y="{}" width="20" height="10" fill="{color}"/>"#,
            W - R + 12.0,
            ly - 5.0
        );
    } else {
        let _ = writeln!(
            o,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
            W - R + 12.0,
            W - R + 32.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}">{}</text>"#,
        W - R + 38.0,
        ly + 4.0,
        esc(name)
    );
}

/// A line chart without spans or markers.
pub fn plain_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    line_chart(&Chart {
        title,
        x_label,
        y_label,
        series,
        spans: &[],
        markers: &[],
    })
}

/// Renders a line chart.
pub fn line_chart(c: &Chart) -> String {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    for s in c.series {
        for (x, y) in &s.points {
            if x.is_finite() {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
            }
            if y.is_finite() {
                y0 = y0.min(*y);
                y1 = y1.max(*y);
            }
        }
        for (lo, hi) in s.band.iter().flatten() {
            for y in [lo, hi] {
                if y.is_finite() {
                    y0 = y0.min(*y);
                    y1 = y1.max(*y);
                }
            }
        }
    }
    if x0 >= x1 {
        (x0, x1) = (0.0, 1.0);
    }
    x0 = x0.min(0.0);
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let xt = nice_ticks(x0, x1, 8);
    let yt = nice_ticks(y0, y1, 6);
    let (x0, x1) = (xt[0], *xt.last().unwrap_or(&x1));
    let (y0, y1) = (yt[0], *yt.last().unwrap_or(&y1));
    let xstep = xt.get(1).map_or(1.0, |v| v - xt[0]);
    let ystep = yt.get(1).map_or(1.0, |v| v - yt[0]);
    let px = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let py = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let mut o = String::new();
    frame(&mut o, c.title);
    for s in c.spans {
        let (a, b) = (px(s.from.max(x0)), px(s.to.min(x1)));
        let _ = writeln!(
            o,
            r##"<rect x="{a:.1}" y="{T}" width="{:.1}" height="{}" fill="#f2e6c9" fill-opacity="0.7"/><text x="{:.1}" y="{}" font-size="11" fill="#7a5b00">{}</text>"##,
            (b - a).max(0.0),
            H - T - B,
            a + 4.0,
            T + 14.0,
            esc(&s.label)
        );
    }
    y_grid(&mut o, &yt, ystep, &py);
    for x in &xt {
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="#444"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - B,
            H - B + 5.0,
            H - B + 19.0,
            fmt_number(*x, xstep),
            xx = px(*x)
        );
    }
    axis_labels(&mut o, c.x_label, c.y_label);
    let _ = writeln!(
        o,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        W - L - R,
        H - T - B
    );
    for (i, s) in c.series.iter().enumerate() {
        let col = COLORS[i % COLORS.len()];
        if let Some(band) = &s.band {
            let mut d = String::new();
            for ((x, _), (_, hi)) in s.points.iter().zip(band) {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1} ",
                    if d.is_empty() { "M" } else { "L" },
                    px(*x),
                    py(*hi)
                );
            }
            for ((x, _), (lo, _)) in s.points.iter().zip(band).rev() {
                let _ = write!(d, "L{:.1},{:.1} ", px(*x), py(*lo));
            }
            let _ = writeln!(
                o,
                r#"<path d="{d}Z" fill="{col}" fill-opacity="0.12" stroke="none"/>"#
            );
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        legend(&mut o, i, &s.name, col, false);
    }
    for (i, m) in c.markers.iter().enumerate() {
        let x = px(m.x.clamp(x0, x1));
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{}" stroke="#7a5b00" stroke-dasharray="5 3"/><text x="{:.1}" y="{}" font-size="11" fill="#7a5b00">{}</text>"##,
            H - B,
            x + 4.0,
            T + 30.0 + 14.0 * i as f64,
            esc(&m.label)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// A grouped bar chart: one group per `groups` entry (label, one value per
/// series), one colour per series.
pub fn bar_chart(
    title: &str,
    y_label: &str,
    series: &[String],
    groups: &[(String, Vec<f64>)],
) -> String {
    let vals = groups.iter().flat_map(|(_, v)| v.iter().copied());
    let (y0, y1) = vals.fold((0.0f64, 0.0f64), |(lo, hi), v| {
        if v.is_finite() {
            (lo.min(v), hi.max(v))
        } else {
            (lo, hi)
        }
    });
    let yt = nice_ticks(y0, if y1 > y0 { y1 } else { y0 + 1.0 }, 6);
    let (y0, y1) = (yt[0], *yt.last().unwrap_or(&1.0));
    let ystep = yt.get(1).map_or(1.0, |v| v - yt[0]);
    let py = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let mut o = String::new();
    frame(&mut o, title);
    y_grid(&mut o, &yt, ystep, &py);
    let gw = (W - L - R) / groups.len().max(1) as f64;
    let bw = (gw * 0.8) / series.len().max(1) as f64;
    for (g, (label, values)) in groups.iter().enumerate() {
        let gx = L + g as f64 * gw + gw * 0.1;
        for (i, v) in values.iter().enumerate() {
            let (top, bottom) = (py(v.max(0.0)), py(v.min(0.0)));
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                gx + i as f64 * bw,
                (bw - 1.0).max(1.0),
                (bottom - top).max(0.0),
                COLORS[i % COLORS.len()],
                esc(series.get(i).map_or("", String::as_str)),
                group(*v, 1)
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            gx + gw * 0.4,
            H - B + 19.0,
            esc(label)
        );
    }
    axis_labels(&mut o, "", y_label);
    let _ = writeln!(
        o,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        W - L - R,
        H - T - B
    );
    for (i, s) in series.iter().enumerate() {
        legend(&mut o, i, s, COLORS[i % COLORS.len()], true);
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        assert_eq!(
            nice_ticks(0.0, 30.0, 8),
            vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
        );
        let t = nice_ticks(0.0, 1234.0, 6);
        assert_eq!(t, vec![0.0, 250.0, 500.0, 750.0, 1000.0, 1250.0]);
        let t = nice_ticks(2.1, 4.7, 6);
        assert!(t[0] <= 2.1 && *t.last().unwrap() >= 4.7, "{t:?}");
        assert!(
            t.windows(2).all(|w| ((w[1] - w[0]) - 0.5).abs() < 1e-9),
            "{t:?}"
        );
    }

    #[test]
    fn numbers_have_thousands_separators_and_the_step_decimals() {
        assert_eq!(group(1234567.0, 0), "1,234,567");
        assert_eq!(group(999.0, 0), "999");
        assert_eq!(group(-4200.5, 1), "−4,200.5");
        assert_eq!(group(-0.0001, 1), "0.0");
        assert_eq!(fmt_number(250_000.0, 50_000.0), "250,000");
        assert_eq!(fmt_number(1.5, 0.5), "1.5");
        assert_eq!(fmt_number(0.25, 0.25), "0.25");
        assert_eq!(fmt_number(3.0, 0.5), "3.0");
    }
}
