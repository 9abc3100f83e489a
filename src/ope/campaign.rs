//! `--policy campaign:FILE.toml`: a campaign definition's policy, fitted on
//! the log and then held fixed, as the randomised policy it would play.
//!
//! The candidate learns from the logged decisions the way the engine would
//! (Beta posteriors per segment with its prior, pooling and exploration
//! floor; ε-greedy on the segment's means; LinUCB's ridge per arm), and its
//! probability vector at each event is what it would then play there.
//! Fitting and evaluating on the same decisions would favour a candidate
//! that chases this log's luck, so the fit is cross-fitted like the direct
//! model: the events of each fold (even and odd 0-based index) are scored
//! by the candidate fitted on the other fold. Only `prob` (an event seen on
//! its own) uses the fit on the whole log.
//!
//! Not modelled: what the candidate's own choices would have changed about
//! what it learned (the log decides what is observed), delayed feedback and
//! decay (every logged outcome counts in full). LinTS is not supported: its
//! probabilities need Monte Carlo per event.

use super::estimators::cholesky_solve;
use super::policy::EvalPolicy;
use super::{Log, LoggedEvent, OpeError};
use crate::campaign::{CampaignSpec, PolicySpec};
use crate::policy::pooling::{self, Evidence, PoolSums};
use crate::policy::prob_best::prob_best;
use crate::policy::thompson::{self, ThompsonPrior};

/// A campaign's policy, fitted on a log (see the module docs).
#[derive(Debug, Clone)]
pub struct CampaignPolicy {
    name: String,
    /// The candidate's arms as the log's action indices.
    arms: Vec<usize>,
    /// Fitted on the odd events (scores the even ones), on the even ones,
    /// and on all of them.
    folds: [Fitted; 2],
    all: Fitted,
}

#[derive(Debug, Clone)]
enum Fitted {
    /// Per segment, the distribution over the candidate's arms.
    Segments(Vec<Vec<f64>>),
    /// Per arm, θ and A⁻¹ (row-major d × d) over [1, features].
    Linear {
        alpha: f64,
        epsilon: f64,
        /// Log context column of each feature.
        columns: Vec<usize>,
        arms: Vec<(Vec<f64>, Vec<f64>)>,
    },
}

impl CampaignPolicy {
    /// Fits `spec`'s policy on `log`; `name` is what reports call it.
    pub fn fit(log: &Log, spec: &CampaignSpec, name: String) -> Result<Self, OpeError> {
        let arms = spec
            .arms
            .iter()
            .filter(|a| !a.retired)
            .map(|a| {
                log.actions.iter().position(|x| *x == a.id).ok_or_else(|| {
                    OpeError::Policy(format!(
                        "{name}: arm `{}` never appears in the log {}, so the log cannot say what it earns",
                        a.id, log.source
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if arms.is_empty() {
            return Err(OpeError::Policy(format!(
                "{name}: the campaign has no active arm"
            )));
        }
        let (lo, hi) = spec.policy.reward_range();
        if let Some((t, e)) = log
            .events
            .iter()
            .enumerate()
            .find(|(_, e)| !(lo..=hi).contains(&e.reward))
        {
            return Err(OpeError::Policy(format!(
                "{name}: event {} has reward {}, outside the [{lo}, {hi}] this policy learns from",
                t + 1,
                e.reward
            )));
        }
        let n = log.events.len();
        let rows =
            |keep: &dyn Fn(usize) -> bool| -> Vec<usize> { (0..n).filter(|&t| keep(t)).collect() };
        let fit = |rows: &[usize]| fit_rows(log, spec, &arms, rows, &name);
        Ok(CampaignPolicy {
            folds: [fit(&rows(&|t| t % 2 == 1))?, fit(&rows(&|t| t % 2 == 0))?],
            all: fit(&rows(&|_| true))?,
            arms,
            name,
        })
    }

    fn dist(&self, fitted: &Fitted, log: &Log, event: &LoggedEvent) -> Vec<f64> {
        let mut out = vec![0.0; log.actions.len()];
        match fitted {
            Fitted::Segments(per) => {
                if let Some(p) = per.get(event.segment) {
                    for (&a, &q) in self.arms.iter().zip(p) {
                        out[a] = q;
                    }
                }
            }
            Fitted::Linear {
                alpha,
                epsilon,
                columns,
                arms,
            } => {
                let mut x = Vec::with_capacity(columns.len() + 1);
                x.push(1.0);
                x.extend(columns.iter().map(|&c| event.context[c]));
                let d = x.len();
                let scores: Vec<f64> = arms
                    .iter()
                    .map(|(theta, inv)| {
                        let mean: f64 = theta.iter().zip(&x).map(|(t, v)| t * v).sum();
                        let mut var = 0.0;
                        for i in 0..d {
                            for j in 0..d {
                                var += x[i] * inv[i * d + j] * x[j];
                            }
                        }
                        mean + alpha * var.max(0.0).sqrt()
                    })
                    .collect();
                let share = crate::policy::argmax_share(&scores, *epsilon);
                for (&a, q) in self.arms.iter().zip(share) {
                    out[a] = q;
                }
            }
        }
        out
    }
}

impl EvalPolicy for CampaignPolicy {
    fn prob(&self, log: &Log, event: &LoggedEvent, action: usize) -> f64 {
        self.dist(&self.all, log, event)[action]
    }

    fn distribution(&self, log: &Log, t: usize) -> Vec<f64> {
        self.dist(&self.folds[t % 2], log, &log.events[t])
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

fn fit_rows(
    log: &Log,
    spec: &CampaignSpec,
    arms: &[usize],
    rows: &[usize],
    name: &str,
) -> Result<Fitted, OpeError> {
    let k = arms.len();
    // The candidate's arm index of each log action.
    let mut local = vec![None; log.actions.len()];
    for (i, &a) in arms.iter().enumerate() {
        local[a] = Some(i);
    }
    let named = |s: usize| crate::campaign::is_named_segment(&log.segments[s]);
    // What each segment learns from: a named segment its own outcomes, the
    // campaign-wide view ("" and placeholders) every outcome, as the engine.
    let evidence = || {
        let mut ev = vec![vec![Evidence::default(); k]; log.segments.len()];
        let mut all = vec![Evidence::default(); k];
        for &t in rows {
            let e = &log.events[t];
            if let Some(i) = local[e.action] {
                ev[e.segment][i].n += 1.0;
                ev[e.segment][i].y += e.reward;
                all[i].n += 1.0;
                all[i].y += e.reward;
            }
        }
        for (s, seg) in ev.iter_mut().enumerate() {
            if !named(s) {
                seg.clone_from(&all);
            }
        }
        ev
    };
    match &spec.policy {
        PolicySpec::Uniform => Ok(Fitted::Segments(vec![
            vec![1.0 / k as f64; k];
            log.segments.len()
        ])),
        PolicySpec::EpsilonGreedy { epsilon } => {
            let per = evidence()
                .iter()
                .map(|seg| {
                    // An untried arm is None, as in the engine.
                    let means: Vec<Option<f64>> = seg
                        .iter()
                        .map(|e| (e.n > 0.0).then(|| e.y / e.n))
                        .collect();
                    crate::policy::epsilon_greedy_probs(&means, *epsilon)
                })
                .collect();
            Ok(Fitted::Segments(per))
        }
        PolicySpec::Thompson {
            prior_alpha,
            prior_beta,
            pooling: mode,
            exploration_floor,
        } => {
            let prior = ThompsonPrior {
                alpha: *prior_alpha,
                beta: *prior_beta,
            };
            let ev = evidence();
            let mut pools = vec![PoolSums::default(); k];
            for (_, seg) in ev.iter().enumerate().filter(|(s, _)| named(*s)) {
                for (i, e) in seg.iter().enumerate() {
                    pools[i].add(*e);
                }
            }
            let per = ev
                .iter()
                .enumerate()
                .map(|(s, seg)| {
                    let posts: Vec<_> = seg
                        .iter()
                        .enumerate()
                        .map(|(i, own)| {
                            let pooled = if named(s) {
                                pooling::pooled_prior(
                                    *mode,
                                    prior.alpha,
                                    prior.beta,
                                    &pools[i].without(*own),
                                )
                            } else {
                                None
                            };
                            prior.posterior(*own, pooled)
                        })
                        .collect();
                    // The engine's P(best), the one function.
                    let mut p = prob_best(&posts, None);
                    thompson::with_floor(&mut p, *exploration_floor);
                    let sum: f64 = p.iter().sum();
                    p.iter_mut().for_each(|q| *q /= sum);
                    p
                })
                .collect();
            Ok(Fitted::Segments(per))
        }
        PolicySpec::LinUcb {
            alpha,
            lambda,
            epsilon,
            features,
            ..
        } => {
            let columns = features
                .iter()
                .map(|f| {
                    log.context_names.iter().position(|c| c == f).ok_or_else(|| {
                        OpeError::Policy(format!(
                            "{name}: feature `{f}` is not in the log's context (it has {})",
                            if log.context_names.is_empty() {
                                "none".to_string()
                            } else {
                                log.context_names.join(", ")
                            }
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let d = columns.len() + 1;
            let mut stats = vec![(vec![0.0; d * d], vec![0.0; d]); k];
            for (a, _) in stats.iter_mut() {
                for i in 0..d {
                    a[i * d + i] = *lambda;
                }
            }
            let mut x = vec![0.0; d];
            for &t in rows {
                let e = &log.events[t];
                let Some(i) = local[e.action] else { continue };
                x[0] = 1.0;
                for (slot, &c) in x[1..].iter_mut().zip(&columns) {
                    *slot = e.context[c];
                }
                let (a, b) = &mut stats[i];
                for r in 0..d {
                    b[r] += e.reward * x[r];
                    for c in 0..d {
                        a[r * d + c] += x[r] * x[c];
                    }
                }
            }
            let arms = stats
                .into_iter()
                .map(|(a, b)| {
                    let solve = |rhs: &[f64]| cholesky_solve(&mut a.clone(), d, rhs);
                    let theta = solve(&b);
                    let mut inv = vec![0.0; d * d];
                    let mut e = vec![0.0; d];
                    for j in 0..d {
                        e.iter_mut().for_each(|v| *v = 0.0);
                        e[j] = 1.0;
                        let col = solve(&e).ok_or_else(singular)?;
                        for i in 0..d {
                            inv[i * d + j] = col[i];
                        }
                    }
                    Ok((theta.ok_or_else(singular)?, inv))
                })
                .collect::<Result<Vec<_>, OpeError>>()?;
            Ok(Fitted::Linear {
                alpha: *alpha,
                epsilon: *epsilon,
                columns,
                arms,
            })
        }
        PolicySpec::LinTs { .. } => Err(OpeError::Policy(format!(
            "{name}: LinTS campaigns cannot be evaluated yet (their probabilities need Monte Carlo per decision); evaluate its LinUCB twin"
        ))),
    }
}

fn singular() -> OpeError {
    OpeError::NoEstimate(
        "the LinUCB ridge system is not positive definite (context values too large?)".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::{ArmSpec, Pooling};
    use crate::ope::read::LogFormat;

    fn spec(arms: &[&str], policy: PolicySpec) -> CampaignSpec {
        CampaignSpec {
            id: "c".into(),
            arms: arms
                .iter()
                .map(|a| ArmSpec {
                    id: a.to_string(),
                    retired: false,
                    ..ArmSpec::default()
                })
                .collect(),
            policy,
            reward_timeout_seconds: 60,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        }
    }

    /// Two segments, uniform logging over arms a and b: in "x" a converts
    /// 60% and b 10%, in "y" the reverse; context x1 = 1 in "x", -1 in "y".
    fn log() -> Log {
        let mut events = Vec::new();
        for t in 0..2000usize {
            // Neither the segment nor the arm follows the folds' parity.
            let segment = (t / 2) % 2;
            let action = (t / 4) % 2;
            let good = (segment == 0) == (action == 0);
            let rate = if good { 6 } else { 1 };
            events.push(LoggedEvent {
                action,
                position: 0,
                reward: if (t / 8) % 10 < rate { 1.0 } else { 0.0 },
                pscore: 0.5,
                context: vec![if segment == 0 { 1.0 } else { -1.0 }],
                timestamp_ms: None,
                logged_probs: None,
                segment,
            });
        }
        Log {
            events,
            actions: vec!["a".into(), "b".into()],
            positions: 1,
            context_names: vec!["x1".into()],
            segments: vec!["x".into(), "y".into()],
            source: "test".into(),
            format: LogFormat::Banditd,
        }
    }

    fn thompson(floor: f64) -> PolicySpec {
        PolicySpec::Thompson {
            prior_alpha: 1.0,
            prior_beta: 1.0,
            pooling: Pooling::Off,
            exploration_floor: floor,
        }
    }

    // Fitted Thompson plays each segment's better arm, down to its floor.
    #[test]
    fn thompson_candidate_learns_each_segment_and_keeps_its_floor() {
        let log = log();
        let p = CampaignPolicy::fit(&log, &spec(&["a", "b"], thompson(0.05)), "t".into())
            .unwrap_or_else(|e| panic!("{e}"));
        let (x, y) = (p.distribution(&log, 0), p.distribution(&log, 2));
        assert_eq!((log.events[0].segment, log.events[2].segment), (0, 1));
        assert!(
            (x[0] - 0.95).abs() < 1e-9 && (x[1] - 0.05).abs() < 1e-9,
            "{x:?}"
        );
        assert!((y[1] - 0.95).abs() < 1e-9, "{y:?}");
        // The estimate of its value is near the better arm's 60%.
        let report = crate::ope::evaluate(&log, &p, &crate::ope::EvalOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            (report.ips.value - 0.575).abs() < 0.05,
            "{}",
            report.ips.value
        );
    }

    // The campaign-wide segment learns from every segment's outcomes, as in
    // the engine: with "" standing for the unsegmented traffic it plays the
    // arm best overall, not the one best among its own few events.
    #[test]
    fn the_unnamed_segment_learns_from_all_segments() {
        let mut log = log();
        log.segments = vec!["x".into(), String::new()];
        let ucb = spec(&["a", "b"], thompson(0.0));
        let p = CampaignPolicy::fit(&log, &ucb, "t".into()).unwrap_or_else(|e| panic!("{e}"));
        // Overall a and b convert alike (60% in one segment, 10% in the
        // other): the unnamed segment is near even, not b-heavy.
        let d = p.distribution(&log, 2);
        assert_eq!(log.events[2].segment, 1);
        assert!((d[0] - 0.5).abs() < 0.35, "{d:?}");
        assert!(d[1] < 0.9, "{d:?}");
    }

    // Each fold is scored by the fit on the other: a single lucky event
    // cannot make the candidate prefer its arm at that event.
    #[test]
    fn the_fit_is_cross_fitted() {
        let mut log = log();
        log.events.truncate(4);
        // All in segment x; event 0 (arm a) is the only success.
        for (t, e) in log.events.iter_mut().enumerate() {
            e.segment = 0;
            e.action = [0, 1, 1, 0][t];
            e.reward = if t == 0 { 1.0 } else { 0.0 };
        }
        let p = CampaignPolicy::fit(&log, &spec(&["a", "b"], thompson(0.0)), "t".into())
            .unwrap_or_else(|e| panic!("{e}"));
        // The odd fold (events 1, 3: segment y) saw no success in x: even.
        let d = p.distribution(&log, 0);
        assert!((d[0] - 0.5).abs() < 1e-9, "{d:?}");
        // The whole-log fit has seen it.
        assert!(p.prob(&log, &log.events[0], 0) > 0.6);
    }

    #[test]
    fn linucb_candidate_uses_the_context() {
        let log = log();
        let linucb = PolicySpec::LinUcb {
            alpha: 0.1,
            lambda: 1.0,
            epsilon: 0.1,
            features: vec!["x1".into()],
            missing_zero: false,
        };
        let p = CampaignPolicy::fit(&log, &spec(&["a", "b"], linucb), "l".into())
            .unwrap_or_else(|e| panic!("{e}"));
        let close =
            |a: Vec<f64>, b: [f64; 2]| (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9;
        assert!(close(p.distribution(&log, 0), [0.95, 0.05]));
        assert!(close(p.distribution(&log, 2), [0.05, 0.95]));
        let bad = PolicySpec::LinUcb {
            alpha: 0.1,
            lambda: 1.0,
            epsilon: 0.1,
            features: vec!["age".into()],
            missing_zero: false,
        };
        let e = CampaignPolicy::fit(&log, &spec(&["a", "b"], bad), "l".into()).err();
        assert!(e.is_some_and(|e| e.to_string().contains("`age`")));
    }

    #[test]
    fn what_the_log_cannot_answer_is_an_error() {
        let log = log();
        let e = CampaignPolicy::fit(&log, &spec(&["a", "zzz"], PolicySpec::Uniform), "u".into())
            .err()
            .map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("`zzz`")), "{e:?}");
        // An arm the candidate leaves out gets probability 0.
        let p = CampaignPolicy::fit(&log, &spec(&["b"], PolicySpec::Uniform), "u".into())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.distribution(&log, 0), vec![0.0, 1.0]);
        let lints = PolicySpec::LinTs {
            scale: 1.0,
            lambda: 1.0,
            epsilon: 0.0,
            features: vec!["x1".into()],
            missing_zero: false,
        };
        assert!(CampaignPolicy::fit(&log, &spec(&["a", "b"], lints), "l".into()).is_err());
    }
}
