//! Overload, seen from clients: beyond the global limit of calls in flight a
//! call is `RESOURCE_EXHAUSTED` at once and changes nothing; health is never
//! shed; a client's `grpc-timeout` ends a call that waits too long and gives
//! its place back; one connection cannot queue more than its HTTP/2 stream
//! limit inside the daemon.
//!
//! The calls are held in flight by a store whose flush the test holds
//! (strict durability acknowledges only after a flush), so nothing here
//! depends on how fast the machine is.

mod common;

use banditd::api::pb;
use banditd::api::server::ServerOptions;
use banditd::engine::EngineOptions;
use banditd::error::StoreError;
use banditd::journal::{JournalOptions, Mode};
use banditd::store::{MemoryStore, Op, Store, Visit};
use common::{choose_req, thompson, TestServer};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

/// A memory store whose `flush` waits while the test holds it.
#[derive(Debug, Default)]
struct HeldStore {
    inner: MemoryStore,
    held: Mutex<bool>,
    released: Condvar,
}

impl HeldStore {
    fn hold(&self, on: bool) {
        *self.held.lock() = on;
        self.released.notify_all();
    }
}

impl Store for HeldStore {
    fn scan_range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        self.inner.scan_range(from, to, visit)
    }
    fn first_key(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.first_key(from, to)
    }
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        self.inner.apply(ops)
    }
    fn flush(&self) -> Result<(), StoreError> {
        let mut held = self.held.lock();
        while *held {
            self.released.wait(&mut held);
        }
        drop(held);
        self.inner.flush()
    }
}

async fn start(limit: usize) -> (TestServer, Arc<HeldStore>) {
    start_with(limit, ServerOptions::default().max_concurrent_streams, None).await
}

async fn start_with(
    limit: usize,
    streams: u32,
    metrics: Option<tokio::net::TcpListener>,
) -> (TestServer, Arc<HeldStore>) {
    let store = Arc::new(HeldStore::default());
    let options = EngineOptions {
        seed: Some(3),
        journal: JournalOptions {
            mode: Mode::Strict,
            ..JournalOptions::default()
        },
        ..EngineOptions::default()
    };
    let serving = ServerOptions {
        expiry_interval: Duration::from_millis(50),
        max_in_flight: limit,
        max_concurrent_streams: streams,
        metrics,
        ..ServerOptions::default()
    };
    let server = TestServer::start_serving(
        store.clone(),
        options,
        serving,
        tempfile::tempdir().expect("dir"),
    )
    .await;
    (server, store)
}

async fn pulls(server: &TestServer) -> u64 {
    let mut admin = server.campaigns().await;
    common::stats(&mut admin, "c", "")
        .await
        .segments
        .iter()
        .filter(|s| s.segment.is_empty())
        .flat_map(|s| s.arms.iter())
        .map(|a| a.pulls)
        .sum()
}

// Two places; ten Chooses at once while the store is held: two wait, eight
// are refused at once with RESOURCE_EXHAUSTED, health still answers, and
// only the two admitted calls changed anything.
#[tokio::test]
async fn calls_beyond_the_limit_are_shed_at_once_and_change_nothing() {
    let (server, store) = start(2).await;
    let mut admin = server.campaigns().await;
    common::create(&mut admin, thompson("c", &["a", "b"], 3600)).await;
    assert_eq!(pulls(&server).await, 0);

    store.hold(true);
    let mut calls = Vec::new();
    for _ in 0..2 {
        let mut bandit = server.bandit().await;
        calls.push(tokio::spawn(async move {
            bandit.choose(choose_req("c", "")).await
        }));
    }
    // Both admitted calls are in flight (waiting for the held flush) once
    // the engine counts their decisions.
    let started = Instant::now();
    loop {
        let mut admin = server.campaigns().await;
        let listed = admin.list_campaigns(pb::ListCampaignsRequest {}).await;
        // ListCampaigns is a call too: with both places taken it is shed.
        if matches!(&listed, Err(s) if s.code() == Code::ResourceExhausted) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "calls never got in flight"
        );
        tokio::task::yield_now().await;
    }
    let shed_started = Instant::now();
    for _ in 0..8 {
        let mut bandit = server.bandit().await;
        let err = bandit
            .choose(choose_req("c", ""))
            .await
            .expect_err("beyond the limit");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    }
    // Shedding does not wait (eight refusals well under the held call).
    assert!(shed_started.elapsed() < Duration::from_secs(5));
    // Health is never shed.
    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers under overload");

    store.hold(false);
    for c in calls {
        c.await.expect("task").expect("admitted call succeeds");
    }
    assert_eq!(
        pulls(&server).await,
        2,
        "only the admitted calls changed the state"
    );
    server.stop().await;
}

// A client's grpc-timeout ends a call that waits longer (here for a held
// flush) and gives its place back: with the flush still held and the limit
// at one, another call is admitted; the metrics count the call as
// DEADLINE_EXCEEDED.
//
// The store stays held until the daemon has ended the call itself: the
// client gives up at the same deadline, and a flush released at that moment
// would let the daemon finish the call (OK, counted as answered) before it
// noticed either its timer or the client's reset (CI failed on that race).
#[tokio::test]
async fn the_clients_grpc_timeout_ends_the_call_and_frees_its_place() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    let metrics_addr = listener.local_addr().expect("addr").to_string();
    let (server, store) = start_with(
        1,
        banditd::api::server::DEFAULT_MAX_CONCURRENT_STREAMS,
        Some(listener),
    )
    .await;
    let mut admin = server.campaigns().await;
    common::create(&mut admin, thompson("c", &["a", "b"], 3600)).await;

    store.hold(true);
    let mut bandit = server.bandit().await;
    let mut req = tonic::Request::new(choose_req("c", ""));
    req.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = bandit.choose(req).await.expect_err("deadline passes");
    let took = started.elapsed();
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "ended before its deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the deadline was not honoured: {took:?}"
    );

    // The daemon ends the call at the deadline on its own, the flush still
    // held: the call is counted and its place is free.
    let choose_count = |code: &'static str| {
        let addr = metrics_addr.clone();
        async move {
            let scraped =
                tokio::task::spawn_blocking(move || common::scrape::http_get(&addr, "/metrics"))
                    .await
                    .expect("scrape");
            let series = format!(r#"banditd_grpc_requests_total{{rpc="Choose",code="{code}"}}"#);
            common::scrape::parse_metrics(&scraped.1)
                .into_iter()
                .find(|(s, _)| *s == series)
                .map_or(0.0, |(_, v)| v)
        }
    };
    let waiting = Instant::now();
    while choose_count("DEADLINE_EXCEEDED").await < 1.0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the daemon never ended the timed-out call (OK: {})",
            choose_count("OK").await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    admin
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("the place was given back while the flush is still held");

    store.hold(false);
    bandit
        .choose(choose_req("c", ""))
        .await
        .expect("a Choose runs once the flush is released");
    assert_eq!(
        choose_count("DEADLINE_EXCEEDED").await,
        1.0,
        "the timed-out call"
    );
    assert_eq!(choose_count("CANCELLED").await, 0.0);
    assert_eq!(choose_count("OK").await, 1.0);
    server.stop().await;
}

// One connection may have `--max-concurrent-streams` calls open at once: the
// daemon says so in its HTTP/2 settings, and a client with more calls to
// make holds them on its side (so a flood from one connection queues there,
// not in the daemon). With two streams and three held Chooses on one
// connection, two are decided and the third waits at the client, not
// refused, until a place is free.
#[tokio::test]
async fn one_connection_queues_at_most_its_stream_limit_inside_the_daemon() {
    let (server, store) = start_with(100, 2, None).await;
    let mut admin = server.campaigns().await;
    common::create(&mut admin, thompson("c", &["a", "b"], 3600)).await;

    // The limit is in the settings the daemon sends.
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (h2_client, conn) = h2::client::handshake(tcp).await.expect("handshake");
    let conn = tokio::spawn(conn);
    let started = Instant::now();
    while h2_client.current_max_send_streams() != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no stream limit in the settings: {}",
            h2_client.current_max_send_streams()
        );
        tokio::task::yield_now().await;
    }
    drop(h2_client);
    conn.abort();

    let one_connection = server.channel().await;
    // A client learns the limit from the daemon's first settings frame;
    // streams it opens beyond the limit before then are refused
    // (REFUSED_STREAM: not processed). One call first, as any client's.
    pb::campaigns_client::CampaignsClient::new(one_connection.clone())
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("list");
    store.hold(true);
    let mut calls = Vec::new();
    for _ in 0..3 {
        let mut bandit = pb::bandit_client::BanditClient::new(one_connection.clone());
        calls.push(tokio::spawn(async move {
            bandit.choose(choose_req("c", "")).await
        }));
    }
    let started = Instant::now();
    while pulls(&server).await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "calls never got in flight"
        );
        tokio::task::yield_now().await;
    }
    // Give the third call every chance to reach the daemon: it must not.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(pulls(&server).await, 2, "a third stream was let in");
    }
    store.hold(false);
    for c in calls {
        c.await
            .expect("task")
            .expect("every call is answered in turn");
    }
    assert_eq!(pulls(&server).await, 3);
    server.stop().await;
}
