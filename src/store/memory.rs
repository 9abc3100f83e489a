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
    /// Ordered by [`DecisionKey`], which keeps a campaign's server-generated
    /// ids in creation order (inserts, updates and removals stay near the
    /// edges of the tree) and compares in one integer comparison.
    /// Boxed, so the tree's nodes stay small and cheap to shift.
    decisions: BTreeMap<DecisionKey, Box<DecisionRecord>>,
    linear: FastMap<(Arc<str>, u32), LinearRow>,
}

/// A decision id with an ordering that is cheap and follows creation order:
/// its last eight bytes as a big-endian integer (the low digits of a
/// server-generated id's fixed-width hex slot), then the whole id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DecisionKey(u64, Arc<str>);

impl DecisionKey {
    fn new(id: &Arc<str>) -> Self {
        let b = id.as_bytes();
        let n = b.len().min(8);
        let mut tail = [0u8; 8];
        tail[8 - n..].copy_from_slice(&b[b.len() - n..]);
        DecisionKey(u64::from_be_bytes(tail), id.clone())
    }
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
            decisions: s.decisions.values().map(|d| (**d).clone()).collect(),
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
            s.decisions.remove(&DecisionKey::new(&d.as_str().into()));
        }
        Ok(())
    }

    fn put_decision(&self, decision: &DecisionRecord) -> Result<(), StoreError> {
        self.state
            .lock()
            .decisions
            .insert(DecisionKey::new(&decision.id), Box::new(decision.clone()));
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
        let id = DecisionKey::new(&decision.id);
        match s.decisions.get_mut(&id) {
            Some(d) => **d = decision.clone(),
            None => {
                s.decisions.insert(id, Box::new(decision.clone()));
            }
        }
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

    fn remove_decision(&self, id: &Arc<str>) -> Result<(), StoreError> {
        self.state.lock().decisions.remove(&DecisionKey::new(id));
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
