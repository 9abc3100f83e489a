//! Decisions and where they live: each campaign's [`DecisionLog`].
//!
//! A campaign's decisions are made, expire and are forgotten in deadline
//! order (a decision's creation time is never earlier than the one before
//! it, and its deadline is creation time plus the campaign's timeout), so
//! they live in a queue guarded by the campaign's lock. A decision's place
//! in it is its [`Position`]: the run (process lifetime) that made it and
//! its slot in that run. The log holds one queue per run still remembered
//! (usually one or two); within a run a decision is found by `slot − base`.
//!
//! A decision is 32 bytes: the id of a server-generated decision is derived
//! from its position, and only caller-chosen ids and contexts are kept on
//! the heap ([`Extra`]).

use crate::journal::Position;
use std::collections::VecDeque;
use std::sync::Arc;

/// Where a decision is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionStatus {
    /// Waiting for its reward.
    Pending,
    /// A reward was learned.
    Rewarded,
    /// The timeout passed and the default reward was learned.
    Expired,
}

/// One decision, in its campaign's log.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Wall-clock ms since the Unix epoch (never earlier than the previous
    /// decision's, so deadlines stay in order).
    pub created_ms: u64,
    pub propensity: f64,
    /// The segment's number in its campaign.
    pub segment: u32,
    pub arm: u16,
    pub status: DecisionStatus,
    /// Its slot in its slate, and whether it is a holdout.
    pub placement: Placement,
    pub extra: Option<Box<Extra>>,
}

/// A decision's slot in its slate (0 for a single arm) and whether it is a
/// holdout (chosen uniformly, never learned from), in one byte: bit 7 the
/// holdout, bits 0–6 the slot (slates have at most
/// [`crate::policy::slate::MAX_SLOTS`] slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement(u8);

impl Placement {
    pub fn new(slot: usize, holdout: bool) -> Self {
        debug_assert!(slot < 0x80);
        Placement((slot.min(0x7f) as u8) | if holdout { 0x80 } else { 0 })
    }

    pub fn slot(self) -> usize {
        usize::from(self.0 & 0x7f)
    }

    pub fn holdout(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// What only some decisions carry.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// The caller-chosen id (the others are derived from the position).
    pub caller_id: Option<Arc<str>>,
    /// Contextual campaigns: the context vector, intercept first.
    pub context: Option<Arc<[f64]>>,
}

impl Decision {
    pub fn deadline_ms(&self, timeout_ms: u64) -> u64 {
        self.created_ms.saturating_add(timeout_ms)
    }

    pub fn holdout(&self) -> bool {
        self.placement.holdout()
    }

    pub fn slot(&self) -> usize {
        self.placement.slot()
    }

    pub fn caller_id(&self) -> Option<&Arc<str>> {
        self.extra.as_ref().and_then(|e| e.caller_id.as_ref())
    }

    pub fn context(&self) -> Option<&Arc<[f64]>> {
        self.extra.as_ref().and_then(|e| e.context.as_ref())
    }
}

#[derive(Debug)]
struct Run {
    run: u32,
    /// Slot of `entries[0]`.
    base: u64,
    entries: VecDeque<Decision>,
}

/// A campaign's decisions (pending, and resolved ones still remembered) in
/// deadline order.
#[derive(Debug, Default)]
pub struct DecisionLog {
    runs: VecDeque<Run>,
    /// Every position before this one has been swept (its deadline passed
    /// and, if it was pending, its default reward learned).
    swept: Position,
    len: usize,
    pending: usize,
    last_created: u64,
    /// Decisions rewarded and expired since this process started (metrics).
    rewarded_total: u64,
    expired_total: u64,
}

impl DecisionLog {
    /// The slot the next decision of `run` gets.
    pub fn next_slot(&self, run: u32) -> u64 {
        match self.runs.back() {
            Some(r) if r.run == run => r.base + r.entries.len() as u64,
            _ => 0,
        }
    }

    /// Appends a decision of `run` at [`Self::next_slot`]; runs only grow.
    pub fn push(&mut self, run: u32, d: Decision) -> Position {
        debug_assert!(d.created_ms >= self.last_created);
        if self.runs.back().is_none_or(|r| r.run != run) {
            debug_assert!(self.runs.back().is_none_or(|r| r.run < run));
            self.runs.push_back(Run {
                run,
                base: 0,
                entries: VecDeque::new(),
            });
        }
        self.last_created = self.last_created.max(d.created_ms);
        if d.status == DecisionStatus::Pending {
            self.pending += 1;
        }
        self.len += 1;
        let r = self
            .runs
            .back_mut()
            .unwrap_or_else(|| unreachable!("pushed above"));
        r.entries.push_back(d);
        (run, r.base + r.entries.len() as u64 - 1)
    }

    /// Appends a recovered decision at its own position (start-up only;
    /// positions must come in order, gaps allowed within a run only before
    /// its first entry).
    pub fn push_at(&mut self, at: Position, d: Decision) -> bool {
        match self.runs.back_mut() {
            Some(r) if r.run == at.0 => {
                if at.1 != r.base + r.entries.len() as u64 {
                    return false;
                }
            }
            Some(r) if r.run > at.0 => return false,
            _ => self.runs.push_back(Run {
                run: at.0,
                base: at.1,
                entries: VecDeque::new(),
            }),
        }
        if self.len == 0 {
            self.swept = at;
        }
        self.last_created = self.last_created.max(d.created_ms);
        if d.status == DecisionStatus::Pending {
            self.pending += 1;
        }
        self.len += 1;
        if let Some(r) = self.runs.back_mut() {
            r.entries.push_back(d);
        }
        true
    }

    fn run_of(&self, run: u32) -> Option<&Run> {
        self.runs.iter().rev().find(|r| r.run == run)
    }

    pub fn get(&self, at: Position) -> Option<&Decision> {
        let r = self.run_of(at.0)?;
        let i = usize::try_from(at.1.checked_sub(r.base)?).ok()?;
        r.entries.get(i)
    }

    pub fn get_mut(&mut self, at: Position) -> Option<&mut Decision> {
        let r = self.runs.iter_mut().rev().find(|r| r.run == at.0)?;
        let i = usize::try_from(at.1.checked_sub(r.base)?).ok()?;
        r.entries.get_mut(i)
    }

    /// Marks the pending decision at `at` resolved.
    pub fn resolve(&mut self, at: Position, status: DecisionStatus) -> Option<&Decision> {
        debug_assert!(status != DecisionStatus::Pending);
        let d = self.get_mut(at)?;
        if d.status != DecisionStatus::Pending {
            return None;
        }
        d.status = status;
        self.pending -= 1;
        match status {
            DecisionStatus::Rewarded => self.rewarded_total += 1,
            DecisionStatus::Expired => self.expired_total += 1,
            DecisionStatus::Pending => {}
        }
        self.get(at)
    }

    /// (rewarded, expired) since this process started.
    pub fn resolved_totals(&self) -> (u64, u64) {
        (self.rewarded_total, self.expired_total)
    }

    pub fn last_created(&self) -> u64 {
        self.last_created
    }

    /// The first remembered position at or after `p`.
    fn first_from(&self, p: Position) -> Option<Position> {
        for r in &self.runs {
            if r.run < p.0 {
                continue;
            }
            let start = if r.run == p.0 {
                p.1.max(r.base)
            } else {
                r.base
            };
            if start < r.base + r.entries.len() as u64 {
                return Some((r.run, start));
            }
        }
        None
    }

    /// The first position not yet swept whose deadline is before `now`.
    pub fn next_overdue(&self, now: u64, timeout_ms: u64) -> Option<Position> {
        let at = self.first_from(self.swept)?;
        self.get(at)
            .filter(|d| d.deadline_ms(timeout_ms) < now)
            .map(|_| at)
    }

    /// Marks everything up to and including `at` as swept.
    pub fn mark_swept(&mut self, at: Position) {
        self.swept = (at.0, at.1 + 1);
    }

    /// The oldest decision's position, if it has been swept and its
    /// deadline is before `before` (it may be forgotten).
    pub fn forgettable(&self, before: u64, timeout_ms: u64) -> Option<Position> {
        let r = self.runs.iter().find(|r| !r.entries.is_empty())?;
        let at = (r.run, r.base);
        let d = r.entries.front()?;
        (at < self.swept && d.deadline_ms(timeout_ms) < before).then_some(at)
    }

    /// Forgets the oldest decision.
    pub fn pop_front(&mut self) -> Option<Decision> {
        while self.runs.len() > 1 && self.runs.front().is_some_and(|r| r.entries.is_empty()) {
            self.runs.pop_front();
        }
        let r = self.runs.front_mut()?;
        let d = r.entries.pop_front()?;
        r.base += 1;
        self.len -= 1;
        if d.status == DecisionStatus::Pending {
            self.pending -= 1;
        }
        Some(d)
    }

    /// Every decision before this position has been forgotten.
    pub fn front_position(&self) -> Position {
        self.runs
            .iter()
            .find(|r| !r.entries.is_empty())
            .or(self.runs.back())
            .map_or((0, 0), |r| (r.run, r.base))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Decisions still waiting for their reward.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Every remembered decision with its position, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Position, &Decision)> {
        self.runs.iter().flat_map(|r| {
            r.entries
                .iter()
                .enumerate()
                .map(move |(i, d)| ((r.run, r.base + i as u64), d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(created_ms: u64) -> Decision {
        Decision {
            created_ms,
            propensity: 1.0,
            segment: 0,
            arm: 0,
            status: DecisionStatus::Pending,
            placement: Placement::default(),
            extra: None,
        }
    }

    // A decision is 32 bytes (the budget is 150 per pending decision).
    #[test]
    fn a_decision_is_small() {
        assert_eq!(std::mem::size_of::<Decision>(), 32);
        let p = Placement::new(15, true);
        assert_eq!((p.slot(), p.holdout()), (15, true));
        assert_eq!(Placement::new(3, false).slot(), 3);
        assert!(!Placement::default().holdout());
    }

    // Positions stay valid while the front is popped; sweeping and
    // forgetting follow deadlines across runs, and nothing is forgotten
    // before it was swept.
    #[test]
    fn positions_sweep_and_forget_in_deadline_order_across_runs() {
        let mut log = DecisionLog::default();
        assert!(log.push_at((1, 5), decision(10)));
        assert!(log.push_at((1, 6), decision(20)));
        assert!(!log.push_at((1, 9), decision(20)), "a gap inside a run");
        assert_eq!(log.next_slot(2), 0);
        assert_eq!(log.push(2, decision(20)), (2, 0));
        assert_eq!(log.push(2, decision(30)), (2, 1));
        let t = 5;
        assert_eq!(log.next_overdue(15, t), None);
        assert_eq!(log.next_overdue(16, t), Some((1, 5)));
        assert!(log.forgettable(1000, t).is_none(), "not swept yet");
        log.mark_swept((1, 5));
        assert_eq!(log.next_overdue(26, t), Some((1, 6)));
        log.mark_swept((1, 6));
        assert_eq!(
            log.next_overdue(26, t),
            Some((2, 0)),
            "the sweep moves on to the next run"
        );
        assert_eq!(log.forgettable(16, t), Some((1, 5)));
        assert_eq!(log.pop_front().map(|d| d.created_ms), Some(10));
        assert!(log.get((1, 5)).is_none());
        assert_eq!(log.get((2, 1)).map(|d| d.created_ms), Some(30));
        assert_eq!(log.pop_front().map(|d| d.created_ms), Some(20));
        assert_eq!(log.front_position(), (2, 0));
        assert!(log.forgettable(1000, t).is_none(), "(2, 0) not swept");
        assert_eq!(log.len(), 2);
        assert_eq!(log.pending(), 2);
        assert!(log.resolve((2, 0), DecisionStatus::Rewarded).is_some());
        assert!(
            log.resolve((2, 0), DecisionStatus::Expired).is_none(),
            "resolved once"
        );
        assert_eq!(log.pending(), 1);
    }
}
