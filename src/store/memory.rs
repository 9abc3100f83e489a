//! An in-memory [`Store`]: the simulator's and the unit tests' store, and the
//! reference model the sled store is checked against.

use super::{DecisionRecord, LinearRow, PosteriorKey, PosteriorRow, Snapshot, Store};
use crate::campaign::CampaignSpec;
use crate::error::StoreError;
use crate::FastMap;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Keeps everything in hash maps behind one mutex (it is never on a path
/// where that matters: the simulator runs one engine per thread). Records
/// share their strings with the engine, so a write is a few reference-count
/// bumps and one hash insert. [`Store::load`] returns everything sorted by
/// key, as the sled store does.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Guards the whole state so each trait method is atomic.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    campaigns: FastMap<String, CampaignSpec>,
    posteriors: FastMap<PosteriorKey, PosteriorRow>,
    /// Ordered, as in sled: server-generated ids sort in creation order, so
    /// inserts, updates and removals stay near the edges of the tree.
    decisions: BTreeMap<Arc<str>, DecisionRecord>,
    linear: FastMap<(Arc<str>, u32), LinearRow>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let s = self.state.lock();
        let mut snap = Snapshot {
            campaigns: s.campaigns.values().cloned().collect(),
            posteriors: s.posteriors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            decisions: s.decisions.values().cloned().collect(),
            linear: s
                .linear
                .iter()
                .map(|((c, a), r)| (c.clone(), *a, r.clone()))
                .collect(),
        };
        snap.campaigns.sort_by(|a, b| a.id.cmp(&b.id));
        snap.posteriors.sort_by(|a, b| a.0.cmp(&b.0));
        snap.decisions.sort_by(|a, b| a.id.cmp(&b.id));
        snap.linear.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(snap)
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
        s.posteriors.retain(|k, _| &*k.campaign != id);
        s.linear.retain(|(c, _), _| &**c != id);
        for d in decisions {
            s.decisions.remove(d.as_str());
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
        linear: Option<&LinearRow>,
        decision: &DecisionRecord,
    ) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.decisions.insert(decision.id.clone(), decision.clone());
        s.posteriors.insert(key.clone(), *row);
        if let Some(l) = linear {
            s.linear.insert((key.campaign.clone(), key.arm), l.clone());
        }
        Ok(())
    }

    fn put_linear(&self, campaign: &str, arm: u32, row: &LinearRow) -> Result<(), StoreError> {
        self.state
            .lock()
            .linear
            .insert((campaign.into(), arm), row.clone());
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
