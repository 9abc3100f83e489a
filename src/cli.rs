//! Operator subcommands: talk to a running daemon over its gRPC API and print
//! readable output. Campaign files (TOML) are parsed and checked here, with
//! unknown keys rejected, then sent as a `CreateCampaign` request; the daemon
//! does the full validation.

use crate::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use crate::client::{Conn, Connect, ConnectError};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// A client-side failure, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("cannot connect to {target}: {source} (is `banditd serve` running?)")]
    Connect {
        target: String,
        source: tonic::transport::Error,
    },
    #[error("the daemon's answer does not fit: {0}")]
    Protocol(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the daemon answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// A campaign file. Unknown keys are errors, so a typo never passes silently.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    pub id: String,
    /// Each arm: its id, or a table `{ id, value, max_impressions,
    /// max_conversions, cap_period }` (checked by [`Self::parse`]).
    pub arms: Vec<toml::Value>,
    /// The arms, parsed.
    #[serde(skip)]
    parsed_arms: Vec<pb::Arm>,
    /// Share of decisions held out (uniform, not learned from).
    #[serde(default)]
    pub holdout_fraction: f64,
    #[serde(default)]
    pub reward_timeout_seconds: u32,
    #[serde(default)]
    pub default_reward: f64,
    /// Older evidence counts less; halves every this many seconds.
    pub decay_half_life_seconds: Option<u32>,
    pub policy: Option<PolicyFile>,
}

/// The `[policy]` table of a campaign file.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyFile {
    Thompson {
        #[serde(default)]
        prior_alpha: f64,
        #[serde(default)]
        prior_beta: f64,
        segment_prior_strength: Option<f64>,
        exploration_floor: Option<f64>,
    },
    Uniform {},
    EpsilonGreedy {
        epsilon: Option<f64>,
    },
    Linucb {
        #[serde(default)]
        alpha: f64,
        #[serde(default)]
        lambda: f64,
        #[serde(default)]
        epsilon: f64,
        features: Vec<String>,
        #[serde(default)]
        missing: MissingFile,
    },
    Lints {
        #[serde(default)]
        exploration: f64,
        #[serde(default)]
        lambda: f64,
        #[serde(default)]
        epsilon: f64,
        features: Vec<String>,
        #[serde(default)]
        missing: MissingFile,
    },
}

/// An arm given as a table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmTable {
    id: String,
    #[serde(default)]
    value: f64,
    #[serde(default)]
    max_impressions: u64,
    #[serde(default)]
    max_conversions: u64,
    #[serde(default)]
    cap_period: CapPeriodFile,
}

/// `cap_period = "lifetime"` (default) or `"day"`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CapPeriodFile {
    #[default]
    Lifetime,
    Day,
}

/// `missing = "reject"` (default) or `"zero"`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingFile {
    #[default]
    Reject,
    Zero,
}

impl MissingFile {
    fn wire(&self) -> i32 {
        match self {
            MissingFile::Reject => pb::MissingFeature::Reject as i32,
            MissingFile::Zero => pb::MissingFeature::Zero as i32,
        }
    }
}

impl CampaignFile {
    /// Parses a campaign file; errors name the file, line and field.
    pub fn parse(path: &str, text: &str) -> Result<Self, CliError> {
        let bad = |message: String| CliError::Parse {
            path: path.to_string(),
            message,
        };
        let mut file: CampaignFile =
            toml::from_str(text).map_err(|e| bad(e.to_string().trim_end().to_string()))?;
        for (i, a) in file.arms.iter().enumerate() {
            let arm = match a {
                toml::Value::String(id) => pb::Arm {
                    id: id.clone(),
                    ..Default::default()
                },
                toml::Value::Table(_) => {
                    let t = ArmTable::deserialize(a.clone())
                        .map_err(|e| bad(format!("arms[{i}]: {}", e.to_string().trim_end())))?;
                    pb::Arm {
                        id: t.id,
                        retired: false,
                        value: t.value,
                        max_impressions: t.max_impressions,
                        max_conversions: t.max_conversions,
                        cap_period: match t.cap_period {
                            CapPeriodFile::Lifetime => pb::CapPeriod::Lifetime as i32,
                            CapPeriodFile::Day => pb::CapPeriod::Day as i32,
                        },
                    }
                }
                other => {
                    return Err(bad(format!(
                    "arms[{i}]: expected an id or a table {{ id = ..., value = ... }}, found {}",
                    other.type_str()
                )))
                }
            };
            file.parsed_arms.push(arm);
        }
        Ok(file)
    }

    pub fn into_wire(self) -> pb::Campaign {
        let policy = match self.policy {
            None => None,
            Some(PolicyFile::Thompson {
                prior_alpha,
                prior_beta,
                segment_prior_strength,
                exploration_floor,
            }) => Some(pb::campaign::Policy::Thompson(pb::ThompsonSampling {
                prior_alpha,
                prior_beta,
                segment_prior_strength,
                exploration_floor,
            })),
            Some(PolicyFile::Uniform {}) => {
                Some(pb::campaign::Policy::Uniform(pb::UniformSplit {}))
            }
            Some(PolicyFile::EpsilonGreedy { epsilon }) => {
                Some(pb::campaign::Policy::EpsilonGreedy(pb::EpsilonGreedy {
                    epsilon,
                }))
            }
            Some(PolicyFile::Linucb {
                alpha,
                lambda,
                epsilon,
                features,
                missing,
            }) => Some(pb::campaign::Policy::Linucb(pb::LinUcb {
                alpha,
                features,
                lambda,
                epsilon,
                missing: missing.wire(),
            })),
            Some(PolicyFile::Lints {
                exploration,
                lambda,
                epsilon,
                features,
                missing,
            }) => Some(pb::campaign::Policy::Lints(pb::LinTs {
                features,
                lambda,
                exploration,
                epsilon,
                missing: missing.wire(),
            })),
        };
        pb::Campaign {
            id: self.id,
            arms: self.parsed_arms,
            policy,
            reward_timeout_seconds: self.reward_timeout_seconds,
            default_reward: self.default_reward,
            decay_half_life_seconds: self.decay_half_life_seconds,
            holdout_fraction: self.holdout_fraction,
        }
    }
}

async fn channel(target: &Connect) -> Result<Conn, CliError> {
    target.connect().await.map_err(|e| match e {
        ConnectError::Usage { setting, message } => CliError::Parse {
            path: setting.into(),
            message,
        },
        ConnectError::Unreachable { target, source } => CliError::Connect { target, source },
    })
}

/// `banditd campaign create FILE`.
pub async fn create_campaign(target: &Connect, file: &Path) -> Result<String, CliError> {
    let path = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    let campaign = CampaignFile::parse(&path, &text)?.into_wire();
    let mut client = CampaignsClient::new(channel(target).await?);
    let created = client
        .create_campaign(pb::CreateCampaignRequest {
            campaign: Some(campaign),
        })
        .await?
        .into_inner();
    Ok(format!(
        "created campaign {}\n{}",
        created.id,
        describe(&created)
    ))
}

pub async fn list_campaigns(target: &Connect) -> Result<String, CliError> {
    let mut client = CampaignsClient::new(channel(target).await?);
    let list = client
        .list_campaigns(pb::ListCampaignsRequest {})
        .await?
        .into_inner();
    let mut out = format!(
        "{:<32} {:<10} {:>5} {:>9}\n",
        "CAMPAIGN", "POLICY", "ARMS", "TIMEOUT"
    );
    for c in &list.campaigns {
        let active = c.arms.iter().filter(|a| !a.retired).count();
        let _ = writeln!(
            out,
            "{:<32} {:<10} {:>5} {:>8}s",
            c.id,
            policy_name(c),
            active,
            c.reward_timeout_seconds
        );
    }
    Ok(out)
}

pub async fn show_campaign(target: &Connect, id: &str) -> Result<String, CliError> {
    let mut client = CampaignsClient::new(channel(target).await?);
    let c = client
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: id.to_string(),
        })
        .await?
        .into_inner();
    Ok(describe(&c))
}

pub async fn delete_campaign(target: &Connect, id: &str) -> Result<String, CliError> {
    let mut client = CampaignsClient::new(channel(target).await?);
    client
        .delete_campaign(pb::DeleteCampaignRequest {
            campaign_id: id.to_string(),
        })
        .await?;
    Ok(format!("deleted campaign {id}\n"))
}

pub async fn stats(target: &Connect, id: &str, segment: &str) -> Result<String, CliError> {
    let mut client = CampaignsClient::new(channel(target).await?);
    let s = client
        .get_stats(pb::GetStatsRequest {
            campaign_id: id.to_string(),
            segment: segment.to_string(),
        })
        .await?
        .into_inner();
    Ok(stats_table(&s))
}

pub async fn choose(
    target: &Connect,
    id: &str,
    segment: &str,
    decision_id: &str,
    context: &[String],
    count: u32,
) -> Result<String, CliError> {
    let context = parse_context(context)?;
    let mut client = BanditClient::new(channel(target).await?);
    let r = client
        .choose(pb::ChooseRequest {
            campaign_id: id.to_string(),
            segment: segment.to_string(),
            context,
            decision_id: decision_id.to_string(),
            count,
        })
        .await?
        .into_inner();
    Ok(choice_text(&r))
}

/// What `banditd choose` prints: the decision, and a slate slot by slot.
fn choice_text(r: &pb::ChooseResponse) -> String {
    let mut out = format!("decision_id {}\n", r.decision_id);
    if r.slate.len() > 1 {
        out.push_str("slot  arm_id                propensity\n");
        for (i, s) in r.slate.iter().enumerate() {
            out.push_str(&format!("{i:<5} {:<21} {:.4}\n", s.arm_id, s.propensity));
        }
    } else {
        out.push_str(&format!(
            "arm_id      {}\npropensity  {:.4}\n",
            r.arm_id, r.propensity
        ));
    }
    if r.holdout {
        out.push_str("holdout     yes (chosen uniformly; its outcome is not learned)\n");
    }
    out
}

pub async fn reward(
    target: &Connect,
    decision_id: &str,
    slot: u32,
    value: f64,
) -> Result<String, CliError> {
    let mut client = BanditClient::new(channel(target).await?);
    let r = client
        .reward(pb::RewardRequest {
            decision_id: decision_id.to_string(),
            value,
            slot,
        })
        .await?
        .into_inner();
    Ok(if r.duplicate {
        "duplicate: this decision was already rewarded; nothing changed\n".to_string()
    } else {
        "reward learned\n".to_string()
    })
}

/// How `banditd log export` writes the decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Vowpal Wabbit's DSJSON, as `banditd evaluate --log-format banditd` reads it.
    Dsjson,
    /// Open Bandit Pipeline's CSV.
    Csv,
}

/// `banditd log export CAMPAIGN`: streams the campaign's decision log from
/// the daemon into `out` (stdout when `None`). `since` / `until` are RFC 3339
/// times or ages such as `7d`, `36h`, `90m` (before `now_ms`).
pub async fn export_log(
    target: &Connect,
    campaign_id: &str,
    format: ExportFormat,
    since: Option<&str>,
    until: Option<&str>,
    out: Option<&Path>,
    now_ms: u64,
) -> Result<String, CliError> {
    use crate::api::convert::{export_record, timestamp};
    use crate::engine::ExportHeader;
    use crate::ope::write::{dsjson_line, CsvWriter};
    use std::io::Write as _;

    let since = since
        .map(|t| parse_time(t, now_ms, "--since"))
        .transpose()?;
    let until = until
        .map(|t| parse_time(t, now_ms, "--until"))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(CliError::Parse {
                path: "--until".into(),
                message: "is before --since".into(),
            });
        }
    }
    let out_name = out.map_or("standard output".to_string(), |p| p.display().to_string());
    let write_err = |source: std::io::Error| CliError::Write {
        path: out_name.clone(),
        source,
    };
    let mut client = CampaignsClient::new(channel(target).await?);
    // By default the export ends one reward timeout (and a minute) ago:
    // later decisions may still convert, and leaving out only the ones that
    // have not would bias every estimate up.
    let until = match until {
        Some(u) => u,
        None => {
            let c = client
                .get_campaign(pb::GetCampaignRequest {
                    campaign_id: campaign_id.to_string(),
                })
                .await?
                .into_inner();
            let settle = u64::from(c.reward_timeout_seconds) * 1000 + 60_000;
            let u = now_ms.saturating_sub(settle);
            if since.is_some_and(|s| s > u) {
                return Err(CliError::Parse {
                    path: "--since".into(),
                    message: format!(
                        "is after the default --until, the campaign's reward timeout ({} s) and a minute ago: \
                         later decisions may still convert; give --until to export them anyway",
                        c.reward_timeout_seconds
                    ),
                });
            }
            u
        }
    };
    let mut stream = client
        .export_decisions(pb::ExportDecisionsRequest {
            campaign_id: campaign_id.to_string(),
            since: since.map(timestamp),
            until: Some(timestamp(until)),
            include_pending: true,
        })
        .await?
        .into_inner();
    // Written next to the destination and renamed at the end, so a failed
    // export never leaves half a file under the name asked for.
    let (sink, partial): (Box<dyn std::io::Write>, Option<std::path::PathBuf>) = match out {
        Some(p) => {
            let mut tmp = p.as_os_str().to_owned();
            tmp.push(".partial");
            let tmp = std::path::PathBuf::from(tmp);
            let f = std::fs::File::create(&tmp).map_err(&write_err)?;
            (Box::new(std::io::BufWriter::new(f)), Some(tmp))
        }
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            None,
        ),
    };
    enum Sink {
        Dsjson(Box<dyn std::io::Write>),
        Csv(CsvWriter<Box<dyn std::io::Write>>),
    }
    let mut sink = match format {
        ExportFormat::Dsjson => Sink::Dsjson(sink),
        ExportFormat::Csv => Sink::Csv(CsvWriter::new(sink)),
    };
    let mut n = 0u64;
    let mut rewarded = 0u64;
    let mut pending = 0u64;
    let mut header: Option<ExportHeader> = None;
    let streamed: Result<(), CliError> = async {
        while let Some(msg) = stream.message().await? {
            let h = ExportHeader::from(&msg);
            for d in msg.decisions {
                let r = export_record(&h, d).map_err(CliError::Protocol)?;
                if r.outcome == crate::engine::ExportOutcome::Pending {
                    // Not an outcome: a log line would read it as a loss.
                    pending += 1;
                    continue;
                }
                n += 1;
                rewarded += u64::from(matches!(
                    r.outcome,
                    crate::engine::ExportOutcome::Rewarded { .. }
                ));
                match &mut sink {
                    Sink::Dsjson(w) => writeln!(w, "{}", dsjson_line(&h, &r)),
                    Sink::Csv(w) => w.write(&h, &r),
                }
                .map_err(&write_err)?;
            }
            header = Some(h);
        }
        Ok(())
    }
    .await;
    let done = streamed.and_then(|()| {
        match sink {
            Sink::Dsjson(mut w) => w.flush(),
            Sink::Csv(w) => {
                let h = header.unwrap_or_else(|| ExportHeader {
                    campaign_id: campaign_id.to_string(),
                    arms: Vec::new(),
                    features: Vec::new(),
                });
                w.finish(&h).map(drop)
            }
        }
        .map_err(&write_err)
    });
    let done = match (&partial, out) {
        (Some(tmp), Some(p)) => {
            let done = done.and_then(|()| std::fs::rename(tmp, p).map_err(&write_err));
            if done.is_err() {
                let _ = std::fs::remove_file(tmp);
            }
            done
        }
        _ => done,
    };
    done?;
    let mut summary = format!(
        "exported {n} decisions of campaign {campaign_id} made up to {} ({rewarded} rewarded, {} at the default reward) to {out_name}\n",
        crate::ope::write::format_rfc3339_ms(until),
        n - rewarded
    );
    if pending > 0 {
        summary +=
            &format!("left out {pending} decisions in the range whose outcome is not known yet\n");
    }
    if out.is_none() {
        eprint!("{summary}");
        return Ok(String::new());
    }
    Ok(summary)
}

/// An RFC 3339 time, or an age (`7d`, `36h`, `90m`, `45s`) before `now_ms`.
pub fn parse_time(text: &str, now_ms: u64, flag: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::Parse {
        path: flag.into(),
        message: format!(
            "{text:?} is neither an RFC 3339 time (2026-11-24T00:00:00Z) nor an age such as 7d, 36h, 90m"
        ),
    }
    };
    if let Some(ms) = crate::ope::read::parse_rfc3339_ms(text) {
        return Ok(ms);
    }
    let unit = match text.chars().last() {
        Some('d') => 86_400_000,
        Some('h') => 3_600_000,
        Some('m') => 60_000,
        Some('s') => 1000,
        _ => return Err(bad()),
    };
    let n: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    n.checked_mul(unit)
        .map(|age| now_ms.saturating_sub(age))
        .ok_or_else(bad)
}

/// `name=value` pairs from `--context`.
fn parse_context(pairs: &[String]) -> Result<HashMap<String, f64>, CliError> {
    pairs
        .iter()
        .map(|p| {
            let bad = |why: &str| CliError::Parse {
                path: "--context".into(),
                message: format!("{p:?}: {why} (expected name=value, e.g. recency_days=12)"),
            };
            let (name, value) = p.split_once('=').ok_or_else(|| bad("no '='"))?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| bad("the value is not a number"))?;
            Ok((name.trim().to_string(), value))
        })
        .collect()
}

fn policy_name(c: &pb::Campaign) -> &'static str {
    match c.policy {
        Some(pb::campaign::Policy::Thompson(_)) => "thompson",
        Some(pb::campaign::Policy::Linucb(_)) => "linucb",
        Some(pb::campaign::Policy::Uniform(_)) => "uniform",
        Some(pb::campaign::Policy::EpsilonGreedy(_)) => "epsilon_greedy",
        Some(pb::campaign::Policy::Lints(_)) => "lints",
        None => "-",
    }
}

/// How a contextual campaign treats a feature a request leaves out.
fn missing_features(missing: i32) -> &'static str {
    if missing == pb::MissingFeature::Zero as i32 {
        "count as 0"
    } else {
        "are rejected"
    }
}

fn describe(c: &pb::Campaign) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id              {}", c.id);
    let _ = writeln!(out, "policy          {}", policy_name(c));
    if let Some(pb::campaign::Policy::Thompson(t)) = &c.policy {
        let pooling = match t.segment_prior_strength {
            None => "an empirical-Bayes prior from the other segments".to_string(),
            Some(0.0) => "nothing (no pooling)".to_string(),
            Some(s) => format!("up to {s} observations"),
        };
        let _ = writeln!(
            out,
            "prior           Beta({}, {}); segments borrow {pooling}",
            t.prior_alpha, t.prior_beta,
        );
        let _ = writeln!(
            out,
            "floor           every active arm has probability at least {}",
            t.exploration_floor.unwrap_or_default()
        );
    }
    if let Some(pb::campaign::Policy::EpsilonGreedy(e)) = &c.policy {
        let _ = writeln!(
            out,
            "epsilon         {} (explores that share of decisions at random)",
            e.epsilon.unwrap_or_default()
        );
    }
    if let Some(pb::campaign::Policy::Linucb(l)) = &c.policy {
        let missing = missing_features(l.missing);
        let _ = writeln!(
            out,
            "linucb          alpha {}, lambda {}, epsilon {}; missing features {missing}",
            l.alpha, l.lambda, l.epsilon
        );
        let _ = writeln!(out, "features        intercept + {}", l.features.join(", "));
    }
    if let Some(pb::campaign::Policy::Lints(l)) = &c.policy {
        let missing = missing_features(l.missing);
        let _ = writeln!(
            out,
            "lints           exploration {}, lambda {}, epsilon {}; missing features {missing}",
            l.exploration, l.lambda, l.epsilon
        );
        let _ = writeln!(out, "features        intercept + {}", l.features.join(", "));
    }
    if let Some(h) = c.decay_half_life_seconds {
        let _ = writeln!(out, "decay           evidence halves every {h} s");
    }
    let _ = writeln!(
        out,
        "reward timeout  {}s (then default reward {})",
        c.reward_timeout_seconds, c.default_reward
    );
    let arms: Vec<String> = c
        .arms
        .iter()
        .map(|a| {
            let mut extras = Vec::new();
            if a.value != 1.0 && a.value != 0.0 {
                extras.push(format!("value {}", a.value));
            }
            let per = if a.cap_period == pb::CapPeriod::Day as i32 {
                "/day, paced"
            } else {
                ""
            };
            if a.max_impressions > 0 {
                extras.push(format!("max {} impressions{per}", a.max_impressions));
            }
            if a.max_conversions > 0 {
                let per = if per.is_empty() { "" } else { "/day" };
                extras.push(format!("max {} conversions{per}", a.max_conversions));
            }
            if a.retired {
                extras.push("retired".into());
            }
            if extras.is_empty() {
                a.id.clone()
            } else {
                format!("{} ({})", a.id, extras.join(", "))
            }
        })
        .collect();
    let _ = writeln!(out, "arms            {}", arms.join(", "));
    if c.holdout_fraction > 0.0 {
        let _ = writeln!(
            out,
            "holdout         {:.1}% of decisions (uniform, not learned from)",
            100.0 * c.holdout_fraction
        );
    }
    out
}

/// How a report names a segment ("" is the campaign-wide aggregate).
fn segment_label(segment: &str) -> &str {
    if segment.is_empty() {
        "(all segments)"
    } else {
        segment
    }
}

/// A readable per-segment table.
pub fn stats_table(s: &pb::GetStatsResponse) -> String {
    let mut out = format!("campaign {}\n", s.campaign_id);
    let contextual = s
        .segments
        .first()
        .is_some_and(|g| g.arms.iter().any(|a| !a.theta.is_empty()));
    if contextual {
        return linear_table(s, out);
    }
    let valued = s
        .segments
        .iter()
        .flat_map(|g| &g.arms)
        .any(|a| a.value != 1.0 && a.value != 0.0);
    let capped = s
        .segments
        .iter()
        .flat_map(|g| &g.arms)
        .any(|a| a.capped || a.period_impressions > 0 || a.period_conversions > 0);
    for seg in &s.segments {
        let name = segment_label(&seg.segment);
        let _ = writeln!(out, "\nsegment {name}");
        let mut head = format!(
            "  {:<24} {:>9} {:>8} {:>11} {:>8} {:>19} {:>8}",
            "ARM", "PULLS", "PENDING", "REWARD_SUM", "MEAN", "95% INTERVAL", "P(BEST)"
        );
        if valued {
            let _ = write!(head, " {:>10} {:>12}", "VALUE", "VALUE/DECISION");
        }
        if capped {
            let _ = write!(head, "  {:<24}", "CAP PERIOD: IMPR / CONV");
        }
        let _ = writeln!(out, "{}", head.trim_end());
        for a in &seg.arms {
            let id = if a.retired {
                format!("{} (retired)", a.arm_id)
            } else {
                a.arm_id.clone()
            };
            let mut line = format!(
                "  {:<24} {:>9} {:>8} {:>11.2} {:>7.2}% {:>8.2}% – {:>6.2}% {:>7.1}%",
                id,
                a.pulls,
                a.pending,
                a.reward_sum,
                100.0 * a.mean,
                100.0 * a.ci_low,
                100.0 * a.ci_high,
                100.0 * a.prob_best
            );
            if valued {
                let _ = write!(line, " {:>10.2} {:>14.4}", a.value, a.expected_value);
            }
            if capped && seg.segment.is_empty() {
                let _ = write!(
                    line,
                    "  {} / {}{}",
                    a.period_impressions,
                    a.period_conversions,
                    if a.capped { "  CAPPED" } else { "" }
                );
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        if let Some(u) = &seg.uplift {
            let _ = writeln!(out, "{}", uplift_line(u));
        }
    }
    out
}

/// The policy against the holdout, in one line.
pub fn uplift_line(u: &pb::Uplift) -> String {
    let interval = if u.ci_low.is_finite() && u.ci_high.is_finite() {
        format!("95% interval {:+.3} to {:+.3}", u.ci_low, u.ci_high)
    } else {
        "95% interval not yet known (fewer than 2 outcomes on a side)".to_string()
    };
    format!(
        "  uplift over the holdout: {:+.4} per decision ({:+.1}%), {interval}; policy {:.4} over {} decisions, holdout {:.4} over {}",
        u.uplift,
        100.0 * u.relative_uplift,
        u.policy_mean,
        u.policy_decisions,
        u.holdout_mean,
        u.holdout_decisions
    )
}

/// Stats of a contextual campaign: tallies per segment, then θ per arm.
fn linear_table(s: &pb::GetStatsResponse, mut out: String) -> String {
    for seg in &s.segments {
        let name = segment_label(&seg.segment);
        let _ = writeln!(out, "\nsegment {name}");
        let _ = writeln!(
            out,
            "  {:<24} {:>9} {:>8} {:>11} {:>10}",
            "ARM", "PULLS", "PENDING", "REWARD_SUM", "MEAN"
        );
        for a in &seg.arms {
            let id = if a.retired {
                format!("{} (retired)", a.arm_id)
            } else {
                a.arm_id.clone()
            };
            let _ = writeln!(
                out,
                "  {:<24} {:>9} {:>8} {:>11.2} {:>10.4}",
                id, a.pulls, a.pending, a.reward_sum, a.mean
            );
        }
    }
    if let Some(all) = s.segments.first() {
        let _ = writeln!(
            out,
            "\nθ per arm (ridge estimate; bonus = exploration bonus at the average customer)"
        );
        for a in &all.arms {
            let weights: Vec<String> = a
                .theta
                .iter()
                .map(|w| format!("{}={:+.4}", w.feature, w.weight))
                .collect();
            let _ = writeln!(
                out,
                "  {:<24} bonus {:.4}  {}",
                a.arm_id,
                a.exploration_bonus,
                weights.join(" ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every shipped campaign file parses.
    #[test]
    fn shipped_campaign_files_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/campaigns");
        let candidates = concat!(env!("CARGO_MANIFEST_DIR"), "/campaigns/candidates");
        let mut n = 0;
        let entries = [dir, candidates]
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten());
        for entry in entries.filter(|e| e.path().is_file()) {
            let path = entry.path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let parsed = CampaignFile::parse(&path.display().to_string(), &text);
            assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
            n += 1;
        }
        assert!(n >= 4, "expected example campaign files in {dir}");
    }

    // Arms may be ids or tables with a value and caps; a bad table is an
    // error naming the arm and the key.
    #[test]
    fn arm_tables_carry_value_and_caps() {
        let text = "id = \"x\"\nholdout_fraction = 0.1\narms = [\"a\", { id = \"b\", value = 2.5, max_impressions = 10, cap_period = \"day\" }]\n";
        let wire = CampaignFile::parse("x.toml", text)
            .expect("parses")
            .into_wire();
        assert_eq!(wire.holdout_fraction, 0.1);
        assert_eq!(wire.arms[0].id, "a");
        assert_eq!(wire.arms[0].value, 0.0, "0 means 1 on the wire");
        let b = &wire.arms[1];
        assert_eq!((b.value, b.max_impressions), (2.5, 10));
        assert_eq!(b.cap_period, pb::CapPeriod::Day as i32);
        for (bad, names) in [
            ("arms = [{ id = \"b\", valeu = 2.0 }]", "arms[0]"),
            (
                "arms = [\"a\", { id = \"b\", cap_period = \"week\" }]",
                "arms[1]",
            ),
            ("arms = [\"a\", 3]", "arms[1]"),
        ] {
            let err = CampaignFile::parse("x.toml", &format!("id = \"x\"\n{bad}\n"))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains(names) && err.starts_with("x.toml"), "{err}");
        }
    }

    // An unknown policy parameter is an error naming the key, not ignored.
    #[test]
    fn unknown_policy_parameter_is_rejected() {
        let text = "id = \"x\"\narms = [\"a\"]\n[policy]\nkind = \"thompson\"\nprior_alfa = 2.0\n";
        let err = CampaignFile::parse("x.toml", text)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("prior_alfa"), "{err}");
    }
}
