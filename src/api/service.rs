//! The two v1 services: thin wrappers that convert, call the engine, convert.

use super::convert::{arms_from_wire, timestamp_ms};
use super::pb::{self, bandit_server::Bandit, campaigns_server::Campaigns};
use super::status;
use crate::campaign::CampaignSpec;
use crate::engine::{ChooseRequest, Engine, RewardOutcome};
use crate::error::Error;
use crate::replica::{Replica, FORWARDED_HEADER};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// `banditd.v1.Bandit`.
#[derive(Debug, Clone)]
pub struct BanditService {
    pub engine: Arc<Engine>,
    /// Set when this daemon is one of several replicas.
    pub replica: Option<Arc<Replica>>,
}

#[tonic::async_trait]
impl Bandit for BanditService {
    async fn choose(
        &self,
        req: Request<pb::ChooseRequest>,
    ) -> Result<Response<pb::ChooseResponse>, Status> {
        let req = ChooseRequest::from(req.into_inner());
        let choice = self.engine.choose(&req)?;
        self.engine.wait_durable().await?;
        let decision_id = match &self.replica {
            // A server-generated id names the replica that made it.
            Some(r) if req.decision_id.is_none() => r.public_id(&choice.decision_id),
            _ => choice.decision_id.to_string(),
        };
        Ok(Response::new(pb::ChooseResponse {
            decision_id,
            arm_id: choice.arm_id,
            propensity: choice.propensity,
            holdout: choice.holdout,
            slate: choice
                .slate
                .into_iter()
                .map(|s| pb::RankedArm {
                    arm_id: s.arm_id,
                    propensity: s.propensity,
                })
                .collect(),
        }))
    }

    async fn reward(
        &self,
        req: Request<pb::RewardRequest>,
    ) -> Result<Response<pb::RewardResponse>, Status> {
        let outcome = match &self.replica {
            Some(replica) => {
                let forwarded = req.metadata().contains_key(FORWARDED_HEADER);
                let token = req.metadata().get("authorization").cloned();
                let req = req.into_inner();
                let slot = req.slot as usize;
                replica
                    .reward(&req.decision_id, slot, req.value, forwarded, token.as_ref())
                    .await?
            }
            None => {
                let req = req.into_inner();
                self.engine
                    .reward_slot(&req.decision_id, req.slot as usize, req.value)?
            }
        };
        self.engine.wait_durable().await?;
        Ok(Response::new(pb::RewardResponse {
            duplicate: outcome == RewardOutcome::Duplicate,
        }))
    }
}

/// `banditd.v1.Campaigns`.
#[derive(Debug, Clone)]
pub struct CampaignService {
    pub engine: Arc<Engine>,
    /// Set when this daemon is one of several replicas: campaign changes
    /// then go through Redis to all of them.
    pub replica: Option<Arc<Replica>>,
}

#[tonic::async_trait]
impl Campaigns for CampaignService {
    async fn create_campaign(
        &self,
        req: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let campaign = req
            .into_inner()
            .campaign
            .ok_or_else(|| Error::InvalidArgument("campaign must be set".into()))?;
        let spec = CampaignSpec::try_from(campaign)?;
        let created = match &self.replica {
            Some(r) => r.create_campaign(spec).await?,
            None => self.engine.create_campaign(spec)?,
        };
        self.engine.wait_durable().await?;
        Ok(Response::new(created.into()))
    }

    async fn get_campaign(
        &self,
        req: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let id = req.into_inner().campaign_id;
        require_id(&id)?;
        Ok(Response::new(self.engine.get_campaign(&id)?.into()))
    }

    async fn list_campaigns(
        &self,
        _req: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        Ok(Response::new(pb::ListCampaignsResponse {
            campaigns: self
                .engine
                .list_campaigns()
                .into_iter()
                .map(Into::into)
                .collect(),
        }))
    }

    async fn delete_campaign(
        &self,
        req: Request<pb::DeleteCampaignRequest>,
    ) -> Result<Response<pb::DeleteCampaignResponse>, Status> {
        let id = req.into_inner().campaign_id;
        require_id(&id)?;
        match &self.replica {
            Some(r) => r.delete_campaign(&id).await?,
            None => self.engine.delete_campaign(&id)?,
        }
        self.engine.wait_durable().await?;
        Ok(Response::new(pb::DeleteCampaignResponse {}))
    }

    async fn add_arms(
        &self,
        req: Request<pb::AddArmsRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let req = req.into_inner();
        require_id(&req.campaign_id)?;
        let arms = arms_from_wire(req.arms)?;
        let spec = match &self.replica {
            Some(r) => r.add_arms(&req.campaign_id, arms).await?,
            None => self.engine.add_arms(&req.campaign_id, arms)?,
        };
        self.engine.wait_durable().await?;
        Ok(Response::new(spec.into()))
    }

    async fn retire_arm(
        &self,
        req: Request<pb::RetireArmRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let req = req.into_inner();
        require_id(&req.campaign_id)?;
        let spec = match &self.replica {
            Some(r) => r.retire_arm(&req.campaign_id, &req.arm_id).await?,
            None => self.engine.retire_arm(&req.campaign_id, &req.arm_id)?,
        };
        self.engine.wait_durable().await?;
        Ok(Response::new(spec.into()))
    }

    async fn get_stats(
        &self,
        req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let req = req.into_inner();
        require_id(&req.campaign_id)?;
        let engine = self.engine.clone();
        let id = req.campaign_id.clone();
        // Probability-best is Monte Carlo work: keep it off the async workers.
        let segments = tokio::task::spawn_blocking(move || engine.stats(&id, &req.segment))
            .await
            .map_err(|_| status::fault("the stats computation panicked"))??;
        Ok(Response::new(pb::GetStatsResponse {
            campaign_id: req.campaign_id,
            segments: segments.into_iter().map(Into::into).collect(),
        }))
    }

    type ExportDecisionsStream = ReceiverStream<Result<pb::ExportDecisionsResponse, Status>>;

    async fn export_decisions(
        &self,
        req: Request<pb::ExportDecisionsRequest>,
    ) -> Result<Response<Self::ExportDecisionsStream>, Status> {
        let req = req.into_inner();
        require_id(&req.campaign_id)?;
        let since = match &req.since {
            Some(t) => timestamp_ms(t, "since")?,
            None => 0,
        };
        let until = req
            .until
            .as_ref()
            .map(|t| timestamp_ms(t, "until"))
            .transpose()?;
        if until.is_some_and(|u| u < since) {
            return Err(Error::InvalidArgument("until is before since".into()).into());
        }
        // An unknown campaign is the call's status, not a stream item.
        let spec = self.engine.get_campaign(&req.campaign_id)?;
        let slot = ExportSlot::take()?;
        let engine = self.engine.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let message =
                |h: &crate::engine::ExportHeader, decisions| pb::ExportDecisionsResponse {
                    campaign_id: h.campaign_id.clone(),
                    arm_ids: h.arms.clone(),
                    features: h.features.clone(),
                    decisions,
                };
            let mut batch = Vec::with_capacity(EXPORT_BATCH);
            let mut last_header = None;
            let mut sent = false;
            let result = engine.export_decisions(
                &req.campaign_id,
                since,
                until,
                req.include_pending,
                &mut |h, r| {
                    batch.push(pb::LoggedDecision::from(&r));
                    if batch.len() < EXPORT_BATCH {
                        // Arms only grow: a longer list is a newer header.
                        if last_header
                            .as_ref()
                            .is_none_or(|l: &crate::engine::ExportHeader| {
                                l.arms.len() != h.arms.len()
                            })
                        {
                            last_header = Some(h.clone());
                        }
                        return true;
                    }
                    sent = true;
                    let decisions = std::mem::replace(&mut batch, Vec::with_capacity(EXPORT_BATCH));
                    // A closed stream (the client went away) ends the export.
                    tx.blocking_send(Ok(message(h, decisions))).is_ok()
                },
            );
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
            if !batch.is_empty() || !sent {
                let header = last_header.unwrap_or_else(|| crate::engine::ExportHeader {
                    campaign_id: spec.id.clone(),
                    arms: spec.arms.iter().map(|a| a.id.clone()).collect(),
                    features: spec.policy.features().to_vec(),
                });
                let _ = tx.blocking_send(Ok(message(&header, batch)));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Decisions per `ExportDecisions` message.
const EXPORT_BATCH: usize = 512;

/// Exports running at once (each holds a blocking thread and up to one
/// reward timeout of outcomes in memory); beyond, `RESOURCE_EXHAUSTED`.
const MAX_EXPORTS: usize = 4;
static EXPORTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of the [`MAX_EXPORTS`] places, given back when dropped.
struct ExportSlot;

impl ExportSlot {
    fn take() -> Result<Self, Error> {
        use std::sync::atomic::Ordering;
        if EXPORTS.fetch_add(1, Ordering::AcqRel) >= MAX_EXPORTS {
            EXPORTS.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::ResourceExhausted(format!(
                "{MAX_EXPORTS} exports are running; try again when one has finished"
            )));
        }
        Ok(ExportSlot)
    }
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        EXPORTS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn require_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        Err(Error::InvalidArgument(
            "campaign_id must not be empty".into(),
        ))
    } else {
        Ok(())
    }
}
