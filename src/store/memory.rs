//! An in-memory [`Store`]: the simulator's and the unit tests' store, and the
//! reference model the sled store is checked against.

use super::{DecisionRecord, PosteriorKey, PosteriorRow, Snapshot, Store};
use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Keeps everything in ordered maps behind one mutex (it is never on a path
/// where that matters: the simulator runs one engine per thread).
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Guards the whole state so each trait method is atomic.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    campaigns: BTreeMap<String, CampaignSpec>,
    posteriors: BTreeMap<PosteriorKey, PosteriorRow>,
    decisions: BTreeMap<String, DecisionRecord>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let s = self.state.lock();
        Ok(Snapshot {
            campaigns: s.campaigns.values().cloned().collect(),
            posteriors: s.posteriors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            decisions: s.decisions.values().cloned().collect(),
        })
    }

    fn put_campaign(&self, spec: &CampaignSpec) -> Result<(), StoreError> {
        self.state
            .lock()
            .campaigns
            .insert(spec.id.clone(), spec.clone());
        Ok(())
    }

    fn delete_campaign(&self, id: &str, decisions: &[String]) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.campaigns.remove(id);
        s.posteriors.retain(|k, _| k.campaign != id);
        for d in decisions {
            s.decisions.remove(d);
        }
        Ok(())
    }

    fn put_decision(&self, decision: &DecisionRecord) -> Result<(), StoreError> {
        self.state
            .lock()
            .decisions
            .insert(decision.id.clone(), decision.clone());
        Ok(())
    }

    fn record_outcome(
        &self,
        key: &PosteriorKey,
        row: &PosteriorRow,
        decision: &DecisionRecord,
    ) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.decisions.insert(decision.id.clone(), decision.clone());
        s.posteriors.insert(key.clone(), *row);
        Ok(())
    }

    fn put_posterior(&self, key: &PosteriorKey, row: &PosteriorRow) -> Result<(), StoreError> {
        self.state.lock().posteriors.insert(key.clone(), *row);
        Ok(())
    }

    fn remove_decision(&self, id: &str) -> Result<(), StoreError> {
        self.state.lock().decisions.remove(id);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
