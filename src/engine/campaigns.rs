//! Campaign lifecycle: create, read, list, delete, add and retire arms.
//!
//! None of these touches the store: each appends its change to the journal
//! under the campaign's lock (create and delete under the campaign map's
//! write lock, which guards nothing slow). A deleted campaign is marked
//! dead under its own lock, so work that still holds it (a Choose, a
//! Reward, the expiry sweep) changes nothing after the deletion and no
//! later write can bring it back.

use super::state::{CampaignCell, CampaignState};
use super::{fnv1a, Engine};
use crate::campaign::{limits, validate_id, ArmSpec, CampaignSpec};
use crate::error::{Error, Result};
use crate::journal::Change;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Engine {
    pub(super) fn new_cell(&self, spec: CampaignSpec, uid: u64) -> Arc<CampaignCell> {
        let rng = SmallRng::seed_from_u64(self.seed ^ fnv1a(&spec.id));
        let id = spec.id.as_str().into();
        let mut state = CampaignState::new(spec, rng, self.clock.now_ms());
        state.mode = self.vector_mode;
        Arc::new(CampaignCell {
            id,
            uid,
            state: parking_lot::Mutex::new(state),
        })
    }

    /// Creates a campaign; `ALREADY_EXISTS` if the id is taken.
    pub fn create_campaign(&self, spec: CampaignSpec) -> Result<CampaignSpec> {
        spec.validate()?;
        self.admit(1)?;
        let mut campaigns = self.campaigns.write();
        if campaigns.by_id.contains_key(spec.id.as_str()) {
            return Err(Error::AlreadyExists(format!("campaign {:?}", spec.id)));
        }
        if campaigns.by_id.len() >= limits::MAX_CAMPAIGNS {
            return Err(Error::ResourceExhausted(format!(
                "at most {} campaigns per daemon",
                limits::MAX_CAMPAIGNS
            )));
        }
        let uid = campaigns.next_uid;
        let cell = self.new_cell(spec.clone(), uid);
        // Appended before the campaign is visible, so its definition
        // precedes every other change of it in the stream.
        self.append(|| Change::Campaign {
            uid,
            spec: Arc::new(spec.clone()),
        });
        campaigns.insert(cell);
        tracing::info!(campaign = %spec.id, uid, arms = spec.arms.len(), "campaign created");
        Ok(spec)
    }

    pub fn get_campaign(&self, id: &str) -> Result<CampaignSpec> {
        Ok(self.campaign(id)?.state.lock().spec.clone())
    }

    /// All campaigns, ordered by id.
    pub fn list_campaigns(&self) -> Vec<CampaignSpec> {
        let cells: BTreeMap<Arc<str>, Arc<CampaignCell>> = self
            .campaigns
            .read()
            .by_id
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        cells
            .values()
            .map(|c| c.state.lock().spec.clone())
            .collect()
    }

    /// Deletes a campaign with its statistics and decisions.
    pub fn delete_campaign(&self, id: &str) -> Result<()> {
        self.admit(1)?;
        let cell = self
            .campaigns
            .write()
            .remove(id)
            .ok_or_else(|| Error::NotFound(format!("campaign {id:?}")))?;
        let mut st = cell.state.lock();
        st.dead = true;
        self.append(|| Change::Deleted { uid: cell.uid });
        let caller_ids: Vec<(Arc<str>, crate::journal::Position)> = st
            .log
            .iter()
            .filter_map(|(at, d)| d.caller_id().map(|id| (id.clone(), at)))
            .collect();
        let decisions = st.log.len();
        drop(st);
        for (id, at) in &caller_ids {
            self.foreign.remove_if_at(id, cell.uid, *at);
        }
        tracing::info!(campaign = %id, uid = cell.uid, decisions, "campaign deleted");
        Ok(())
    }

    /// The campaign's state for a change: locked, alive, and the journal
    /// able to take `changes` more changes.
    pub(super) fn lock_for_change<'a>(
        &self,
        cell: &'a CampaignCell,
        changes: usize,
    ) -> Result<parking_lot::MutexGuard<'a, CampaignState>> {
        let st = cell.state.lock();
        if st.dead {
            return Err(Error::NotFound(format!("campaign {:?}", &*cell.id)));
        }
        self.admit(changes)?;
        Ok(st)
    }

    /// After the arms of `st.spec` changed: widens the statistics and
    /// appends the new definition.
    fn arms_changed(&self, cell: &CampaignCell, st: &mut CampaignState) -> CampaignSpec {
        st.arms_changed();
        let spec = st.spec.clone();
        self.append(|| Change::Campaign {
            uid: cell.uid,
            spec: Arc::new(spec.clone()),
        });
        spec
    }

    /// Adds arms that start exploring at once.
    pub fn add_arms(&self, id: &str, arms: Vec<ArmSpec>) -> Result<CampaignSpec> {
        let cell = self.campaign(id)?;
        let mut st = self.lock_for_change(&cell, 1)?;
        st.spec.add_arms(arms)?;
        Ok(self.arms_changed(&cell, &mut st))
    }

    /// Stops choosing an arm; its history stays readable.
    pub fn retire_arm(&self, id: &str, arm_id: &str) -> Result<CampaignSpec> {
        validate_id("arm_id", arm_id)?;
        let cell = self.campaign(id)?;
        let mut st = self.lock_for_change(&cell, 1)?;
        if !st.spec.retire(arm_id)? {
            return Ok(st.spec.clone());
        }
        Ok(self.arms_changed(&cell, &mut st))
    }
}
