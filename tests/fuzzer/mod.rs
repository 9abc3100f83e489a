//! A structure-aware fuzzer for every rpc, against a real server over
//! HTTP/2 (raw frames, so it can send what no gRPC client would).
//!
//! Each input is one call: a request built field by field with hostile
//! values (huge strings and maps, NaN and ±inf, unknown enum numbers,
//! timestamps out of range, ids from a small pool so calls meet existing
//! campaigns and decisions), then often mutated (bytes flipped, truncated,
//! unknown fields added, random bytes) and framed, sometimes wrongly
//! (a truncated frame, a compressed flag without an encoding, a bad flag,
//! two messages, no message, an oversized length).
//!
//! Checked for every input: the answer carries a gRPC status, never
//! `UNKNOWN` or `INTERNAL`; the server's state (campaigns, decisions,
//! counts) is unchanged by every call that was refused; no panic.
//! Shared by `tests/fuzz.rs` (bounded, in CI) and `examples/fuzz.rs` (≥ 1M).
#![allow(dead_code)]

use banditd::api::pb;
use banditd::api::server::{self, ServerOptions};
use banditd::engine::{Clock, Engine, EngineOptions};
use bytes::Bytes;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const PATHS: [&str; 12] = [
    "/banditd.v1.Bandit/Choose",
    "/banditd.v1.Bandit/Reward",
    "/banditd.v1.Campaigns/CreateCampaign",
    "/banditd.v1.Campaigns/GetCampaign",
    "/banditd.v1.Campaigns/ListCampaigns",
    "/banditd.v1.Campaigns/DeleteCampaign",
    "/banditd.v1.Campaigns/AddArms",
    "/banditd.v1.Campaigns/RetireArm",
    "/banditd.v1.Campaigns/GetStats",
    "/banditd.v1.Campaigns/ExportDecisions",
    "/grpc.health.v1.Health/Check",
    "/banditd.v1.Bandit/NoSuchRpc",
];

/// Which of [`PATHS`] may change the state when they succeed.
const MUTATING: [bool; 12] = [
    true, true, true, false, false, true, true, true, false, false, false, false,
];

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub inputs: u64,
    /// Answers by gRPC status code.
    pub codes: BTreeMap<i32, u64>,
    /// Answers without a gRPC status (HTTP-level refusals, resets).
    pub no_status: u64,
    /// Refused calls after which the state differed.
    pub changed_by_refusal: u64,
    pub panics: u64,
    /// The first few offending inputs, described.
    pub examples: Vec<String>,
}

impl Report {
    pub fn bad(&self) -> u64 {
        self.codes.get(&2).copied().unwrap_or(0)
            + self.codes.get(&13).copied().unwrap_or(0)
            + self.changed_by_refusal
            + self.panics
    }

    pub fn summary(&self) -> String {
        let names = |c: i32| format!("{:?}", tonic::Code::from_i32(c));
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|(c, n)| format!("{} {n}", names(*c)))
            .collect();
        format!(
            "inputs {}; answers: {}; without a gRPC status {}; state changed by a refused call {}; panics {}",
            self.inputs,
            codes.join(", "),
            self.no_status,
            self.changed_by_refusal,
            self.panics
        )
    }
}

fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A hostile string: from a small pool (so calls meet each other), empty,
/// unicode, control characters, or huge.
fn string(rng: &mut SmallRng, pool: &[&str]) -> String {
    match rng.random_range(0..100) {
        0..=49 => pick(rng, pool).to_string(),
        50..=59 => String::new(),
        60..=69 => "é\u{0}\u{7f}💥\n".repeat(rng.random_range(1..5)),
        70..=84 => "x".repeat(rng.random_range(100..300)),
        85..=86 => "y".repeat(rng.random_range(5_000..70_000)),
        _ => (0..rng.random_range(1..40))
            .map(|_| char::from(rng.random_range(32u8..127)))
            .collect(),
    }
}

fn double(rng: &mut SmallRng) -> f64 {
    let r = rng.random::<f64>() * 10.0 - 5.0;
    *pick(
        rng,
        &[
            0.0,
            1.0,
            -1.0,
            0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            1e300,
            r,
        ],
    )
}

fn uint(rng: &mut SmallRng) -> u32 {
    let r = rng.random::<u32>();
    *pick(rng, &[0, 1, 60, 3600, u32::MAX, r])
}

const CAMPAIGNS: [&str; 4] = ["c0", "c1", "lin", "gone"];
const ARMS: [&str; 4] = ["a", "b", "c", "d"];
const SEGMENTS: [&str; 3] = ["", "young", "old"];
const FEATURES: [&str; 3] = ["age", "spend", "x"];

fn arms(rng: &mut SmallRng) -> Vec<pb::Arm> {
    let n = match rng.random_range(0..100) {
        0 => 2_000,
        1..=4 => 300,
        k => k % 4,
    };
    (0..n)
        .map(|i| pb::Arm {
            id: if i < 4 && rng.random_bool(0.7) {
                ARMS[i].to_string()
            } else {
                string(rng, &ARMS)
            },
            retired: rng.random_bool(0.1),
            value: [0.0, 0.0, 1.0, 2.5, -1.0, f64::NAN][rng.random_range(0..6)],
            max_impressions: [0, 0, 0, 3, 50][rng.random_range(0..5)],
            max_conversions: [0, 0, 0, 2][rng.random_range(0..4)],
            cap_period: rng.random_range(-1..3),
        })
        .collect()
}

fn campaign(rng: &mut SmallRng) -> pb::Campaign {
    use pb::campaign::Policy;
    let features = |rng: &mut SmallRng| -> Vec<String> {
        (0..*pick(rng, &[0usize, 1, 2, 3, 500]))
            .map(|_| string(rng, &FEATURES))
            .collect()
    };
    let policy = match rng.random_range(0..7) {
        0 => None,
        1 => Some(Policy::Thompson(pb::ThompsonSampling {
            prior_alpha: double(rng),
            prior_beta: double(rng),
            segment_prior_strength: rng.random_bool(0.5).then(|| double(rng)),
            exploration_floor: rng.random_bool(0.5).then(|| double(rng)),
        })),
        2 => Some(Policy::Linucb(pb::LinUcb {
            alpha: double(rng),
            features: features(rng),
            lambda: double(rng),
            epsilon: double(rng),
            missing: rng.random_range(-1..4),
        })),
        3 => Some(Policy::Lints(pb::LinTs {
            features: features(rng),
            lambda: double(rng),
            exploration: double(rng),
            epsilon: double(rng),
            missing: rng.random_range(-1..4),
        })),
        4 => Some(Policy::Uniform(pb::UniformSplit {})),
        5 => Some(Policy::EpsilonGreedy(pb::EpsilonGreedy {
            epsilon: rng.random_bool(0.5).then(|| double(rng)),
        })),
        _ => Some(Policy::Thompson(pb::ThompsonSampling::default())),
    };
    pb::Campaign {
        id: string(rng, &CAMPAIGNS),
        arms: arms(rng),
        policy,
        reward_timeout_seconds: uint(rng),
        default_reward: double(rng),
        decay_half_life_seconds: rng.random_bool(0.3).then(|| uint(rng)),
        holdout_fraction: [0.0, 0.0, 0.1, 0.5, 0.7, -0.1, f64::NAN][rng.random_range(0..7)],
    }
}

fn timestamp(rng: &mut SmallRng) -> Option<prost_types::Timestamp> {
    rng.random_bool(0.6).then(|| prost_types::Timestamp {
        seconds: *pick(rng, &[0, 1_700_000_000, -5, i64::MAX, i64::MIN]),
        nanos: *pick(rng, &[0, 999_999_999, -1, 1_000_000_000, i32::MAX]),
    })
}

/// A structurally valid request for rpc `i` of [`PATHS`] with hostile values.
fn message(rng: &mut SmallRng, i: usize, decisions: &[String]) -> Vec<u8> {
    let decision = |rng: &mut SmallRng| -> String {
        if !decisions.is_empty() && rng.random_bool(0.6) {
            pick(rng, decisions).clone()
        } else {
            string(rng, &["d-1", "0000000100000000", "x"])
        }
    };
    match i {
        0 => {
            let n = match rng.random_range(0..100) {
                0 => 20_000,
                1..=5 => 65,
                k => k % 4,
            };
            pb::ChooseRequest {
                campaign_id: string(rng, &CAMPAIGNS),
                segment: string(rng, &SEGMENTS),
                context: (0..n)
                    .map(|k| {
                        let name = if k < 3 {
                            FEATURES[k].to_string()
                        } else {
                            format!("f{k}")
                        };
                        (name, double(rng))
                    })
                    .collect(),
                decision_id: if rng.random_bool(0.3) {
                    decision(rng)
                } else {
                    String::new()
                },
                // Slates: mostly a few slots, sometimes more than the arms
                // or the limit.
                count: match rng.random_range(0..20) {
                    0 => u32::MAX,
                    1 => 17,
                    k => k % 5,
                },
            }
            .encode_to_vec()
        }
        1 => pb::RewardRequest {
            decision_id: decision(rng),
            value: double(rng),
            slot: match rng.random_range(0..10) {
                0 => u32::MAX,
                k => k % 4,
            },
        }
        .encode_to_vec(),
        2 => pb::CreateCampaignRequest {
            campaign: rng.random_bool(0.9).then(|| campaign(rng)),
        }
        .encode_to_vec(),
        3 => pb::GetCampaignRequest {
            campaign_id: string(rng, &CAMPAIGNS),
        }
        .encode_to_vec(),
        4 => pb::ListCampaignsRequest {}.encode_to_vec(),
        5 => pb::DeleteCampaignRequest {
            // Deleting the seeded campaigns would leave little to meet.
            campaign_id: string(rng, &["gone", "nope"]),
        }
        .encode_to_vec(),
        6 => pb::AddArmsRequest {
            campaign_id: string(rng, &CAMPAIGNS),
            arms: arms(rng),
        }
        .encode_to_vec(),
        7 => pb::RetireArmRequest {
            campaign_id: string(rng, &CAMPAIGNS),
            arm_id: string(rng, &ARMS),
        }
        .encode_to_vec(),
        8 => pb::GetStatsRequest {
            campaign_id: string(rng, &CAMPAIGNS),
            segment: string(rng, &SEGMENTS),
        }
        .encode_to_vec(),
        9 => pb::ExportDecisionsRequest {
            campaign_id: string(rng, &CAMPAIGNS),
            since: timestamp(rng),
            until: timestamp(rng),
            include_pending: rng.random_bool(0.5),
        }
        .encode_to_vec(),
        10 => tonic_health::pb::HealthCheckRequest {
            service: string(rng, &["", "banditd.v1.Bandit", "nope"]),
        }
        .encode_to_vec(),
        _ => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
    }
}

/// Mutations of an encoded message (or none).
fn mutate(rng: &mut SmallRng, mut m: Vec<u8>) -> (Vec<u8>, &'static str) {
    match rng.random_range(0..10) {
        0..=3 => (m, "valid"),
        4 => {
            for _ in 0..rng.random_range(1..8) {
                if !m.is_empty() {
                    let i = rng.random_range(0..m.len());
                    m[i] ^= 1 << rng.random_range(0..8);
                }
            }
            (m, "bits flipped")
        }
        5 => {
            let n = if m.is_empty() {
                0
            } else {
                rng.random_range(0..m.len())
            };
            m.truncate(n);
            (m, "truncated message")
        }
        6 => {
            // An unknown field of each wire type, at a high tag.
            let tag: u32 = rng.random_range(20..5000);
            match rng.random_range(0..4) {
                0 => pb_field(&mut m, tag, 0, &[0x96, 0x01]),
                1 => pb_field(&mut m, tag, 1, &[7; 8]),
                2 => {
                    let payload: Vec<u8> = (0..rng.random_range(0..200))
                        .map(|_| rng.random())
                        .collect();
                    let mut v = varint(payload.len() as u64);
                    v.extend(payload);
                    pb_field(&mut m, tag, 2, &v)
                }
                _ => pb_field(&mut m, tag, 5, &[1, 2, 3, 4]),
            }
            (m, "unknown field")
        }
        7 => {
            let at = if m.is_empty() {
                0
            } else {
                rng.random_range(0..m.len())
            };
            let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            m.splice(at..at, junk);
            (m, "bytes inserted")
        }
        8 => (
            (0..rng.random_range(0..512))
                .map(|_| rng.random())
                .collect(),
            "random bytes",
        ),
        _ => {
            // A length-delimited field whose length runs past the end.
            let mut v = vec![0x0a];
            v.extend(varint(rng.random_range(10..1_000_000)));
            v.extend_from_slice(b"abc");
            (v, "overlong field")
        }
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn pb_field(m: &mut Vec<u8>, tag: u32, wire: u32, payload: &[u8]) {
    m.extend(varint(u64::from(tag << 3 | wire)));
    m.extend_from_slice(payload);
}

/// The gRPC body for one message, sometimes framed wrongly.
fn frame(rng: &mut SmallRng, m: &[u8]) -> (Vec<u8>, &'static str) {
    let framed = |flag: u8, len: u32, m: &[u8]| {
        let mut v = vec![flag];
        v.extend(len.to_be_bytes());
        v.extend_from_slice(m);
        v
    };
    match rng.random_range(0..20) {
        0 => {
            let cut = framed(0, m.len() as u32 + rng.random_range(1..100), m);
            (cut, "truncated frame")
        }
        1 => (
            framed(1, m.len() as u32, m),
            "compressed flag without encoding",
        ),
        2 => (
            framed(rng.random_range(2..=255), m.len() as u32, m),
            "bad flag",
        ),
        3 => {
            let mut two = framed(0, m.len() as u32, m);
            two.extend(framed(0, m.len() as u32, m));
            (two, "two messages")
        }
        4 => (Vec::new(), "no message"),
        5 => (
            framed(0, u32::MAX, &m[..m.len().min(10)]),
            "oversized length",
        ),
        6 => (m[..m.len().min(3)].to_vec(), "partial frame header"),
        _ => (framed(0, m.len() as u32, m), "framed"),
    }
}

/// The server under test: an engine whose clock does not move (so nothing
/// expires between two snapshots) behind the real gRPC server.
pub struct Target {
    pub addr: std::net::SocketAddr,
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Target {
    pub async fn start(seed: u64) -> Target {
        let dir = tempfile::tempdir().expect("dir");
        let store = banditd::store::SledStore::open(&banditd::store::SledOptions {
            path: dir.path().join("db"),
            cache_bytes: 32 << 20,
        })
        .expect("sled");
        let engine = Arc::new(
            Engine::open(
                Arc::new(store),
                EngineOptions {
                    seed: Some(seed),
                    clock: Clock::Manual(Arc::new(AtomicU64::new(1_750_000_000_000))),
                    ..EngineOptions::default()
                },
            )
            .expect("engine"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let e = engine.clone();
        let task = tokio::spawn(async move {
            let _ = server::run(listener, e, ServerOptions::default(), async {
                let _ = rx.await;
            })
            .await;
        });
        Target {
            addr,
            engine,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Seeds campaigns for calls to meet: Thompson, LinUCB.
    pub fn seed(&self) -> Vec<String> {
        use banditd::campaign::CampaignSpec;
        let mk = |id: &str, policy: Option<pb::campaign::Policy>| {
            let wire = pb::Campaign {
                id: id.into(),
                arms: ARMS[..3]
                    .iter()
                    .map(|a| pb::Arm {
                        id: (*a).into(),
                        retired: false,
                        ..Default::default()
                    })
                    .collect(),
                policy,
                reward_timeout_seconds: 3600,
                default_reward: 0.0,
                decay_half_life_seconds: None,
                holdout_fraction: 0.0,
            };
            let spec = CampaignSpec::try_from(wire).expect("spec");
            self.engine.create_campaign(spec).expect("create");
        };
        mk("c0", None);
        mk(
            "c1",
            Some(pb::campaign::Policy::Uniform(pb::UniformSplit {})),
        );
        mk(
            "lin",
            Some(pb::campaign::Policy::Linucb(pb::LinUcb {
                alpha: 1.0,
                features: vec!["age".into(), "spend".into()],
                lambda: 1.0,
                epsilon: 0.0,
                missing: 0,
            })),
        );
        let mut ids = Vec::new();
        for c in ["c0", "c1"] {
            for s in SEGMENTS {
                let d = self
                    .engine
                    .choose(&banditd::engine::ChooseRequest {
                        campaign_id: c.into(),
                        segment: s.into(),
                        ..Default::default()
                    })
                    .expect("choose");
                ids.push(d.decision_id.to_string());
            }
        }
        ids
    }

    /// Everything a refused call must leave as it was.
    pub fn snapshot(&self) -> u64 {
        self.engine.fingerprint()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The grpc-status of a response (headers, else trailers).
async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    addr: std::net::SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> Result<Option<i32>, h2::Error> {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut ready = client.clone().ready().await?;
    let (response, mut stream) = ready.send_request(request, false)?;
    stream.send_data(Bytes::from(body), true)?;
    let response = response.await?;
    let code = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
    };
    if let Some(c) = code(response.headers()) {
        return Ok(Some(c));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(body.trailers().await?.as_ref().and_then(code))
}

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Sends `inputs` fuzzed calls to `target`; `progress` is called every 10k.
pub async fn run(target: &Target, inputs: u64, seed: u64, progress: &dyn Fn(&Report)) -> Report {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        previous(info);
    }));
    let panics_before = PANICS.load(Ordering::Relaxed);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut decisions = target.seed();
    let mut report = Report::default();
    let mut client = connect(target.addr).await;
    // The state as of the last call that was allowed to change it.
    let mut current = target.snapshot();
    for n in 0..inputs {
        let i = rng.random_range(0..PATHS.len());
        let m = message(&mut rng, i, &decisions);
        let (m, mutation) = mutate(&mut rng, m);
        let (body, framing) = frame(&mut rng, &m);
        let answer = call(&mut client, target.addr, PATHS[i], body).await;
        report.inputs += 1;
        let describe = || format!("#{n} {} ({mutation}, {framing})", PATHS[i]);
        match answer {
            Ok(Some(code)) => {
                *report.codes.entry(code).or_default() += 1;
                if (code == 2 || code == 13) && report.examples.len() < 10 {
                    report.examples.push(format!("{}: code {code}", describe()));
                }
                if code == 0 && MUTATING[i] {
                    current = target.snapshot();
                } else if code != 0 && target.snapshot() != current {
                    report.changed_by_refusal += 1;
                    if report.examples.len() < 10 {
                        report
                            .examples
                            .push(format!("{}: code {code} changed the state", describe()));
                    }
                }
                if code == 0 && i == 0 && rng.random_bool(0.2) {
                    // Learn decision ids to reward later.
                    decisions = target.engine_decisions(&decisions);
                    current = target.snapshot();
                }
            }
            Ok(None) => report.no_status += 1,
            Err(_) => {
                // The server may end a connection after a protocol error
                // (that is HTTP/2's answer, not a status): reconnect.
                report.no_status += 1;
                client = connect(target.addr).await;
            }
        }
        if (n + 1) % 10_000 == 0 {
            progress(&report);
        }
    }
    report.panics = PANICS.load(Ordering::Relaxed) - panics_before;
    report
}

impl Target {
    /// A refreshed pool of decision ids (a few recent ones).
    fn engine_decisions(&self, known: &[String]) -> Vec<String> {
        let mut ids: Vec<String> = known.iter().rev().take(30).cloned().collect();
        if let Ok(d) = self.engine.choose(&banditd::engine::ChooseRequest {
            campaign_id: "c0".into(),
            ..Default::default()
        }) {
            ids.push(d.decision_id.to_string());
        }
        ids
    }
}

async fn connect(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // Without it, Nagle's algorithm and delayed ACKs stall the many calls
    // whose request goes out in more than one write.
    let _ = tcp.set_nodelay(true);
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
