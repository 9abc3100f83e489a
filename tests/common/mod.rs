//! Shared test harness: a real banditd server on 127.0.0.1:0 over a
//! temporary sled directory, and tonic clients for it.
#![allow(dead_code)]

pub mod scrape;

use banditd::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use banditd::api::server;
use banditd::engine::{Engine, EngineOptions};
use banditd::store::{SledOptions, SledStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with a seeded engine over a fresh data directory.
    pub async fn start(seed: u64) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, seed).await
    }

    /// Starts a server over an existing data directory (a restart).
    pub async fn start_in(dir: tempfile::TempDir, seed: u64) -> TestServer {
        let store = SledStore::open(&SledOptions {
            path: dir.path().join("db"),
            cache_bytes: 16 << 20,
        })
        .expect("open sled");
        let options = EngineOptions {
            seed: Some(seed),
            ..EngineOptions::default()
        };
        Self::start_with(Arc::new(store), options, dir).await
    }

    /// Starts a server over any store with the given engine options.
    pub async fn start_with(
        store: Arc<dyn Store>,
        options: EngineOptions,
        dir: tempfile::TempDir,
    ) -> TestServer {
        let serving = server::ServerOptions {
            expiry_interval: Duration::from_millis(50),
            ..server::ServerOptions::default()
        };
        Self::start_serving(store, options, serving, dir).await
    }

    /// Starts a server with engine and server options of the test's own.
    pub async fn start_serving(
        store: Arc<dyn Store>,
        options: EngineOptions,
        serving: server::ServerOptions,
        dir: tempfile::TempDir,
    ) -> TestServer {
        let engine = Engine::open(store, options).expect("engine");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = server::run(listener, Arc::new(engine), serving, async {
                let _ = rx.await;
            })
            .await;
        });
        TestServer {
            addr,
            stop: Some(tx),
            handle: Some(handle),
            dir,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn bandit(&self) -> BanditClient<Channel> {
        BanditClient::new(self.channel().await)
    }

    pub async fn campaigns(&self) -> CampaignsClient<Channel> {
        CampaignsClient::new(self.channel().await)
    }

    /// Graceful shutdown; returns the data directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
        // Give sled's background threads a moment to release the directory lock.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

/// A Thompson campaign with the given arms.
pub fn thompson(id: &str, arms: &[&str], timeout_s: u32) -> pb::Campaign {
    pb::Campaign {
        id: id.to_string(),
        arms: arms
            .iter()
            .map(|a| pb::Arm {
                id: a.to_string(),
                retired: false,
                ..Default::default()
            })
            .collect(),
        policy: Some(pb::campaign::Policy::Thompson(
            pb::ThompsonSampling::default(),
        )),
        reward_timeout_seconds: timeout_s,
        default_reward: 0.0,
        decay_half_life_seconds: None,
        holdout_fraction: 0.0,
    }
}

pub fn choose_req(campaign: &str, segment: &str) -> pb::ChooseRequest {
    pb::ChooseRequest {
        campaign_id: campaign.to_string(),
        segment: segment.to_string(),
        ..Default::default()
    }
}

pub async fn create(c: &mut CampaignsClient<Channel>, campaign: pb::Campaign) -> pb::Campaign {
    c.create_campaign(pb::CreateCampaignRequest {
        campaign: Some(campaign),
    })
    .await
    .expect("create")
    .into_inner()
}

pub async fn stats(
    c: &mut CampaignsClient<Channel>,
    id: &str,
    segment: &str,
) -> pb::GetStatsResponse {
    c.get_stats(pb::GetStatsRequest {
        campaign_id: id.to_string(),
        segment: segment.to_string(),
    })
    .await
    .expect("stats")
    .into_inner()
}

/// The campaign-wide row of a stats response, by arm id.
pub fn arm<'a>(s: &'a pb::GetStatsResponse, segment: &str, arm_id: &str) -> &'a pb::ArmStats {
    s.segments
        .iter()
        .find(|g| g.segment == segment)
        .and_then(|g| g.arms.iter().find(|a| a.arm_id == arm_id))
        .expect("arm in stats")
}
