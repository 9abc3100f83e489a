//! Reading a Prometheus endpoint in tests.

/// `GET path` over HTTP/1.1: (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The Prometheus text format: `name{labels} value` lines (comments skipped),
/// every value a number.
pub fn parse_metrics(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series and value");
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {l}"));
            (series.to_string(), v)
        })
        .collect()
}

pub fn metric(m: &[(String, f64)], series: &str) -> f64 {
    m.iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no series {series}"))
}
