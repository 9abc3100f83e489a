//! The customer stream and the true response model.
//!
//! Owns the seeded generation of customers (arrival time, segment, noisy
//! features, the one uniform `u` that decides every conversion coin flip,
//! the conversion delay) and the true conversion probability of each offer
//! for a customer. Every strategy of a run replays the same stream from the
//! same seed, so they face exactly the same customers and the same coin
//! flips: a customer converts on offer `o` iff `u < p(o)`. Nothing here
//! decides or learns; nothing here touches the engine.

use super::scenario::{DelayKind, Response, Scenario};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, StandardNormal};

const DAY_MS: u64 = 86_400_000;

/// One customer of the stream.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Position in the stream, from 0.
    pub index: u64,
    /// Arrival, in simulated milliseconds from the start.
    pub t_ms: u64,
    /// Day of arrival, from 0.
    pub day: u32,
    pub segment: usize,
    /// Feature values (segment means plus noise), indexed like `Scenario::features`.
    pub x: Vec<f64>,
    /// The conversion coin: converts on offer `o` iff `u < p(o)`.
    pub u: f64,
    /// How long after the offer a conversion happens.
    pub delay_ms: u64,
}

/// A scenario's population: cumulative shares and the response model.
#[derive(Debug, Clone)]
pub struct Population<'a> {
    pub scenario: &'a Scenario,
    cumulative: Vec<f64>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl<'a> Population<'a> {
    pub fn new(scenario: &'a Scenario) -> Self {
        let mut acc = 0.0;
        let cumulative = scenario
            .segments
            .iter()
            .map(|s| {
                acc += s.share;
                acc
            })
            .collect();
        Population {
            scenario,
            cumulative,
        }
    }

    /// The customer stream of one run.
    pub fn stream(&self, seed: u64) -> impl Iterator<Item = Customer> + '_ {
        let mut rng = SmallRng::seed_from_u64(seed);
        let s = self.scenario;
        let total = s.total_customers();
        let exp = match s.delay.kind {
            DelayKind::Exponential { mean_minutes } if mean_minutes > 0.0 => {
                Exp::new(1.0 / mean_minutes).ok()
            }
            _ => None,
        };
        (0..total).map(move |index| {
            let day = (index / s.customers_per_day) as u32;
            let within = index % s.customers_per_day;
            let t_ms = u64::from(day) * DAY_MS + within * DAY_MS / s.customers_per_day;
            let r: f64 = rng.random();
            let segment = self
                .cumulative
                .iter()
                .position(|c| r < *c)
                .unwrap_or(s.segments.len() - 1);
            let seg = &s.segments[segment];
            let x = seg
                .features
                .iter()
                .zip(&seg.feature_noise)
                .map(|(m, sd)| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    m + sd * z
                })
                .collect();
            let u: f64 = rng.random();
            let minutes = match (s.delay.kind, &exp) {
                (DelayKind::Exponential { .. }, Some(e)) => e.sample(&mut rng),
                (DelayKind::Fixed { minutes }, _) => minutes,
                _ => 0.0,
            };
            Customer {
                index,
                t_ms,
                day,
                segment,
                x,
                u,
                delay_ms: (minutes * 60_000.0) as u64,
            }
        })
    }

    /// True conversion probability of every offer for `c`, drift included.
    pub fn probabilities(&self, c: &Customer, out: &mut Vec<f64>) {
        let s = self.scenario;
        out.clear();
        match &s.response {
            Response::Rates(t) => out.extend_from_slice(&t[c.segment]),
            Response::Logistic(models) => out.extend(
                models
                    .iter()
                    .map(|(b, w)| sigmoid(b + w.iter().zip(&c.x).map(|(w, x)| w * x).sum::<f64>())),
            ),
        }
        for d in &s.drift {
            if c.day >= d.day && d.segment.is_none_or(|si| si == c.segment) {
                out[d.offer] *= d.multiply;
            }
        }
        for p in out.iter_mut() {
            *p = p.clamp(0.0, 1.0);
        }
    }

    /// Mean and standard deviation of each feature, and the mean conversion
    /// rate over offers, from a fixed-seed sample (day 0, before drift).
    pub fn sample_stats(&self) -> (Vec<(f64, f64)>, f64) {
        let n = 20_000u64;
        let nf = self.scenario.features.len();
        let mut sum = vec![0.0; nf];
        let mut sq = vec![0.0; nf];
        let mut rate = 0.0;
        let mut probs = Vec::new();
        for mut c in self.stream(0x5eed).take(n as usize) {
            c.day = 0;
            for (i, x) in c.x.iter().enumerate() {
                sum[i] += x;
                sq[i] += x * x;
            }
            self.probabilities(&c, &mut probs);
            rate += probs.iter().sum::<f64>() / probs.len() as f64;
        }
        let k = n.min(self.scenario.total_customers()).max(1) as f64;
        let stats = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| {
                let m = s / k;
                let var = (q / k - m * m).max(0.0);
                (m, var.sqrt().max(1e-9))
            })
            .collect();
        (stats, rate / k)
    }
}
