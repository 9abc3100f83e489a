//! The RPC ceiling: a bare tonic server for `banditd.v1.Bandit` whose
//! handlers answer at once with a fixed reply (no engine, no journal), with
//! the daemon's own transport settings (TCP_NODELAY, the same message
//! limit). `grpc_bench` measures banditd against it, on the same core, in
//! the same run.
//!
//! ```sh
//! target/release/examples/echo 127.0.0.1:0     # prints "listening on ADDR"
//! ```

use banditd::api::pb::{self, bandit_server::Bandit, bandit_server::BanditServer};
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
struct Echo;

#[tonic::async_trait]
impl Bandit for Echo {
    async fn choose(
        &self,
        req: Request<pb::ChooseRequest>,
    ) -> Result<Response<pb::ChooseResponse>, Status> {
        let req = req.into_inner();
        let arm_id: String = if req.campaign_id.is_empty() {
            "a"
        } else {
            "offer-1"
        }
        .into();
        // The same shape as the daemon's answer: the slate of one slot.
        Ok(Response::new(pb::ChooseResponse {
            decision_id: "1-1-000000000001".into(),
            arm_id: arm_id.clone(),
            propensity: 0.1,
            holdout: false,
            slate: vec![pb::RankedArm {
                arm_id,
                propensity: 0.1,
            }],
        }))
    }

    async fn reward(
        &self,
        _req: Request<pb::RewardRequest>,
    ) -> Result<Response<pb::RewardResponse>, Status> {
        Ok(Response::new(pb::RewardResponse { duplicate: false }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(
            BanditServer::new(Echo)
                .max_decoding_message_size(banditd::campaign::limits::MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}
