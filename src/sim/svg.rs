//! Hand-written SVG line charts (no crates).
//!
//! Owns only drawing: series of points, optional min–max bands, axes,
//! ticks and a legend. Knows nothing about strategies or scenarios.

use std::fmt::Write;

/// One line of a chart, with an optional band (low, high) per point.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub band: Option<Vec<(f64, f64)>>,
}

const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Renders a line chart.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h) = (820.0, 460.0);
    let (l, r, t, b) = (80.0, 230.0, 40.0, 50.0);
    let all = series.iter().flat_map(|s| {
        s.points.iter().copied().chain(
            s.band
                .iter()
                .flatten()
                .flat_map(|(lo, hi)| [(f64::NAN, *lo), (f64::NAN, *hi)]),
        )
    });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    for (x, y) in all {
        if x.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
        }
        if y.is_finite() {
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 >= x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - (y - y0) / (y1 - y0) * (h - t - b);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        o,
        r#"<rect width="{w}" height="{h}" fill="white"/><text x="{l}" y="24" font-size="15">{}</text>"#,
        esc(title)
    );
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let (yv, xv) = (y0 + f * (y1 - y0), x0 + f * (x1 - x0));
        let _ = writeln!(
            o,
            r##"<line x1="{l}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            py(yv) + 4.0,
            fmt_tick(yv),
            y = py(yv)
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(xv),
            h - b + 18.0,
            fmt_tick(xv)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
        (l + w - r) / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (t + h - b) / 2.0,
        esc(y_label)
    );
    let _ = writeln!(
        o,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        w - l - r,
        h - t - b
    );
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
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
                r#"<path d="{d}Z" fill="{c}" fill-opacity="0.15" stroke="none"/>"#
            );
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        let ly = t + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            w - r + 10.0,
            w - r + 30.0,
            w - r + 36.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}
