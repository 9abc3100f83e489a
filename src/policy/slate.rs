//! Ranked slates: `k` distinct arms in slot order for a page with `k` slots,
//! and the exact probability of each arm at each slot (the position-wise
//! propensity Open Bandit Pipeline logs as `pscore` per `position`).
//!
//! Every slate policy here is one mixture: with probability `u` (the
//! policy's exploration) a uniformly random ordered `k`-subset of the `n`
//! arms, in which every arm is at every slot with probability `1/n`;
//! otherwise a slate from a [`Base`] ranking:
//!
//! - [`Base::Led`]: Thompson sampling's. The first slot is drawn from
//!   P(best) itself (`policy::prob_best`, the vector a single-offer
//!   decision is drawn from, so a slate's first slot and `GetStats` agree),
//!   the later slots from `D` joint posterior draws ("sample once, take the
//!   k best") whose best is that arm, one taken uniformly; for an arm that
//!   is best in fewer than [`MIN_LED_DRAWS`] of them, any draw with that
//!   arm moved to the top. Slot `j`'s marginal of arm `b` is
//!   `Σ_a P(best = a) · share of a's rankings with b at j`: exact.
//! - [`Base::Draws`]: `D` equally likely rankings, one taken uniformly
//!   (linear Thompson's joint score draws). Slot `j`'s marginal of arm `a`
//!   is the share of the rankings with `a` at `j`: exact, because the slate
//!   *is* one of them.
//! - [`Base::Scores`]: the arms by decreasing score, ties in random order
//!   (ε-greedy's means, LinUCB's upper bounds). An arm in a group of `g`
//!   tied arms that fills slots `s..s+g` is at each of them with `1/g`.
//! - [`Base::Uniform`]: the uniform slate alone (the A/B/n split).
//!
//! So slot `j`'s marginal of arm `a` is `u/n + (1−u)·base_j(a)`, exactly,
//! and every row sums to 1 over the arms, every column to at most 1 over
//! the slots.

use rand::Rng;

/// Largest number of slots a slate may have.
pub const MAX_SLOTS: usize = 16;

/// `D` equally likely rankings of the top `depth` of `n` arms.
#[derive(Debug, Clone, PartialEq)]
pub struct Draws {
    n: usize,
    depth: usize,
    /// `D × depth` positions (indices into the `n` arms), best first.
    ranks: Vec<u16>,
    /// `depth × n`: slot `j`'s share of rankings with arm `a` there. Slot
    /// `j`'s marginal does not depend on how many slots follow it, so it is
    /// counted once here instead of on every draw.
    rows: Vec<Vec<f64>>,
}

impl Draws {
    /// `rounds` rankings of `n` arms, `depth` deep: each round `fill`
    /// writes one joint draw of the `n` scores and the `depth` highest are
    /// kept in order (a NaN ranks below every number; an exact tie, which
    /// continuous draws make with probability 0, goes to the lower index).
    pub fn collect(
        n: usize,
        depth: usize,
        rounds: usize,
        mut fill: impl FnMut(&mut [f64]),
    ) -> Draws {
        let depth = depth.min(n);
        let mut scores = vec![0.0; n];
        let mut order: Vec<usize> = Vec::with_capacity(n);
        let mut ranks = Vec::with_capacity(rounds * depth);
        for _ in 0..rounds.max(1) {
            fill(&mut scores);
            order.clear();
            order.extend(0..n);
            let key = |i: usize| {
                let s = scores[i];
                if s.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    s
                }
            };
            let by_score = |a: &usize, b: &usize| key(*b).total_cmp(&key(*a)).then(a.cmp(b));
            if depth < n {
                order.select_nth_unstable_by(depth, by_score);
            }
            order[..depth].sort_unstable_by(by_score);
            ranks.extend(order[..depth].iter().map(|&i| i as u16));
        }
        let mut rows = vec![vec![0.0; n]; depth];
        let unit = 1.0 / (ranks.len() / depth.max(1)).max(1) as f64;
        for ranking in ranks.chunks(depth.max(1)) {
            for (row, &p) in rows.iter_mut().zip(ranking) {
                row[usize::from(p)] += unit;
            }
        }
        Draws {
            n,
            depth,
            ranks,
            rows,
        }
    }

    /// How deep the rankings go (`min(depth, n)` as collected).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// How many rankings there are.
    pub fn rounds(&self) -> usize {
        self.ranks.len() / self.depth.max(1)
    }

    fn ranking(&self, r: usize) -> &[u16] {
        &self.ranks[r * self.depth..(r + 1) * self.depth]
    }
}

/// An arm leads its own rankings when it is best in at least this many
/// draws; otherwise its slates follow any draw, with it moved to the top.
pub const MIN_LED_DRAWS: usize = 8;

/// Thompson slates: the first slot by P(best), the rest by joint posterior
/// draws led by that arm (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Led {
    /// P(best) per arm (sums to 1).
    first: Vec<f64>,
    draws: Draws,
    /// Per arm, the draws it is best in (empty below [`MIN_LED_DRAWS`]).
    led_by: Vec<Vec<u32>>,
    /// `depth × n` marginals.
    rows: Vec<Vec<f64>>,
}

impl Led {
    /// `first`: P(best) over the `n` arms of `draws`.
    pub fn new(first: Vec<f64>, draws: Draws) -> Led {
        let (n, depth, rounds) = (draws.n, draws.depth, draws.rounds());
        debug_assert_eq!(first.len(), n);
        let mut led_by = vec![Vec::new(); n];
        for r in 0..rounds {
            led_by[usize::from(draws.ranking(r)[0])].push(r as u32);
        }
        for l in &mut led_by {
            if l.len() < MIN_LED_DRAWS {
                l.clear();
            }
        }
        let mut rows = vec![vec![0.0; n]; depth];
        rows[0].clone_from(&first);
        for (a, &pa) in first.iter().enumerate() {
            if pa <= 0.0 {
                continue;
            }
            if !led_by[a].is_empty() {
                let unit = pa / led_by[a].len() as f64;
                for &r in &led_by[a] {
                    for (row, &p) in rows.iter_mut().zip(draws.ranking(r as usize)).skip(1) {
                        row[usize::from(p)] += unit;
                    }
                }
            } else {
                let unit = pa / rounds.max(1) as f64;
                for r in 0..rounds {
                    let others = draws.ranking(r).iter().filter(|&&p| usize::from(p) != a);
                    for (row, &p) in rows.iter_mut().skip(1).zip(others) {
                        row[usize::from(p)] += unit;
                    }
                }
            }
        }
        Led {
            first,
            draws,
            led_by,
            rows,
        }
    }

    /// How many slots its slates can fill.
    pub fn depth(&self) -> usize {
        self.draws.depth
    }

    fn slate<R: Rng + ?Sized>(&self, k: usize, rng: &mut R) -> Vec<usize> {
        let a = super::thompson::sample_index(&self.first, rng);
        let led = &self.led_by[a];
        if !led.is_empty() {
            let r = led[rng.random_range(0..led.len())] as usize;
            return self.draws.ranking(r)[..k]
                .iter()
                .map(|&p| usize::from(p))
                .collect();
        }
        let r = rng.random_range(0..self.draws.rounds());
        std::iter::once(a)
            .chain(
                self.draws
                    .ranking(r)
                    .iter()
                    .map(|&p| usize::from(p))
                    .filter(|&p| p != a),
            )
            .take(k)
            .collect()
    }
}

/// What a slate is drawn from besides the uniform share.
#[derive(Debug, Clone, Copy)]
pub enum Base<'a> {
    Led(&'a Led),
    Draws(&'a Draws),
    Scores(&'a [f64]),
    Uniform,
}

/// A drawn slate: positions into the `n` arms, in slot order.
#[derive(Debug, Clone, PartialEq)]
pub struct Slate {
    pub positions: Vec<usize>,
    /// Per slot, every arm's probability of being there (`k × n`).
    pub marginals: Vec<Vec<f64>>,
}

impl Slate {
    /// The probability the slate's arm at `slot` had of being there.
    pub fn propensity(&self, slot: usize) -> f64 {
        self.marginals[slot][self.positions[slot]]
    }
}

/// Draws a slate of `k` of `n` arms (`1 ≤ k ≤ n`, and `k` no deeper than
/// the draws) from `base` mixed with `uniform_share` of the uniform slate,
/// with its exact marginals.
pub fn draw<R: Rng + ?Sized>(
    base: Base<'_>,
    n: usize,
    k: usize,
    uniform_share: f64,
    rng: &mut R,
) -> Slate {
    debug_assert!(k >= 1 && k <= n);
    let u = uniform_share.clamp(0.0, 1.0);
    let explore = matches!(base, Base::Uniform) || (u > 0.0 && rng.random::<f64>() < u);
    let positions = if explore {
        uniform_slate(n, k, rng)
    } else {
        match base {
            Base::Led(l) => l.slate(k, rng),
            Base::Draws(d) => {
                let r = rng.random_range(0..d.rounds());
                d.ranking(r)[..k].iter().map(|&p| usize::from(p)).collect()
            }
            Base::Scores(s) => {
                let mut order = score_order(s);
                // Ties in random order: shuffle each group of equal scores.
                for (start, len) in tie_groups(s, &order) {
                    let group = &mut order[start..start + len];
                    for i in (1..group.len()).rev() {
                        group.swap(i, rng.random_range(0..=i));
                    }
                    if start + len >= k {
                        break;
                    }
                }
                order.truncate(k);
                order
            }
            Base::Uniform => unreachable!("explored above"),
        }
    };
    Slate {
        positions,
        marginals: marginals(base, n, k, u),
    }
}

/// Slot by slot, every arm's probability of being there under [`draw`].
pub fn marginals(base: Base<'_>, n: usize, k: usize, uniform_share: f64) -> Vec<Vec<f64>> {
    let u = match base {
        Base::Uniform => 1.0,
        _ => uniform_share.clamp(0.0, 1.0),
    };
    let mut rows = match base {
        Base::Led(l) => l.rows[..k].to_vec(),
        Base::Draws(d) => d.rows[..k].to_vec(),
        _ => vec![vec![0.0; n]; k],
    };
    match base {
        Base::Led(_) | Base::Draws(_) => {}
        Base::Scores(s) => {
            let order = score_order(s);
            for (start, len) in tie_groups(s, &order) {
                if start >= k {
                    break;
                }
                let share = 1.0 / len as f64;
                for row in rows.iter_mut().skip(start).take(len) {
                    for &p in &order[start..start + len] {
                        row[p] += share;
                    }
                }
            }
        }
        Base::Uniform => {}
    }
    for row in &mut rows {
        for q in row.iter_mut() {
            *q = u / n as f64 + (1.0 - u) * *q;
        }
    }
    rows
}

/// A uniformly random ordered `k`-subset of `0..n` (partial Fisher–Yates).
pub fn uniform_slate<R: Rng + ?Sized>(n: usize, k: usize, rng: &mut R) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        all.swap(i, j);
    }
    all.truncate(k.min(n));
    all
}

/// Mixes `share` of the uniform slate into marginals (the holdout).
pub fn mix_uniform(rows: &mut [Vec<f64>], n: usize, share: f64) {
    for row in rows {
        for q in row.iter_mut() {
            *q = share / n as f64 + (1.0 - share) * *q;
        }
    }
}

/// Positions by decreasing score (NaN last), ties by index.
fn score_order(s: &[f64]) -> Vec<usize> {
    let key = |i: usize| {
        if s[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            s[i]
        }
    };
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order
}

/// `(start, len)` of each run of equal scores in `order`.
fn tie_groups(s: &[f64], order: &[usize]) -> Vec<(usize, usize)> {
    let key = |i: usize| {
        if s[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            s[i]
        }
    };
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=order.len() {
        if i == order.len() || key(order[i]) != key(order[start]) {
            groups.push((start, i - start));
            start = i;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    /// Empirical slot frequencies of `trials` slates against the marginals.
    fn check(base: Base<'_>, n: usize, k: usize, u: f64, trials: usize, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let want = marginals(base, n, k, u);
        let mut seen = vec![vec![0usize; n]; k];
        for _ in 0..trials {
            let s = draw(base, n, k, u, &mut rng);
            let mut distinct = s.positions.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), k, "distinct arms: {:?}", s.positions);
            for (j, &p) in s.positions.iter().enumerate() {
                assert!(s.propensity(j) > 0.0, "a drawn arm has a positive marginal");
                seen[j][p] += 1;
            }
        }
        for j in 0..k {
            let row: f64 = want[j].iter().sum();
            assert!((row - 1.0).abs() < 1e-12, "slot {j} sums to {row}");
            for a in 0..n {
                let f = seen[j][a] as f64 / trials as f64;
                let p = want[j][a];
                let sd = (p * (1.0 - p) / trials as f64).sqrt();
                assert!(
                    (f - p).abs() <= 5.0 * sd + 1e-9,
                    "slot {j} arm {a}: seen {f}, marginal {p}"
                );
            }
        }
        for a in 0..n {
            let col: f64 = want.iter().map(|row| row[a]).sum();
            assert!(col <= 1.0 + 1e-12, "arm {a} is in the slate with {col}");
        }
    }

    // The marginals are what the draws do, slot by slot, for each base,
    // with and without exploration; every slate has distinct arms.
    #[test]
    fn marginals_match_the_draws() {
        let mut rng = SmallRng::seed_from_u64(7);
        let means = [0.1, 0.5, 0.3, 0.3, 0.05];
        let draws = Draws::collect(5, 3, 400, |s| {
            for (x, m) in s.iter_mut().zip(means) {
                *x = m + 0.2 * rng.random::<f64>();
            }
        });
        check(Base::Draws(&draws), 5, 3, 0.0, 40_000, 1);
        check(Base::Draws(&draws), 5, 2, 0.25, 40_000, 2);
        let scores = [0.2, f64::NAN, 0.7, 0.2, 0.2, 0.9];
        check(Base::Scores(&scores), 6, 4, 0.0, 40_000, 3);
        check(Base::Scores(&scores), 6, 3, 0.1, 40_000, 4);
        check(Base::Uniform, 4, 4, 0.0, 40_000, 5);
    }

    // Thompson slates: the first slot's marginal is P(best) exactly, the
    // later ones what the draws led by it do, for arms that lead many
    // draws and for one that leads none (moved to the top of any draw).
    #[test]
    fn led_slates_put_p_best_first() {
        let mut rng = SmallRng::seed_from_u64(8);
        let means = [0.1, 0.5, 0.3, 0.32, 0.05];
        let draws = Draws::collect(5, 3, 600, |s| {
            for (x, m) in s.iter_mut().zip(means) {
                *x = m + 0.2 * rng.random::<f64>();
            }
        });
        // Arm 0 leads no draw (0.1 + 0.2 < 0.5) but has a P(best) here.
        let first = vec![0.05, 0.5, 0.2, 0.2, 0.05];
        let led = Led::new(first.clone(), draws);
        assert!(led.led_by[0].is_empty() && !led.led_by[1].is_empty());
        let m = marginals(Base::Led(&led), 5, 3, 0.0);
        assert_eq!(m[0], first);
        check(Base::Led(&led), 5, 3, 0.0, 60_000, 6);
        check(Base::Led(&led), 5, 2, 0.3, 60_000, 7);
    }

    // Score order with ties: the tied group shares its slots evenly, and
    // the greedy top is certain without exploration.
    #[test]
    fn score_order_splits_ties_evenly() {
        let m = marginals(Base::Scores(&[0.2, 0.9, 0.2, 0.2]), 4, 3, 0.0);
        assert_eq!(m[0], vec![0.0, 1.0, 0.0, 0.0]);
        for j in [1, 2] {
            for a in [0, 2, 3] {
                assert!((m[j][a] - 1.0 / 3.0).abs() < 1e-15);
            }
        }
        let m = marginals(Base::Scores(&[0.5, 0.1]), 2, 2, 0.2);
        assert!((m[0][0] - 0.9).abs() < 1e-15 && (m[1][1] - 0.9).abs() < 1e-15);
    }

    // Draws keep each round's top in order; the marginal of a ranking that
    // always comes first is 1.
    #[test]
    fn draws_rank_each_round() {
        let d = Draws::collect(4, 2, 3, |s| s.copy_from_slice(&[0.1, 0.4, f64::NAN, 0.3]));
        assert_eq!(d.depth(), 2);
        assert_eq!(d.rounds(), 3);
        let m = marginals(Base::Draws(&d), 4, 2, 0.0);
        assert_eq!(m[0], vec![0.0, 1.0, 0.0, 0.0]);
        assert_eq!(m[1], vec![0.0, 0.0, 0.0, 1.0]);
    }
}
