//! `prob_best` against independent references over its whole domain: the
//! closed form for two arms with integer α, a nested adaptive
//! Gauss–Kronrod integration in each arm's own logit (numerically
//! normalised: no ln Γ, no shared grid, no slivers), a brute-force
//! fine-grid integration for many arms, and 10⁷-draw Monte Carlo.

use super::*;
use crate::policy::beta::prob_greater_integer;
use crate::policy::thompson::sample_beta;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn b(alpha: f64, beta: f64) -> BetaParams {
    BetaParams { alpha, beta }
}

fn max_error(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Gauss–Kronrod 7–15 on [a, b]: (estimate, error estimate).
fn gk15(f: &mut dyn FnMut(f64) -> f64, a: f64, b: f64) -> (f64, f64) {
    const XGK: [f64; 8] = [
        0.991_455_371_120_812_6,
        0.949_107_912_342_758_5,
        0.864_864_423_359_769_1,
        0.741_531_185_599_394_4,
        0.586_087_235_467_691_1,
        0.405_845_151_377_397_2,
        0.207_784_955_007_898_5,
        0.0,
    ];
    const WGK: [f64; 8] = [
        0.022_935_322_010_529_22,
        0.063_092_092_629_978_55,
        0.104_790_010_322_250_18,
        0.140_653_259_715_525_92,
        0.169_004_726_639_267_9,
        0.190_350_578_064_785_4,
        0.204_432_940_075_298_9,
        0.209_482_141_084_727_83,
    ];
    const WG: [f64; 4] = [
        0.129_484_966_168_869_7,
        0.279_705_391_489_276_7,
        0.381_830_050_505_118_9,
        0.417_959_183_673_469_4,
    ];
    let (c, h) = (0.5 * (a + b), 0.5 * (b - a));
    let fc = f(c);
    let (mut k, mut g) = (WGK[7] * fc, WG[3] * fc);
    for i in 0..7 {
        let s = f(c - h * XGK[i]) + f(c + h * XGK[i]);
        k += WGK[i] * s;
        if i % 2 == 1 {
            g += WG[i / 2] * s;
        }
    }
    (k * h, ((k - g) * h).abs())
}

fn adaptive(f: &mut dyn FnMut(f64) -> f64, a: f64, b: f64, tol: f64, depth: u32) -> f64 {
    let (v, e) = gk15(f, a, b);
    if e <= tol || depth == 0 {
        return v;
    }
    let m = 0.5 * (a + b);
    adaptive(f, a, m, 0.5 * tol, depth - 1) + adaptive(f, m, b, 0.5 * tol, depth - 1)
}

/// One arm of the reference: its logit density, numerically normalised
/// over knots that widen geometrically from the mode.
struct RefArm {
    a: f64,
    b: f64,
    peak: f64,
    norm: f64,
    knots: Vec<f64>,
    cum: Vec<f64>,
}

impl RefArm {
    fn new(p: BetaParams) -> RefArm {
        let (a, b) = (p.alpha, p.beta);
        let lnsig = |s: f64| ln_sigmoid(s);
        let mode = (a / b).ln();
        let peak = a * lnsig(mode) + b * lnsig(-mode);
        let rel = |s: f64| a * lnsig(s) + b * lnsig(-s) - peak;
        let sd = (1.0 / a + 1.0 / b).sqrt();
        let mut knots = vec![mode];
        for dir in [-1.0, 1.0] {
            let mut d = 0.5 * sd;
            while rel(mode + dir * d) > -60.0 {
                knots.push(mode + dir * d);
                d *= 1.3;
            }
            knots.push(mode + dir * d);
        }
        knots.sort_by(f64::total_cmp);
        let mut arm = RefArm {
            a,
            b,
            peak,
            norm: 1.0,
            knots,
            cum: Vec::new(),
        };
        let mut cum = vec![0.0];
        for w in arm.knots.windows(2) {
            let v = adaptive(&mut |s| arm.raw(s), w[0], w[1], 1e-15, 20);
            cum.push(cum[cum.len() - 1] + v);
        }
        arm.norm = cum[cum.len() - 1];
        arm.cum = cum.iter().map(|c| c / arm.norm).collect();
        arm
    }

    fn raw(&self, s: f64) -> f64 {
        (self.a * ln_sigmoid(s) + self.b * ln_sigmoid(-s) - self.peak).exp()
    }

    fn density(&self, s: f64) -> f64 {
        self.raw(s) / self.norm
    }

    fn cdf(&self, s: f64) -> f64 {
        let (lo, hi) = (self.knots[0], self.knots[self.knots.len() - 1]);
        if s <= lo {
            return 0.0;
        }
        if s >= hi {
            return 1.0;
        }
        let i = self.knots.partition_point(|&k| k <= s) - 1;
        let (a, b) = (self.knots[i], self.knots[i + 1]);
        let mut g = |t: f64| self.density(t);
        if s - a <= b - s {
            self.cum[i] + adaptive(&mut g, a, s, 1e-14, 18)
        } else {
            self.cum[i + 1] - adaptive(&mut g, s, b, 1e-14, 18)
        }
    }
}

/// P(vᵢθᵢ is the largest) for arms given as (posterior, value, copies),
/// per copy: each distinct arm integrated in its own logit against every
/// other arm's CDF at the same vθ.
fn reference(arms: &[(BetaParams, f64, i32)]) -> Vec<f64> {
    let refs: Vec<RefArm> = arms.iter().map(|a| RefArm::new(a.0)).collect();
    (0..arms.len())
        .map(|i| {
            let vi = arms[i].1;
            let mut integrand = |s: f64| {
                let g = refs[i].density(s);
                if g == 0.0 {
                    return 0.0;
                }
                let mut prod = refs[i].cdf(s).powi(arms[i].2 - 1);
                for (j, (_, vj, copies)) in arms.iter().enumerate() {
                    if j == i || prod == 0.0 {
                        continue;
                    }
                    let f = if *vj == vi {
                        refs[j].cdf(s)
                    } else {
                        // θⱼ = (vᵢ/vⱼ) σ(s), in logit.
                        let lt = (vi / vj).ln() + ln_sigmoid(s);
                        if lt >= 0.0 {
                            1.0
                        } else {
                            refs[j].cdf(lt - (-lt.exp_m1()).ln())
                        }
                    };
                    prod *= f.powi(*copies);
                }
                g * prod
            };
            refs[i]
                .knots
                .windows(2)
                .map(|w| adaptive(&mut integrand, w[0], w[1], 1e-12, 18))
                .sum()
        })
        .collect()
}

fn reference_of(posts: &[BetaParams], values: Option<&[f64]>) -> Vec<f64> {
    let arms: Vec<_> = posts
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, values.map_or(1.0, |v| v[i]), 1))
        .collect();
    reference(&arms)
}

/// Brute force for many plain arms: one uniform grid in the logit, fine
/// enough for the narrowest arm, CDFs by cumulative Simpson, P by Simpson.
fn brute_force(posts: &[BetaParams]) -> Vec<f64> {
    let sd = |p: &BetaParams| (1.0 / p.alpha + 1.0 / p.beta).sqrt();
    let narrowest = posts.iter().map(sd).fold(f64::INFINITY, f64::min);
    let span = |p: &BetaParams, dir: f64| (p.alpha / p.beta).ln() + dir * 14.0 * sd(p);
    let lo = posts
        .iter()
        .map(|p| span(p, -1.0))
        .fold(f64::INFINITY, f64::min);
    let hi = posts
        .iter()
        .map(|p| span(p, 1.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let h = narrowest / 64.0;
    let n = (((hi - lo) / h).ceil() as usize) | 1; // odd: even panels
    let xs: Vec<f64> = (0..n).map(|i| lo + h * i as f64).collect();
    let mut dens = Vec::with_capacity(posts.len());
    let mut cdfs = Vec::with_capacity(posts.len());
    for p in posts {
        let g: Vec<f64> = xs
            .iter()
            .map(|&s| {
                (p.alpha * ln_sigmoid(s) + p.beta * ln_sigmoid(-s) - ln_beta(p.alpha, p.beta)).exp()
            })
            .collect();
        let mut c = vec![0.0; n];
        for i in 1..n {
            // Simpson over [x_{i−1}, x_i] from three points.
            let (a, m, z) = if i + 1 < n {
                (g[i - 1], g[i], g[i + 1])
            } else {
                (g[i - 2], g[i - 1], g[i])
            };
            let piece = if i + 1 < n {
                h / 12.0 * (5.0 * a + 8.0 * m - z)
            } else {
                h / 12.0 * (-a + 8.0 * m + 5.0 * z)
            };
            c[i] = c[i - 1] + piece;
        }
        let total = c[n - 1];
        dens.push(g.iter().map(|x| x / total).collect::<Vec<f64>>());
        cdfs.push(c.iter().map(|x| x / total).collect::<Vec<f64>>());
    }
    let k = posts.len();
    let mut out = vec![0.0; k];
    let mut prefix = vec![0.0; k + 1];
    for i in 0..n {
        let w = if i == 0 || i == n - 1 {
            h / 3.0
        } else if i % 2 == 1 {
            4.0 * h / 3.0
        } else {
            2.0 * h / 3.0
        };
        prefix[0] = 1.0;
        for j in 0..k {
            prefix[j + 1] = prefix[j] * cdfs[j][i];
        }
        let mut suffix = 1.0;
        for j in (0..k).rev() {
            out[j] += w * dens[j][i] * prefix[j] * suffix;
            suffix *= cdfs[j][i];
        }
    }
    out
}

// The figures of the issue that replaced the ±8 sd quadrature: rare
// conversions with many impressions (the old code gave 0.440 and 0.574),
// against Evan Miller's closed form, and the value-aware case (the old
// code gave 30.7% / 69.3%).
#[test]
fn rare_conversions_match_the_closed_form() {
    for &(a1, b1, a2, b2, want) in &[
        (2u32, 20_000.0, 4.0, 30_000.0, 0.337),
        (2, 5_000.0, 3.0, 9_000.0, 0.550),
    ] {
        let exact = prob_greater_integer(a1, b1, a2, b2);
        assert!((exact - want).abs() < 5e-4, "closed form {exact}");
        let p = prob_best(&[b(f64::from(a1), b1), b(a2, b2)], None);
        assert!((p[0] - exact).abs() < 1e-6, "{p:?} vs {exact}");
    }
    let posts = [b(2.0, 20_000.0), b(2.0, 20_000.0)];
    let p = prob_best(&posts, Some(&[1.0, 1.5]));
    let r = reference_of(&posts, Some(&[1.0, 1.5]));
    assert!(max_error(&p, &r) < 1e-6, "{p:?} vs {r:?}");
    assert!((p[0] - 0.352).abs() < 1e-3, "{p:?}");
}

// Two arms with integer α across the regimes: one conversion in ten
// million, α up to 10⁵, β up to 10⁷, vague and sharp, close and far.
#[test]
fn two_arms_match_the_closed_form_in_every_regime() {
    let cases: &[(u32, f64, f64, f64)] = &[
        (1, 1.0, 1.0, 1.0),
        (1, 1e7, 3.0, 1e7),
        (3, 1e7, 0.5, 2e6),
        (1, 1e7, 0.1, 1e7),
        (2, 0.5, 1.0, 0.1),
        (11, 91.0, 6.0, 96.0),
        (40, 960.0, 30.0, 970.0),
        (401, 19_600.0, 461.0, 19_540.0),
        (1_000, 1e6, 1_020.0, 1e6),
        (30_000, 1e6, 29_800.5, 1e6),
        (100_000, 1e7, 99_700.0, 1e7),
        (100_000, 9.9e6, 2_500.0, 2.5e5),
        (5, 1e7, 20_000.0, 1e7),
        (50, 5.0, 0.2, 0.1),
    ];
    for &(a1, b1, a2, b2) in cases {
        let exact = prob_greater_integer(a1, b1, a2, b2);
        let p = prob_best(&[b(f64::from(a1), b1), b(a2, b2)], None);
        assert!(
            (p[0] - exact).abs() < 1e-6,
            "Beta({a1}, {b1}) vs Beta({a2}, {b2}): {p:?} vs {exact}"
        );
    }
}

// Several arms, values and the corners of the domain, against the
// adaptive reference: α and β below 1, huge β, value ratios of 1,000,
// posteriors near θ = 1 on a lower value, equal posteriors.
#[test]
fn many_regimes_match_the_adaptive_reference() {
    type Case = (Vec<BetaParams>, Option<Vec<f64>>);
    let cases: Vec<Case> = vec![
        (vec![b(0.1, 1e7), b(0.5, 3e6), b(3.0, 1e7)], None),
        (
            vec![b(0.1, 0.1), b(0.5, 0.2), b(1.0, 0.1)],
            Some(vec![1.0, 2.0, 1.5]),
        ),
        (vec![b(1.0, 1.0); 3], Some(vec![1.0, 2.0, 3.0])),
        (
            vec![b(2.0, 400.0), b(30.0, 30.0), b(0.3, 9.0)],
            Some(vec![1000.0, 1.0, 20.0]),
        ),
        (
            vec![b(1e5, 0.5), b(2e4, 0.3), b(5.0, 5.0)],
            Some(vec![1.0, 1.0, 1.2]),
        ),
        (
            vec![b(4.0, 1e5), b(4.0, 1e5), b(3.0, 1e5)],
            Some(vec![1.0, 1.0, 1.3]),
        ),
        (
            vec![
                b(12.0, 388.0),
                b(12.0, 388.0),
                b(12.0, 388.0),
                b(9.0, 300.0),
            ],
            None,
        ),
        (
            vec![b(0.13, 0.19), b(5318.9, 1969.8), b(140.2, 428.2)],
            Some(vec![187.4, 48.2, 7.4]),
        ),
    ];
    for (posts, values) in &cases {
        let p = prob_best(posts, values.as_deref());
        let r = reference_of(posts, values.as_deref());
        assert!(
            (r.iter().sum::<f64>() - 1.0).abs() < 1e-8,
            "reference {r:?}"
        );
        assert!(
            max_error(&p, &r) < 1e-6,
            "{posts:?} {values:?}: {p:?} vs {r:?}"
        );
    }
}

// Equal posteriors split evenly, bit for bit the same number for each.
#[test]
fn equal_posteriors_split_evenly() {
    for k in [2, 7, 1000] {
        let p = prob_best(&vec![b(3.0, 97.0); k], None);
        assert!(p.iter().all(|&x| x == p[0]));
        assert!((p[0] - 1.0 / k as f64).abs() < 1e-12);
    }
    let p = prob_best(&[b(3.0, 97.0), b(5.0, 95.0), b(3.0, 97.0)], None);
    assert_eq!(p[0], p[2]);
}

// A thousand arms: ten posteriors a hundred times each (against the
// reference with multiplicities), and a thousand distinct ones against the
// brute-force grid (itself checked against the reference on a small case).
#[test]
fn a_thousand_arms_match_the_references() {
    let distinct: Vec<(BetaParams, f64, i32)> = (0..10)
        .map(|i| {
            let n = 500.0 * f64::from(i + 1);
            let rate = 0.02 + 0.001 * f64::from(i);
            (b(1.0 + rate * n, 1.0 + (1.0 - rate) * n), 1.0, 100)
        })
        .collect();
    let posts: Vec<BetaParams> = distinct
        .iter()
        .flat_map(|(p, _, c)| std::iter::repeat_n(*p, *c as usize))
        .collect();
    let p = prob_best(&posts, None);
    let r = reference(&distinct);
    for (i, (_, _, c)) in distinct.iter().enumerate() {
        let at = i * *c as usize;
        assert!(
            (p[at] - r[i]).abs() < 1e-7,
            "group {i}: {} vs {}",
            p[at],
            r[i]
        );
    }

    let mut rng = SmallRng::seed_from_u64(11);
    let small: Vec<BetaParams> = (0..4)
        .map(|_| b(rng.random_range(2.0..40.0), rng.random_range(200.0..900.0)))
        .collect();
    let brute = brute_force(&small);
    let exact = reference_of(&small, None);
    assert!(max_error(&brute, &exact) < 1e-7, "{brute:?} vs {exact:?}");

    let many: Vec<BetaParams> = (0..1000)
        .map(|_| {
            let n = 10f64.powf(rng.random_range(2.0..4.5));
            let rate = rng.random_range(0.01..0.05);
            b(0.5 + rate * n, 0.5 + (1.0 - rate) * n)
        })
        .collect();
    let p = prob_best(&many, None);
    let brute = brute_force(&many);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(
        max_error(&p, &brute) < 1e-6,
        "max error {}",
        max_error(&p, &brute)
    );
}

// 10⁷ joint draws of the Thompson sampler itself land within 4.5 standard
// errors of the vector, plain and valued.
#[test]
fn ten_million_draws_agree() {
    let cases: Vec<(Vec<BetaParams>, Option<Vec<f64>>)> = vec![
        (
            vec![b(2.0, 20_000.0), b(4.0, 30_000.0), b(0.7, 9_000.0)],
            None,
        ),
        (
            vec![b(41.0, 960.0), b(26.0, 975.0), b(1.0, 1.0)],
            Some(vec![1.0, 2.0, 0.05]),
        ),
    ];
    let mut rng = SmallRng::seed_from_u64(5);
    let draws = 10_000_000u32;
    for (posts, values) in cases {
        let p = prob_best(&posts, values.as_deref());
        let mut wins = vec![0u32; posts.len()];
        for _ in 0..draws {
            let mut best = (0, f64::NEG_INFINITY);
            for (i, post) in posts.iter().enumerate() {
                let v = values.as_ref().map_or(1.0, |v| v[i]) * sample_beta(post, &mut rng);
                if v > best.1 {
                    best = (i, v);
                }
            }
            wins[best.0] += 1;
        }
        for (w, q) in wins.iter().zip(&p) {
            let f = f64::from(*w) / f64::from(draws);
            let se = (q * (1.0 - q) / f64::from(draws)).sqrt();
            assert!((f - q).abs() < 4.5 * se + 1e-9, "{p:?}: {f} vs {q}");
        }
    }
}

fn posterior() -> impl Strategy<Value = BetaParams> {
    (-1.0f64..5.0, -1.0f64..7.0).prop_map(|(a, b)| BetaParams {
        alpha: 10f64.powf(a),
        beta: 10f64.powf(b),
    })
}

/// Posteriors of one campaign: similar rates, different amounts of data.
fn campaign_posterior() -> impl Strategy<Value = BetaParams> {
    (1.0f64..6.0, -4.0f64..-0.5, 0.1f64..2.0).prop_map(|(n, rate, prior)| {
        let (n, rate) = (10f64.powf(n), 10f64.powf(rate));
        BetaParams {
            alpha: prior + rate * n,
            beta: prior + (1.0 - rate) * n,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        rng_seed: proptest::test_runner::RngSeed::Fixed(25),
        ..ProptestConfig::default()
    })]

    // Random posteriors anywhere in the domain, with and without values
    // (ratios up to 1,000), within 1e-6 of the adaptive reference.
    #[test]
    fn random_posteriors_match_the_reference(
        posts in prop::collection::vec(prop_oneof![posterior(), campaign_posterior()], 2..6),
        values in prop::collection::vec(0.0f64..3.0, 6),
        valued in any::<bool>(),
    ) {
        let values: Vec<f64> = values.iter().take(posts.len()).map(|e| 10f64.powf(*e)).collect();
        let values = valued.then_some(values.as_slice());
        let p = prob_best(&posts, values);
        let r = reference_of(&posts, values);
        prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        prop_assert!(max_error(&p, &r) < 1e-6, "{:?} {:?}: {:?} vs {:?}", posts, values, p, r);
    }
}
