//! The gRPC server: the two v1 services, health, reflection (v1 and
//! v1alpha), the gate in front of them (tokens, load shedding, the status
//! remap, metrics; see `gate`), TLS, the metrics listener, the background
//! expiry sweep, and the health watch on the store.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests bind
//! `127.0.0.1:0` and stop the server when they like. Shutdown order, fixed:
//! 1. health `NOT_SERVING`, stop accepting connections and let in-flight
//!    calls finish (tonic's `serve_with_incoming_shutdown` drains them), for
//!    at most [`ServerOptions::shutdown_timeout`]; calls still running then
//!    are cancelled (their futures dropped, their connections closed);
//! 2. stop the expiry sweep and the metrics listener;
//! 3. drain the journal's queue, flush the store (sled flush + fdatasync)
//!    and stop its writer — whether the drain finished or timed out.
//!
//! When the store fails (a write or a sync error, see `journal`), health
//! turns `NOT_SERVING` for good: the daemon still answers reads, and every
//! change is refused with `UNAVAILABLE`.

use super::gate::{GateLayer, Rules};
use super::metrics::Metrics;
use super::pb::{self, bandit_server::BanditServer, campaigns_server::CampaignsServer};
use super::service::{BanditService, CampaignService};
use crate::access::Tokens;
use crate::campaign::limits;
use crate::engine::Engine;
use crate::replica::Replica;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// How often pending decisions are checked for their deadline.
pub const DEFAULT_EXPIRY_INTERVAL: Duration = Duration::from_millis(200);

/// Calls in flight at most, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

/// HTTP/2 streams a connection may have open at once, by default (Go's
/// HTTP/2 server allows 250, hyper's 200): with it, what a client can queue
/// inside the daemon is bounded, and a client beyond it waits on its side
/// of the connection, under its own deadline.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;

/// How long a shutdown waits for calls in flight, by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything about serving that is not the engine.
#[derive(Debug)]
pub struct ServerOptions {
    pub expiry_interval: Duration,
    /// Calls in flight at most (health not counted); beyond, shed.
    pub max_in_flight: usize,
    /// HTTP/2 streams open at once per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    pub shutdown_timeout: Duration,
    /// `None`: every caller may do everything.
    pub tokens: Option<Tokens>,
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Where Prometheus scrapes `/metrics` (off when `None`).
    pub metrics: Option<TcpListener>,
    /// Set when this daemon is one of several replicas (`--redis-url`).
    pub replica: Option<Arc<Replica>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            expiry_interval: DEFAULT_EXPIRY_INTERVAL,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            tokens: None,
            tls: None,
            metrics: None,
            replica: None,
        }
    }
}

/// Serves `engine` on `listener` until `shutdown` resolves, then drains,
/// stops the background tasks and flushes the store.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = tokio::spawn(expiry_sweep(
        engine.clone(),
        options.expiry_interval,
        stop_rx.clone(),
    ));

    let vector_maker = tokio::spawn(make_vectors(engine.clone(), stop_rx.clone()));

    let syncer = options.replica.clone().map(|r| {
        tracing::info!(replica = r.id(), "replicating through redis");
        tokio::spawn(r.run(stop_rx.clone()))
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<BanditServer<BanditService>>()
        .await;
    health_reporter
        .set_serving::<CampaignsServer<CampaignService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let bandit = BanditServer::new(BanditService {
        engine: engine.clone(),
        replica: options.replica.clone(),
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES);
    let campaigns = CampaignsServer::new(CampaignService {
        engine: engine.clone(),
        replica: options.replica.clone(),
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES);

    let watcher = tokio::spawn(not_serving_on_store_failure(
        engine.clone(),
        health_reporter.clone(),
    ));

    let metrics = options.metrics.map(|listener| {
        let metrics = Metrics::new(engine.clone(), options.replica.clone());
        tracing::info!(addr = ?listener.local_addr().ok(), "serving metrics at /metrics");
        let mut stop = stop_rx.clone();
        let task = tokio::spawn(super::metrics::serve(
            listener,
            metrics.clone(),
            async move {
                let _ = stop.changed().await;
            },
        ));
        (metrics, task)
    });
    let gate = GateLayer::new(Rules {
        tokens: options.tokens,
        max_in_flight: options.max_in_flight,
        metrics: metrics.as_ref().map(|(m, _)| m.clone()),
    });

    let mut builder =
        tonic::transport::Server::builder().max_concurrent_streams(options.max_concurrent_streams);
    if let Some(tls) = options.tls {
        builder = builder.tls_config(tls)?;
    }
    tracing::info!(addr = ?listener.local_addr().ok(), "serving");
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let served = builder
        .layer(gate)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(bandit)
        .add_service(campaigns)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                shutdown.await;
                set_health(&health_reporter, ServingStatus::NotServing).await;
                let _ = draining_tx.send(());
            },
        );
    let timeout = options.shutdown_timeout;
    let served = async move {
        tokio::pin!(served);
        tokio::select! {
            r = &mut served => r,
            () = async {
                if draining_rx.await.is_ok() {
                    tokio::time::sleep(timeout).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "calls still in flight at the shutdown timeout are cancelled"
                );
                Ok(())
            }
        }
    }
    .await;
    tracing::info!("connections drained; stopping background tasks");
    watcher.abort();
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    let _ = vector_maker.await;
    if let Some(task) = syncer {
        // Ships what is left (bounded); what it cannot goes at the next start.
        let _ = task.await;
    }
    if let Some((_, task)) = metrics {
        let _ = task.await;
    }
    let engine2 = engine.clone();
    let flushed = tokio::task::spawn_blocking(move || engine2.shutdown())
        .await
        .map_err(|e| format!("journal shutdown panicked: {e}"))?;
    match &flushed {
        Ok(()) => tracing::info!("journal drained and store flushed"),
        Err(e) => tracing::error!(error = %e, "the store could not be flushed at shutdown"),
    }
    served?;
    flushed?;
    Ok(())
}

/// Every service's health.
async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    for service in [
        "",
        <BanditServer<BanditService> as tonic::server::NamedService>::NAME,
        <CampaignsServer<CampaignService> as tonic::server::NamedService>::NAME,
    ] {
        reporter.set_service_status(service, status).await;
    }
}

/// Turns health `NOT_SERVING` once the store has failed.
async fn not_serving_on_store_failure(engine: Arc<Engine>, reporter: HealthReporter) {
    engine.store_failed().await;
    tracing::error!(
        why = engine.store_failure().unwrap_or_default(),
        "the store failed: health is NOT_SERVING and every change is refused until a restart"
    );
    set_health(&reporter, ServingStatus::NotServing).await;
}

/// Makes the Thompson vectors decisions asked for (deferred mode: no
/// decision computes one), whenever some are wanted, until told to stop.
async fn make_vectors(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = engine.vectors_wanted() => {}
            _ = stop.changed() => return,
        }
        let engine = engine.clone();
        match tokio::task::spawn_blocking(move || engine.make_wanted_vectors()).await {
            Ok(n) => tracing::trace!(made = n, "thompson vectors made"),
            Err(e) => tracing::error!(error = %e, "making thompson vectors panicked"),
        }
    }
}

/// Expires overdue decisions every `interval` until told to stop.
async fn expiry_sweep(engine: Arc<Engine>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let engine = engine.clone();
        match tokio::task::spawn_blocking(move || engine.expire_due()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(expired = n, "default rewards learned"),
            Ok(Err(e)) => tracing::warn!(error = %e, "expiry sweep failed; will retry"),
            Err(e) => tracing::error!(error = %e, "expiry sweep panicked"),
        }
    }
}
