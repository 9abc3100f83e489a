//! The gRPC server: the two v1 services, health, reflection (v1 and
//! v1alpha), the background expiry sweep, and the health watch on the store.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests bind
//! `127.0.0.1:0` and stop the server when they like. Shutdown order, fixed:
//! 1. health `NOT_SERVING`, stop accepting connections and let in-flight
//!    calls finish (tonic's `serve_with_incoming_shutdown` drains them);
//! 2. stop the expiry sweep;
//! 3. drain the journal's queue, flush the store (sled flush + fdatasync)
//!    and stop its writer.
//!
//! When the store fails (a write or a sync error, see `journal`), health
//! turns `NOT_SERVING` for good: the daemon still answers reads, and every
//! change is refused with `UNAVAILABLE`.

use super::pb::{self, bandit_server::BanditServer, campaigns_server::CampaignsServer};
use super::service::{BanditService, CampaignService};
use crate::campaign::limits;
use crate::engine::Engine;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// How often pending decisions are checked for their deadline.
pub const DEFAULT_EXPIRY_INTERVAL: Duration = Duration::from_millis(200);

/// Serves `engine` on `listener` until `shutdown` resolves, then drains,
/// stops the expiry sweep and flushes the store.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    expiry_interval: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = tokio::spawn(expiry_sweep(engine.clone(), expiry_interval, stop_rx));

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
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES);
    let campaigns = CampaignsServer::new(CampaignService {
        engine: engine.clone(),
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES);

    let watcher = tokio::spawn(not_serving_on_store_failure(
        engine.clone(),
        health_reporter.clone(),
    ));

    tracing::info!(addr = ?listener.local_addr().ok(), "serving");
    let served = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted,
        ))
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
            },
        )
        .await;
    tracing::info!("connections drained; stopping background tasks");
    watcher.abort();
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
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

/// tonic rejects a message above the decoding limit with `OUT_OF_RANGE`; the
/// v1 contract promises `RESOURCE_EXHAUSTED` for exceeded limits. banditd
/// itself never returns `OUT_OF_RANGE`, so every such status is this case.
fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    const RESOURCE_EXHAUSTED: http::HeaderValue = http::HeaderValue::from_static("8");
    if response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v == OUT_OF_RANGE)
    {
        response
            .headers_mut()
            .insert("grpc-status", RESOURCE_EXHAUSTED);
    }
    response
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
