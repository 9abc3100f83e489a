//! Disjoint LinUCB (Li, Chu, Langford & Schapire, WWW 2010) and its sibling,
//! linear Thompson sampling (Agrawal & Goyal, ICML 2013).
//!
//! This module owns only the math: per-arm ridge-regression sufficient
//! statistics ([`LinearArm`]: `A = λI + Σ x xᵀ`, `b = Σ r x` and a cached
//! `A⁻¹`), the UCB score `θᵀx + α·sqrt(xᵀA⁻¹x)`, and the two decision rules
//! [`choose_ucb`] and [`choose_lints`], each returning the chosen arm with the
//! probability it had of being chosen (for off-policy evaluation). It must not
//! touch I/O, storage, clocks, gRPC or any global state: everything is plain
//! data and functions of their arguments, and all randomness comes from the
//! `rng` the caller passes in, so that a decision is replayable from a seed.
//!
//! Numerical design. `A⁻¹` is kept by Sherman–Morrison rank-1 updates
//! (O(d²) per update); the scratch vector `A⁻¹x` lives in a stack array when
//! `d ≤ STACK_DIM` (64) and is allocated only above that, so the struct stays
//! plain data. Only the upper triangle of the correction is computed and
//! mirrored, so `A⁻¹` stays exactly symmetric. Each rank-1 step adds rounding
//! error of order `ε·κ(A)`, and these accumulate with the number of steps, so
//! every [`REFACTOR_EVERY`] (1024) updates `A⁻¹` is recomputed from `A`, which
//! is itself exact up to one rounding per entry per update; at d = 20 a refactor
//! costs a few µs, i.e. a few ns amortised per update, while bounding the drift
//! at roughly `10³·ε·κ(A)`. A refactor also happens at once when the cached
//! inverse looks broken: a diagonal entry non-positive or non-finite, or a
//! Sherman–Morrison denominator `1 + xᵀA⁻¹x` that is not finite or below 1
//! (impossible for SPD `A`, so it is also a `debug_assert`). A refactor uses a
//! Cholesky factorisation, which reports (rather than panics on) a non-SPD
//! matrix; the fallback is Gauss–Jordan elimination with partial pivoting. The
//! posterior-mean `θ = A⁻¹b` and the UCB score are computed from the cached
//! inverse in one O(d²) pass without allocating. Inputs with a wrong
//! dimension or non-finite values are rejected, never panicked on.

use rand::Rng;
use rand_distr::StandardNormal;
use std::collections::BTreeMap;

/// Number of Sherman–Morrison updates after which `A⁻¹` is recomputed from `A`.
pub const REFACTOR_EVERY: u32 = 1024;

/// Largest dimension whose update scratch vector lives on the stack.
pub const STACK_DIM: usize = 64;

/// Ridge strength used by [`LinearArm::new`] when it is given an invalid one.
pub const DEFAULT_LAMBDA: f64 = 1.0;

/// Slack allowed below 1 for the Sherman–Morrison denominator (rounding only).
const DENOM_SLACK: f64 = 1e-6;

/// Why an input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearError {
    /// `lambda` must be finite and strictly positive.
    InvalidLambda,
    /// A vector or matrix does not have the arm's dimension.
    DimensionMismatch { expected: usize, got: usize },
    /// An input value is NaN or infinite.
    NonFinite,
    /// A matrix that must be symmetric is not.
    NotSymmetric,
    /// The arm's own fields have inconsistent lengths.
    Malformed,
}

impl std::fmt::Display for LinearError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinearError::InvalidLambda => write!(f, "lambda must be finite and > 0"),
            LinearError::DimensionMismatch { expected, got } => {
                write!(f, "dimension mismatch: expected {expected}, got {got}")
            }
            LinearError::NonFinite => write!(f, "input contains NaN or infinity"),
            LinearError::NotSymmetric => write!(f, "matrix is not symmetric"),
            LinearError::Malformed => write!(f, "arm fields have inconsistent lengths"),
        }
    }
}

impl std::error::Error for LinearError {}

/// How [`LinearArm::refactor`] obtained the new inverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InverseMethod {
    /// `A` was SPD; inverse from its Cholesky factor.
    Cholesky,
    /// `A` was not SPD but invertible; Gauss–Jordan with partial pivoting.
    GaussJordan,
    /// `A` is singular, non-finite or the arm is malformed; `a_inv` unchanged.
    Failed,
}

/// Sufficient statistics of one arm's ridge regression in dimension `d`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearArm {
    /// `d*d` row-major, `λI + Σ x xᵀ`.
    pub a: Vec<f64>,
    /// `Σ r x`, length `d`.
    pub b: Vec<f64>,
    /// `d*d` cached inverse of `a`, kept by Sherman–Morrison updates.
    pub a_inv: Vec<f64>,
    /// Rank-1 updates applied to `a_inv` since it was last recomputed from `a`.
    pub updates_since_refactor: u32,
    /// Number of updates applied.
    pub pulls: u64,
    /// Sum of the rewards of those updates.
    pub reward_sum: f64,
    /// Sum of their squares (the residual noise, see [`Self::residual_sd`]).
    pub reward_sq_sum: f64,
    /// Decisions still waiting for their reward, by creation bucket: each
    /// counts in the effective `A` (whose inverse `a_inv` is) with its
    /// bucket's weight, the share of conversions that would have arrived
    /// by its age. Rebuilt from the pending decisions; never persisted.
    pub pending: BTreeMap<u64, PendingBucket>,
}

/// The pending decisions of one arm created in one time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingBucket {
    /// Σ x xᵀ, `d*d` row-major.
    pub xx: Vec<f64>,
    pub count: u32,
    /// The weight with which `xx` is in the effective `A` now.
    pub weight: f64,
}

impl LinearArm {
    /// A fresh arm: `A = λI`, `b = 0`. `lambda` must be finite and > 0; an
    /// invalid one is replaced by [`DEFAULT_LAMBDA`] (use [`Self::try_new`] to
    /// get an error instead).
    pub fn new(d: usize, lambda: f64) -> Self {
        Self::try_new(d, lambda).unwrap_or_else(|_| Self::scaled_identity(d, DEFAULT_LAMBDA))
    }

    /// Like [`Self::new`] but refuses an invalid `lambda`.
    pub fn try_new(d: usize, lambda: f64) -> Result<Self, LinearError> {
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(LinearError::InvalidLambda);
        }
        Ok(Self::scaled_identity(d, lambda))
    }

    fn scaled_identity(d: usize, lambda: f64) -> Self {
        let mut a = vec![0.0; d * d];
        let mut a_inv = vec![0.0; d * d];
        for i in 0..d {
            a[i * d + i] = lambda;
            a_inv[i * d + i] = 1.0 / lambda;
        }
        LinearArm {
            a,
            b: vec![0.0; d],
            a_inv,
            updates_since_refactor: 0,
            pulls: 0,
            reward_sum: 0.0,
            reward_sq_sum: 0.0,
            pending: BTreeMap::new(),
        }
    }

    /// An arm rebuilt from persisted statistics (`A` and `b` as learned, the
    /// tallies), with `A⁻¹` recomputed from `A`.
    pub fn from_parts(
        a: Vec<f64>,
        b: Vec<f64>,
        pulls: u64,
        reward_sum: f64,
        reward_sq_sum: f64,
    ) -> Result<Self, LinearError> {
        let d = b.len();
        if a.len() != d * d {
            return Err(LinearError::Malformed);
        }
        if a.iter().chain(&b).any(|v| !v.is_finite())
            || !reward_sum.is_finite()
            || !reward_sq_sum.is_finite()
        {
            return Err(LinearError::NonFinite);
        }
        let mut arm = LinearArm {
            a,
            b,
            a_inv: vec![0.0; d * d],
            updates_since_refactor: 0,
            pulls,
            reward_sum,
            reward_sq_sum,
            pending: BTreeMap::new(),
        };
        match arm.refactor() {
            InverseMethod::Failed => Err(LinearError::Malformed),
            _ => Ok(arm),
        }
    }

    /// The dimension `d` (length of `b`).
    pub fn dim(&self) -> usize {
        self.b.len()
    }

    /// Whether `a` and `a_inv` both have `d*d` entries.
    pub fn is_well_formed(&self) -> bool {
        let d = self.dim();
        self.a.len() == d * d && self.a_inv.len() == d * d
    }

    /// `A += x xᵀ`, `b += r x`, `A⁻¹` by Sherman–Morrison (or a refactor, see
    /// the module doc). An input with the wrong length or a non-finite value
    /// is ignored; use [`Self::try_update`] to learn about it.
    pub fn update(&mut self, x: &[f64], reward: f64) {
        let _ignored = self.try_update(x, reward);
    }

    /// [`Self::update`] that reports refused inputs and leaves the arm
    /// untouched in that case. O(d²); allocates only when `d > STACK_DIM`.
    pub fn try_update(&mut self, x: &[f64], reward: f64) -> Result<(), LinearError> {
        if !self.is_well_formed() {
            return Err(LinearError::Malformed);
        }
        let d = self.dim();
        if x.len() != d {
            return Err(LinearError::DimensionMismatch {
                expected: d,
                got: x.len(),
            });
        }
        if !reward.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return Err(LinearError::NonFinite);
        }
        if d == 0 {
            self.pulls += 1;
            self.reward_sum += reward;
            self.reward_sq_sum += reward * reward;
            return Ok(());
        }
        self.learn_into_a(x, reward)?;
        self.rank_one(x, 1.0);
        Ok(())
    }

    /// `A += x xᵀ`, `b += r x` and the tallies, leaving the inverse alone.
    fn learn_into_a(&mut self, x: &[f64], reward: f64) -> Result<(), LinearError> {
        let d = self.dim();
        if x.len() != d {
            return Err(LinearError::DimensionMismatch {
                expected: d,
                got: x.len(),
            });
        }
        if !reward.is_finite() || x.iter().any(|v| !v.is_finite()) {
            return Err(LinearError::NonFinite);
        }
        for ((row, bi), &xi) in self.a.chunks_exact_mut(d).zip(self.b.iter_mut()).zip(x) {
            *bi += reward * xi;
            for (aij, &xj) in row.iter_mut().zip(x) {
                *aij += xi * xj;
            }
        }
        self.pulls += 1;
        self.reward_sum += reward;
        self.reward_sq_sum += reward * reward;
        self.updates_since_refactor = self.updates_since_refactor.saturating_add(1);
        Ok(())
    }

    /// `A_eff += c·x xᵀ` in the cached inverse (Sherman–Morrison, or a
    /// refactor when due or when the result looks broken).
    fn rank_one(&mut self, x: &[f64], c: f64) {
        let d = self.dim();
        if c <= 0.0 || d == 0 {
            return;
        }
        let healthy = if self.updates_since_refactor >= REFACTOR_EVERY || !self.inverse_diag_ok() {
            false
        } else if d <= STACK_DIM {
            let mut buf = [0.0; STACK_DIM];
            self.sherman_morrison(x, c, &mut buf[..d])
        } else {
            let mut buf = vec![0.0; d];
            self.sherman_morrison(x, c, &mut buf)
        };
        if !healthy {
            self.refactor();
        }
    }

    /// Counts a pending decision with context `x` created in `bucket`. It
    /// enters the effective `A` with its bucket's current weight (0 for a
    /// new bucket); [`Self::reweigh`] moves the weights with time.
    pub fn add_pending(&mut self, x: &[f64], bucket: u64) {
        let d = self.dim();
        if x.len() != d || x.iter().any(|v| !v.is_finite()) {
            return;
        }
        let entry = self.pending.entry(bucket).or_insert_with(|| PendingBucket {
            xx: vec![0.0; d * d],
            count: 0,
            weight: 0.0,
        });
        add_outer(&mut entry.xx, x, 1.0);
        entry.count += 1;
        let w = entry.weight;
        self.updates_since_refactor = self.updates_since_refactor.saturating_add(1);
        self.rank_one(x, w);
    }

    /// Learns the outcome of a pending decision counted by
    /// [`Self::add_pending`]: its `x xᵀ` moves from the bucket (where it
    /// had the bucket's weight) to the resolved `A` (weight 1).
    pub fn resolve_pending(&mut self, x: &[f64], bucket: u64, reward: f64) {
        let d = self.dim();
        let w = match self.pending.get_mut(&bucket) {
            Some(e) if x.len() == d => {
                add_outer(&mut e.xx, x, -1.0);
                e.count = e.count.saturating_sub(1);
                let w = e.weight;
                if e.count == 0 {
                    self.pending.remove(&bucket);
                }
                w
            }
            _ => 0.0,
        };
        // The resolved A gains x xᵀ; the effective A gains only the share
        // the pending decision did not have yet.
        if self.learn_into_a(x, reward).is_ok() {
            self.rank_one(x, 1.0 - w);
        }
    }

    /// Sets every pending bucket's weight (`weight(bucket)`) and recomputes
    /// the inverse of the effective `A`. O(d³ + buckets·d²).
    pub fn reweigh(&mut self, weight: impl Fn(u64) -> f64) {
        for (id, e) in self.pending.iter_mut() {
            e.weight = weight(*id).clamp(0.0, 1.0);
        }
        self.refactor();
    }

    /// `A + Σ weight·(Σ x xᵀ)` over the pending buckets.
    fn effective_a(&self) -> std::borrow::Cow<'_, [f64]> {
        if self.pending.values().all(|e| e.weight == 0.0) {
            return std::borrow::Cow::Borrowed(&self.a);
        }
        let mut a = self.a.clone();
        for e in self.pending.values() {
            if e.weight > 0.0 {
                for (ai, xi) in a.iter_mut().zip(&e.xx) {
                    *ai += e.weight * xi;
                }
            }
        }
        std::borrow::Cow::Owned(a)
    }

    /// Diagonal of `a_inv` positive and finite (a cheap O(d) health check).
    fn inverse_diag_ok(&self) -> bool {
        let d = self.dim();
        (0..d).all(|i| {
            let v = self.a_inv[i * d + i];
            v.is_finite() && v > 0.0
        })
    }

    /// Rank-1 update of `a_inv` for `A += c·x xᵀ` (c > 0); `u` is scratch
    /// of length d. Returns false when the result cannot be trusted (caller
    /// refactors).
    fn sherman_morrison(&mut self, x: &[f64], c: f64, u: &mut [f64]) -> bool {
        let d = x.len();
        let mut quad = 0.0;
        for ((ui, row), &xi) in u.iter_mut().zip(self.a_inv.chunks_exact(d)).zip(x) {
            *ui = dot(row, x);
            quad += xi * *ui;
        }
        let denom = 1.0 / c + quad;
        debug_assert!(
            denom >= 1.0 - DENOM_SLACK,
            "Sherman–Morrison denominator {denom} < 1: cached A⁻¹ is not positive definite"
        );
        if !(denom.is_finite() && denom >= 1.0 - DENOM_SLACK) {
            return false;
        }
        let inv = 1.0 / denom;
        for i in 0..d {
            let ui = u[i] * inv;
            for (j, &uj) in u.iter().enumerate().skip(i) {
                let v = self.a_inv[i * d + j] - ui * uj;
                self.a_inv[i * d + j] = v;
                self.a_inv[j * d + i] = v;
            }
        }
        self.inverse_diag_ok()
    }

    /// `(θᵀx, xᵀA⁻¹x)` in one O(d²) pass without allocating (`θᵀx = bᵀA⁻¹x`
    /// since `A⁻¹` is symmetric). NaN when `x` has the wrong length.
    fn mean_and_quad(&self, x: &[f64]) -> (f64, f64) {
        let d = self.dim();
        if x.len() != d || !self.is_well_formed() {
            return (f64::NAN, f64::NAN);
        }
        if d == 0 {
            return (0.0, 0.0);
        }
        let mut mean = 0.0;
        let mut quad = 0.0;
        for ((row, &bi), &xi) in self.a_inv.chunks_exact(d).zip(&self.b).zip(x) {
            let ui = dot(row, x);
            mean += bi * ui;
            quad += xi * ui;
        }
        (mean, quad.max(0.0))
    }

    /// The residual standard deviation of the rewards around the ridge fit,
    /// `sqrt((Σr² − θᵀb) / (n − d))` (the ridge residual sum of squares,
    /// up to the penalty), or 1 while there are no more outcomes than
    /// dimensions.
    pub fn residual_sd(&self) -> f64 {
        let d = self.dim();
        if self.pulls <= d as u64 {
            return 1.0;
        }
        let theta = self.theta();
        let explained = dot(&theta, &self.b);
        let rss = (self.reward_sq_sum - explained).max(0.0);
        let sd = (rss / (self.pulls - d as u64) as f64).sqrt();
        if sd.is_finite() {
            sd
        } else {
            1.0
        }
    }

    /// Ridge estimate `θ = A⁻¹ b`.
    pub fn theta(&self) -> Vec<f64> {
        let d = self.dim();
        if d == 0 || !self.is_well_formed() {
            return vec![f64::NAN; d];
        }
        self.a_inv
            .chunks_exact(d)
            .map(|row| dot(row, &self.b))
            .collect()
    }

    /// Point prediction `θᵀx`; NaN when `x` has the wrong length.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.mean_and_quad(x).0
    }

    /// `θᵀx + α·sqrt(xᵀA⁻¹x)` in O(d²) without allocating; NaN when `x` has
    /// the wrong length.
    pub fn score_ucb(&self, x: &[f64], alpha: f64) -> f64 {
        let (mean, quad) = self.mean_and_quad(x);
        mean + alpha * quad.sqrt()
    }

    /// Confidence width `sqrt(xᵀA⁻¹x)`; NaN when `x` has the wrong length.
    pub fn bonus(&self, x: &[f64]) -> f64 {
        self.mean_and_quad(x).1.sqrt()
    }

    /// Recompute `a_inv` from `a` (Cholesky, falling back to Gauss–Jordan with
    /// partial pivoting when `a` is not SPD) and reset the refactor counter.
    /// O(d³). On [`InverseMethod::Failed`] `a_inv` is left as it was.
    pub fn refactor(&mut self) -> InverseMethod {
        self.updates_since_refactor = 0;
        if !self.is_well_formed() {
            return InverseMethod::Failed;
        }
        let d = self.dim();
        let a = self.effective_a();
        if let Some(l) = cholesky(&a, d) {
            self.a_inv = inverse_from_cholesky(&l, d);
            InverseMethod::Cholesky
        } else if let Some(mut inv) = gauss_jordan_inverse(&a, d) {
            symmetrize(&mut inv, d);
            self.a_inv = inv;
            InverseMethod::GaussJordan
        } else {
            InverseMethod::Failed
        }
    }

    /// `A − λI`, the part of `A` contributed by data (what a replica ships to
    /// [`Self::merge_delta`]).
    pub fn a_minus_lambda_i(&self, lambda: f64) -> Vec<f64> {
        let d = self.dim();
        let mut out = self.a.clone();
        if out.len() == d * d {
            for i in 0..d {
                out[i * d + i] -= lambda;
            }
        }
        out
    }

    /// Additive merge of another replica's data statistics: `A += other_A − λI`
    /// (the caller subtracts the other replica's prior, see
    /// [`Self::a_minus_lambda_i`]), `b += other_b`, then [`Self::refactor`].
    /// `pulls` and `reward_sum` are not touched (the caller knows them).
    /// Refuses wrong lengths, non-finite values and a non-symmetric delta.
    pub fn merge_delta(
        &mut self,
        other_a_minus_lambda_i: &[f64],
        other_b: &[f64],
    ) -> Result<InverseMethod, LinearError> {
        if !self.is_well_formed() {
            return Err(LinearError::Malformed);
        }
        let d = self.dim();
        if other_a_minus_lambda_i.len() != d * d {
            return Err(LinearError::DimensionMismatch {
                expected: d * d,
                got: other_a_minus_lambda_i.len(),
            });
        }
        if other_b.len() != d {
            return Err(LinearError::DimensionMismatch {
                expected: d,
                got: other_b.len(),
            });
        }
        if other_a_minus_lambda_i
            .iter()
            .chain(other_b)
            .any(|v| !v.is_finite())
        {
            return Err(LinearError::NonFinite);
        }
        for i in 0..d {
            for j in (i + 1)..d {
                let (p, q) = (
                    other_a_minus_lambda_i[i * d + j],
                    other_a_minus_lambda_i[j * d + i],
                );
                if (p - q).abs() > 1e-9 * (1.0 + p.abs().max(q.abs())) {
                    return Err(LinearError::NotSymmetric);
                }
            }
        }
        for (a, &o) in self.a.iter_mut().zip(other_a_minus_lambda_i) {
            *a += o;
        }
        symmetrize(&mut self.a, d);
        for (b, &o) in self.b.iter_mut().zip(other_b) {
            *b += o;
        }
        Ok(self.refactor())
    }

    /// One full posterior draw `θ̃ ~ N(θ, v²A⁻¹)`: with `A = L Lᵀ`,
    /// `θ̃ = θ + v·L⁻ᵀz`, `z ~ N(0, I)`. O(d³) (a Cholesky of `A`) plus O(d²).
    /// `None` when `A` is not SPD, `v` is invalid or the arm is malformed.
    pub fn sample_theta(&self, v: f64, rng: &mut impl Rng) -> Option<Vec<f64>> {
        if !(v.is_finite() && v >= 0.0 && self.is_well_formed()) {
            return None;
        }
        let d = self.dim();
        let l = cholesky(&self.a, d)?;
        let mut y: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        // Back substitution: Lᵀ y = z.
        for i in (0..d).rev() {
            let mut s = y[i];
            for k in (i + 1)..d {
                s -= l[k * d + i] * y[k];
            }
            y[i] = s / l[i * d + i];
        }
        let theta = self.theta();
        Some(theta.iter().zip(&y).map(|(t, e)| t + v * e).collect())
    }
}

/// Parameters of [`choose_ucb`]. `lambda` is the ridge prior used to build
/// arms ([`LinearArm::new`]); the decision itself does not read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinUcbParams {
    /// Width multiplier of the confidence bonus, finite and ≥ 0.
    pub alpha: f64,
    /// Ridge prior strength for new arms, finite and > 0.
    pub lambda: f64,
    /// Probability of a uniform exploratory pick, in [0, 1].
    pub epsilon: f64,
}

impl Default for LinUcbParams {
    fn default() -> Self {
        LinUcbParams {
            alpha: 1.0,
            lambda: 1.0,
            epsilon: 0.0,
        }
    }
}

/// A decision and the probability the policy had of making it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearChoice {
    /// Index into the `arms` slice.
    pub arm: usize,
    /// Probability in (0, 1] that this arm was the one chosen.
    pub propensity: f64,
    /// The probability of each position of `active` (an arm listed twice
    /// has two entries); empty where the policy has no vector
    /// ([`choose_lints`]).
    pub probs: Vec<f64>,
}

/// `active` non-empty, indices in range, `x` finite and of every active arm's
/// dimension, arms well-formed.
fn valid_inputs(arms: &[LinearArm], active: &[usize], x: &[f64]) -> bool {
    !active.is_empty()
        && x.iter().all(|v| v.is_finite())
        && active.iter().all(|&i| {
            arms.get(i)
                .is_some_and(|arm| arm.dim() == x.len() && arm.is_well_formed())
        })
}

/// Running argmax with ties broken uniformly at random (reservoir sampling:
/// one `random_range` per tie after the first). NaN ranks below every
/// number; if every score is NaN or −∞, all positions tie.
struct TieBreaker {
    best: f64,
    ties: usize,
    chosen: usize,
}

impl TieBreaker {
    fn new() -> Self {
        TieBreaker {
            best: f64::NEG_INFINITY,
            ties: 0,
            chosen: 0,
        }
    }

    fn offer(&mut self, pos: usize, score: f64, rng: &mut impl Rng) {
        let s = if score.is_nan() {
            f64::NEG_INFINITY
        } else {
            score
        };
        if self.ties == 0 || s > self.best {
            self.best = s;
            self.ties = 1;
            self.chosen = pos;
        } else if s == self.best {
            self.ties += 1;
            if rng.random_range(0..self.ties) == 0 {
                self.chosen = pos;
            }
        }
    }
}

/// One Thompson round over `(mean, sd)` per position: the winning position.
fn draw_round(stats: &[(f64, f64)], rng: &mut impl Rng) -> usize {
    let mut tb = TieBreaker::new();
    for (pos, &(mean, sd)) in stats.iter().enumerate() {
        let z: f64 = rng.sample(StandardNormal);
        tb.offer(pos, mean + sd * z, rng);
    }
    tb.chosen
}

/// Choose among `active` arm indices (indices into `arms`); `x` already
/// includes the intercept. With probability `epsilon` a uniform active arm;
/// otherwise the argmax of [`LinearArm::score_ucb`], ties broken uniformly at
/// random with `rng`. The propensity is exact:
/// `(1−ε)·[chosen ∈ argmax]/|argmax| + ε/K` with `K = active.len()`
/// (an index listed twice in `active` counts twice on both sides).
///
/// The probability vector over `active` comes with it. Cost O(K·d²), one
/// K-vector. The RNG use is fixed by the inputs: one
/// `random_range` per tie beyond the first, one `random::<f64>()` for the
/// ε coin, one `random_range(0..K)` if exploring.
///
/// `None` when `active` is empty, an index is out of range, `x` is
/// non-finite or of another dimension than an active arm, or the parameters
/// are invalid (`alpha` not finite or < 0, `epsilon` outside [0, 1]).
pub fn choose_ucb(
    arms: &[LinearArm],
    active: &[usize],
    x: &[f64],
    p: &LinUcbParams,
    rng: &mut impl Rng,
) -> Option<LinearChoice> {
    let params_ok = p.alpha.is_finite() && p.alpha >= 0.0 && (0.0..=1.0).contains(&p.epsilon);
    if !params_ok || !valid_inputs(arms, active, x) {
        return None;
    }
    let k = active.len();
    let scores: Vec<f64> = active
        .iter()
        .map(|&a| {
            let s = arms[a].score_ucb(x, p.alpha);
            if s.is_nan() {
                f64::NEG_INFINITY
            } else {
                s
            }
        })
        .collect();
    let mut tb = TieBreaker::new();
    for (pos, &s) in scores.iter().enumerate() {
        tb.offer(pos, s, rng);
    }
    let (greedy_pos, best, ties) = (tb.chosen, tb.best, tb.ties);
    let explore = rng.random::<f64>() < p.epsilon;
    let pos = if explore {
        rng.random_range(0..k)
    } else {
        greedy_pos
    };
    let arm = active[pos];
    let multiplicity = active.iter().filter(|&&a| a == arm).count();
    let in_argmax = if scores[pos] == best { multiplicity } else { 0 };
    let propensity = (1.0 - p.epsilon) * in_argmax as f64 / ties as f64
        + p.epsilon * multiplicity as f64 / k as f64;
    let probs = super::argmax_share(&scores, p.epsilon);
    Some(LinearChoice {
        arm,
        propensity: propensity.min(1.0),
        probs,
    })
}

/// Linear Thompson sampling: draw `θ̃ₐ ~ N(θₐ, v²A⁻¹ₐ)` independently per
/// active arm and pick the argmax of `θ̃ₐᵀx` (ties uniformly at random).
///
/// Only the scalar `θ̃ₐᵀx` matters for the decision, and it is exactly
/// `N(θₐᵀx, v²·xᵀA⁻¹ₐx)`; so instead of factorising `A⁻¹ₐ` (O(d³) per arm,
/// see [`LinearArm::sample_theta`]) each arm's score is drawn as
/// `θₐᵀx + v·sqrt(xᵀA⁻¹ₐx)·z`, `z ~ N(0, 1)`, which has the same
/// distribution. Cost O(K·d²) for the means and widths, then O(K) per draw.
///
/// The propensity has no closed form: it is estimated with `draws` further
/// independent rounds of the same sampling, counting how often the chosen
/// arm wins, smoothed as `(wins + 0.5)/(draws + 0.5·K)` so it lies in (0, 1]
/// (with `draws = 0` it is `1/K`). Allocates one K-vector.
///
/// `None` under the same conditions as [`choose_ucb`], or when `v` is not
/// finite or negative.
pub fn choose_lints(
    arms: &[LinearArm],
    active: &[usize],
    x: &[f64],
    v: f64,
    draws: u32,
    rng: &mut impl Rng,
) -> Option<LinearChoice> {
    if !(v.is_finite() && v >= 0.0 && valid_inputs(arms, active, x)) {
        return None;
    }
    let k = active.len();
    let stats: Vec<(f64, f64)> = active
        .iter()
        .map(|&a| {
            let (mean, quad) = arms[a].mean_and_quad(x);
            (mean, v * quad.sqrt())
        })
        .collect();
    let arm = active[draw_round(&stats, rng)];
    let mut wins = 0u64;
    for _ in 0..draws {
        if active[draw_round(&stats, rng)] == arm {
            wins += 1;
        }
    }
    let propensity = (wins as f64 + 0.5) / (f64::from(draws) + 0.5 * k as f64);
    Some(LinearChoice {
        arm,
        propensity: propensity.min(1.0),
        probs: Vec::new(),
    })
}

/// Joint draws behind [`choose_lints_exact`]'s probability vector.
pub const LINTS_DRAWS: u32 = 256;

/// Linear Thompson sampling with an exact propensity: estimates the
/// probability vector of the linear Thompson draw (each arm's score from
/// `N(θₐᵀx, v²·xᵀA⁻¹ₐx)`) with [`LINTS_DRAWS`] joint rounds, smoothed as
/// `(wins + ½)/(D + K/2)`, mixes in ε of the uniform split, and draws the
/// arm *from that vector*: the returned propensity is the probability the
/// arm was drawn with, whatever the estimate's accuracy. O(K·d²) for the
/// means and widths, then O(D·K).
pub fn choose_lints_exact(
    arms: &[LinearArm],
    active: &[usize],
    x: &[f64],
    v: f64,
    epsilon: f64,
    rng: &mut impl Rng,
) -> Option<LinearChoice> {
    if !(v.is_finite()
        && v >= 0.0
        && (0.0..=1.0).contains(&epsilon)
        && valid_inputs(arms, active, x))
    {
        return None;
    }
    let k = active.len();
    let stats: Vec<(f64, f64)> = active
        .iter()
        .map(|&a| {
            let (mean, quad) = arms[a].mean_and_quad(x);
            (mean, v * quad.sqrt())
        })
        .collect();
    let mut wins = vec![0u32; k];
    for _ in 0..LINTS_DRAWS {
        wins[draw_round(&stats, rng)] += 1;
    }
    let denom = f64::from(LINTS_DRAWS) + 0.5 * k as f64;
    let probs: Vec<f64> = wins
        .iter()
        .map(|&w| (1.0 - epsilon) * (f64::from(w) + 0.5) / denom + epsilon / k as f64)
        .collect();
    let pos = super::thompson::sample_index(&probs, rng);
    Some(LinearChoice {
        arm: active[pos],
        propensity: probs[pos],
        probs,
    })
}

/// Slates under LinUCB: the upper bound of each position of `active`, by
/// which the slate is ranked (see [`super::slate`]). `None` for the inputs
/// [`choose_ucb`] refuses.
pub fn ucb_scores(arms: &[LinearArm], active: &[usize], x: &[f64], alpha: f64) -> Option<Vec<f64>> {
    if !(alpha.is_finite() && alpha >= 0.0 && valid_inputs(arms, active, x)) {
        return None;
    }
    Some(
        active
            .iter()
            .map(|&a| arms[a].score_ucb(x, alpha))
            .collect(),
    )
}

/// Slates under linear Thompson sampling: [`LINTS_DRAWS`] joint draws of
/// every active arm's score from `N(θₐᵀx, v²·xᵀA⁻¹ₐx)`, each draw's top
/// `depth` kept; the slate is one of them (see [`super::slate`]). `None` for
/// the inputs [`choose_lints_exact`] refuses.
pub fn lints_draws(
    arms: &[LinearArm],
    active: &[usize],
    x: &[f64],
    v: f64,
    depth: usize,
    rng: &mut impl Rng,
) -> Option<super::slate::Draws> {
    if !(v.is_finite() && v >= 0.0 && valid_inputs(arms, active, x)) {
        return None;
    }
    let stats: Vec<(f64, f64)> = active
        .iter()
        .map(|&a| {
            let (mean, quad) = arms[a].mean_and_quad(x);
            (mean, v * quad.sqrt())
        })
        .collect();
    Some(super::slate::Draws::collect(
        active.len(),
        depth,
        LINTS_DRAWS as usize,
        |s| {
            for (out, &(mean, sd)) in s.iter_mut().zip(&stats) {
                let z: f64 = rng.sample(StandardNormal);
                *out = mean + sd * z;
            }
        },
    ))
}

/// `m += s·x xᵀ` (`m` is `d*d` row-major).
fn add_outer(m: &mut [f64], x: &[f64], s: f64) {
    let d = x.len();
    for (row, &xi) in m.chunks_exact_mut(d).zip(x) {
        for (mij, &xj) in row.iter_mut().zip(x) {
            *mij += s * xi * xj;
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

/// Mirror the average of the two triangles into both.
fn symmetrize(m: &mut [f64], d: usize) {
    for i in 0..d {
        for j in (i + 1)..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = v;
            m[j * d + i] = v;
        }
    }
}

/// Lower-triangular `L` with `A = L Lᵀ` (reads the lower triangle of `a`), or
/// `None` when `a` is not (numerically) symmetric positive definite or has
/// non-finite entries.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    if a.len() != d * d {
        return None;
    }
    let mut l = vec![0.0; d * d];
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= l[j * d + k] * l[j * d + k];
        }
        if !(diag.is_finite() && diag > 0.0) {
            return None;
        }
        let ljj = diag.sqrt();
        l[j * d + j] = ljj;
        for i in (j + 1)..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            let v = s / ljj;
            if !v.is_finite() {
                return None;
            }
            l[i * d + j] = v;
        }
    }
    Some(l)
}

/// `A⁻¹ = L⁻ᵀ L⁻¹` from the Cholesky factor; exactly symmetric.
fn inverse_from_cholesky(l: &[f64], d: usize) -> Vec<f64> {
    // M = L⁻¹, lower triangular, by forward substitution column by column.
    let mut m = vec![0.0; d * d];
    for c in 0..d {
        m[c * d + c] = 1.0 / l[c * d + c];
        for i in (c + 1)..d {
            let mut s = 0.0;
            for k in c..i {
                s -= l[i * d + k] * m[k * d + c];
            }
            m[i * d + c] = s / l[i * d + i];
        }
    }
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let mut s = 0.0;
            for k in j..d {
                s += m[k * d + i] * m[k * d + j];
            }
            inv[i * d + j] = s;
            inv[j * d + i] = s;
        }
    }
    inv
}

/// Inverse by Gauss–Jordan elimination with partial pivoting, or `None` when
/// `a` is singular (pivot negligible relative to the matrix) or non-finite.
fn gauss_jordan_inverse(a: &[f64], d: usize) -> Option<Vec<f64>> {
    if a.len() != d * d || a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tiny = scale * f64::EPSILON * d as f64;
    let mut m = a.to_vec();
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        inv[i * d + i] = 1.0;
    }
    for col in 0..d {
        let mut piv = col;
        for r in (col + 1)..d {
            if m[r * d + col].abs() > m[piv * d + col].abs() {
                piv = r;
            }
        }
        let pv = m[piv * d + col];
        if pv.is_nan() || pv.abs() <= tiny {
            return None;
        }
        if piv != col {
            for j in 0..d {
                m.swap(piv * d + j, col * d + j);
                inv.swap(piv * d + j, col * d + j);
            }
        }
        let r = 1.0 / pv;
        for j in 0..d {
            m[col * d + j] *= r;
            inv[col * d + j] *= r;
        }
        for row in 0..d {
            if row == col {
                continue;
            }
            let f = m[row * d + col];
            if f != 0.0 {
                for j in 0..d {
                    m[row * d + j] -= f * m[col * d + j];
                    inv[row * d + j] -= f * inv[col * d + j];
                }
            }
        }
    }
    if inv.iter().all(|v| v.is_finite()) {
        Some(inv)
    } else {
        None
    }
}

#[cfg(test)]
#[path = "linucb_tests.rs"]
mod tests;
