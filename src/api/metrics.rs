//! Prometheus metrics, served on their own HTTP listener
//! (`--metrics-listen`) in the Prometheus text format (0.0.4).
//!
//! Two kinds: what the gate observes per call (requests by rpc and status
//! code, latency by rpc), and what is read from the engine and the process
//! at each scrape (decisions pending / rewarded / expired and segments per
//! campaign, the write queue, the durable lag, the store's size, RSS).
//! Nothing here decides anything; a scrape only reads.

use super::gate::Rpc;
use crate::engine::Engine;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

type CallLabels = [(&'static str, &'static str); 2];
type RpcLabel = [(&'static str, &'static str); 1];
/// A per-campaign metric: name, help, type, and how to read it.
type PerCampaign = (
    &'static str,
    &'static str,
    MetricType,
    fn(&crate::engine::CampaignGauges) -> u64,
);

/// The daemon's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<CallLabels, Counter>,
    latency: Family<RpcLabel, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~3.3 s, doubling.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Metrics {
    pub fn new(engine: Arc<Engine>, replica: Option<Arc<crate::replica::Replica>>) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("banditd");
        let requests = Family::<CallLabels, Counter>::default();
        let latency = Family::<RpcLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "grpc_requests",
            "gRPC calls answered, by rpc and status code",
            requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Time from a call's arrival to its response headers, by rpc",
            latency.clone(),
        );
        registry.register_collector(Box::new(EngineCollector { engine, replica }));
        Arc::new(Metrics {
            registry,
            requests,
            latency,
        })
    }

    /// Records one answered call.
    pub fn observe(&self, rpc: Rpc, code: tonic::Code, elapsed: Duration) {
        self.requests
            .get_or_create(&[("rpc", rpc.name()), ("code", code_name(code))])
            .inc();
        self.latency
            .get_or_create(&[("rpc", rpc.name())])
            .observe(elapsed.as_secs_f64());
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// gRPC code names as in the gRPC specification (bounded label values).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Reads the engine and the process at each scrape.
#[derive(Debug)]
struct EngineCollector {
    engine: Arc<Engine>,
    replica: Option<Arc<crate::replica::Replica>>,
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let campaigns = self.engine.campaign_gauges();
        let per_campaign: [PerCampaign; 4] = [
            (
                "decisions_pending",
                "Decisions waiting for their reward, by campaign",
                MetricType::Gauge,
                |c| c.pending as u64,
            ),
            (
                "decisions_rewarded",
                "Decisions rewarded since the daemon started, by campaign",
                MetricType::Counter,
                |c| c.rewarded,
            ),
            (
                "decisions_expired",
                "Decisions that reached their reward timeout (default reward) since the daemon started, by campaign",
                MetricType::Counter,
                |c| c.expired,
            ),
            (
                "segments",
                "Named segments, by campaign",
                MetricType::Gauge,
                |c| c.segments as u64,
            ),
        ];
        for (name, help, kind, value) in per_campaign {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for c in &campaigns {
                let labels = [("campaign", &*c.id)];
                let metric = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(c)).encode(metric)?,
                    _ => ConstGauge::new(value(c) as i64).encode(metric)?,
                }
            }
        }
        gauge(
            &mut encoder,
            "campaigns",
            "Campaigns",
            campaigns.len() as i64,
        )?;
        if let Some(r) = &self.replica {
            let st = r.status();
            gauge(
                &mut encoder,
                "replica_redis_up",
                "1 when the last call to Redis succeeded",
                i64::from(st.redis_up),
            )?;
            gauge(
                &mut encoder,
                "replica_staleness_milliseconds",
                "Time since the other replicas' statistics were last pulled (-1: never)",
                st.staleness_ms.map_or(-1, |m| m as i64),
            )?;
            gauge(
                &mut encoder,
                "replica_backlog_fields",
                "Statistics whose own value Redis has not acknowledged yet",
                st.backlog_fields as i64,
            )?;
            for (name, help, v) in [
                (
                    "replica_batches_shipped",
                    "Batches of deltas Redis applied",
                    st.batches_shipped,
                ),
                ("replica_pulls", "Merged totals pulled from Redis", st.pulls),
                (
                    "replica_rewards_forwarded",
                    "Rewards forwarded to the replica that made their decision",
                    st.rewards_forwarded,
                ),
            ] {
                let c = ConstCounter::new(v);
                c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
            }
        }
        let (queued, lag) = self.engine.write_backlog();
        gauge(
            &mut encoder,
            "write_queue_depth",
            "Changes queued for the store's writer",
            queued as i64,
        )?;
        gauge(
            &mut encoder,
            "durable_lag_changes",
            "Changes applied in memory (and acknowledged in default durability) that are not yet fdatasync'd",
            lag as i64,
        )?;
        if let Some(bytes) = self.engine.store_size_bytes() {
            gauge(
                &mut encoder,
                "store_disk_bytes",
                "Bytes the sled store takes on disk",
                bytes as i64,
            )?;
        }
        gauge(
            &mut encoder,
            "store_failed",
            "1 once the store has failed (every change refused until a restart)",
            i64::from(self.engine.store_failure().is_some()),
        )?;
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident set size of the daemon",
                rss as i64,
            )?;
        }
        Ok(())
    }
}

/// The process's resident set size, from `/proc/self/statm` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Serves `GET /metrics` on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let response = match (req.method(), req.uri().path()) {
                            (&http::Method::GET, "/metrics") => http::Response::builder()
                                .header(
                                    http::header::CONTENT_TYPE,
                                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                                )
                                .body(Full::new(Bytes::from(metrics.render()))),
                            (_, "/metrics") => http::Response::builder()
                                .status(http::StatusCode::METHOD_NOT_ALLOWED)
                                .body(Full::new(Bytes::from_static(b"use GET\n"))),
                            _ => http::Response::builder()
                                .status(http::StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"metrics are at /metrics\n"))),
                        };
                        response
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}
