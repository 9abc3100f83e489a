//! Command line → validated configuration.
//!
//! Flags are parsed into raw arguments by clap (each also settable from a
//! `BANDITD_*` environment variable), then validated into a ready-to-use
//! [`ServeConfig`] before anything runs: a bad setting fails before any port
//! is bound, with a message naming the setting (exit code 64).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Exit code for a bad configuration or usage (EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "banditd",
    version,
    about = "A decision daemon for marketing campaigns: Thompson sampling per segment, persisted in sled, served over gRPC."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Manage campaigns on a running daemon.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Print a campaign's per-segment statistics as a table.
    Stats {
        campaign_id: String,
        /// Only this segment.
        #[arg(long, default_value = "")]
        segment: String,
        #[command(flatten)]
        target: Target,
    },
    /// Ask a running daemon for a decision (for trying things out).
    Choose {
        campaign_id: String,
        #[arg(long, default_value = "")]
        segment: String,
        /// Caller-chosen decision id (idempotency key).
        #[arg(long, default_value = "")]
        decision_id: String,
        /// A context feature for contextual campaigns, as name=value (repeatable).
        #[arg(long = "context", value_name = "NAME=VALUE")]
        context: Vec<String>,
        /// Slots to fill: a ranked slate of this many distinct arms (at most 16).
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Report the outcome of a decision to a running daemon.
    Reward {
        decision_id: String,
        value: f64,
        /// The slot of the decision's slate the reward is for (0: the first).
        #[arg(long, default_value_t = 0)]
        slot: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Simulate a campaign scenario offline and compare strategies (see simulations/README.md).
    Simulate(SimulateArgs),
    /// Access tokens for --tokens-file.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check a data directory's invariants offline (no daemon may be using it).
    Check {
        /// The daemon's data directory.
        #[arg(long, env = "BANDITD_DATA_DIR", default_value = "./banditd-data")]
        data_dir: PathBuf,
    },
    /// Read a campaign's decision log from a running daemon.
    #[command(subcommand)]
    Log(LogCommand),
    /// Estimate from a decision log what another policy would have earned
    /// (off-policy evaluation: IPS, SNIPS, doubly robust).
    Evaluate(EvaluateArgs),
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Write a campaign's logged decisions and their outcomes to a file, for
    /// `banditd evaluate`, Vowpal Wabbit or Open Bandit Pipeline.
    Export {
        campaign_id: String,
        /// dsjson (Vowpal Wabbit's format; `banditd evaluate` reads it) or csv
        /// (Open Bandit Pipeline's conventions).
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Dsjson)]
        format: ExportFormatArg,
        /// Decisions made at or after this: an RFC 3339 time
        /// (2026-11-24T00:00:00Z) or an age (7d, 36h, 90m). Default: the oldest kept.
        #[arg(long)]
        since: Option<String>,
        /// Decisions made at or before this (same forms). Default: now.
        #[arg(long)]
        until: Option<String>,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
}

/// `log export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    Dsjson,
    Csv,
}

/// `evaluate` flags.
#[derive(Debug, Args, Clone)]
#[command(group(clap::ArgGroup::new("candidate").required(true).args(["policy", "policy_dist"])))]
pub struct EvaluateArgs {
    /// The decision log: banditd's DSJSON export, or an Open Bandit Pipeline CSV.
    #[arg(long)]
    pub log: PathBuf,
    /// How the log is written.
    #[arg(long, value_enum, default_value_t = EvalLogFormat::Banditd)]
    pub log_format: EvalLogFormat,
    /// The policy to evaluate: `uniform`, `fixed:ARM` (always that arm), or
    /// `campaign:FILE.toml` (that campaign file's policy, fitted on the log
    /// cross-fold and then held fixed).
    #[arg(long)]
    pub policy: Option<String>,
    /// The policy to evaluate as a CSV `action,position,prob` (the same for every decision).
    #[arg(long)]
    pub policy_dist: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ridge penalty of the doubly robust estimator's reward model.
    #[arg(long, default_value_t = 1.0)]
    pub ridge_lambda: f64,
}

/// `evaluate --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalLogFormat {
    /// banditd's DSJSON export (`banditd log export --format dsjson`).
    Banditd,
    /// Open Bandit Pipeline's CSV: action, position, reward, pscore, context columns.
    ObpCsv,
}

/// `simulate` flags.
#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Independent runs (different customers each); intervals and percentiles are across runs.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Seed: the same seed gives the same results.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder (default ./sim-out/<scenario name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Comma-separated strategies: ab_test, ab_sequential, test_and_roll, ab_segment, uniform, thompson, thompson_segment, linucb, epsilon_greedy, oracle (default: all that apply).
    #[arg(long)]
    pub strategies: Option<String>,
    /// Minimum detectable effect of the A/B tests, as a relative lift over the baseline rate.
    #[arg(long, default_value_t = 0.10)]
    pub mde: f64,
    /// Looks of the group-sequential A/B tests (overrides the scenario's [ab] looks).
    #[arg(long)]
    pub looks: Option<usize>,
    /// Override the scenario's days.
    #[arg(long)]
    pub days: Option<u32>,
    /// Override the scenario's customers per day.
    #[arg(long)]
    pub customers_per_day: Option<u64>,
    /// Override the scenario's attribution window (the campaigns' reward
    /// timeout), in minutes: what a 1-minute click window or a 30-day
    /// purchase window does to the same customers.
    #[arg(long)]
    pub attribution_window_minutes: Option<u32>,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Also write every strategy's decision log of every run, as the
    /// daemon exports it (DSJSON), into OUT/decision-logs/.
    #[arg(long)]
    pub decision_log: bool,
    /// Live mode: send the customers to a running daemon (loopback only), e.g. http://127.0.0.1:50051
    /// (https:// for TLS). Repeat it for the replicas of one deployment:
    /// decisions go to each in turn, rewards to one at random.
    #[arg(long)]
    pub target: Vec<String>,
    /// Live mode: PEM file of the CA that signed the daemon's certificate.
    #[arg(long, env = "BANDITD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Live mode: PEM certificate to present to a daemon that requires
    /// mutual TLS (with --tls-client-key).
    #[arg(long, env = "BANDITD_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// Live mode: the key of --tls-client-cert.
    #[arg(long, env = "BANDITD_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
    /// Live mode: access token, when the daemon has --tokens-file.
    #[arg(long, env = "BANDITD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Live mode: Choose calls in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Live mode: customers per second (default: as fast as the daemon answers).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Live mode: simulated time runs this many times faster than real time
    /// (conversion delays and the campaign's reward timeout are divided by it).
    #[arg(long, default_value_t = 3600.0)]
    pub speedup: f64,
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign from a TOML file (see campaigns/*.toml).
    Create {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// List campaigns.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show one campaign.
    Show {
        campaign_id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a campaign and everything it learned.
    Delete {
        campaign_id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh token (give it to the client) and its line for the
    /// tokens file (the file holds only the token's SHA-256).
    New {
        /// Who the token is for (letters, digits, '-', '_', '.', '@').
        name: String,
        /// `decide` (Choose and Reward) or `admin` (everything).
        role: String,
    },
}

/// Which daemon a client subcommand talks to.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// The daemon: http://HOST:PORT, or https://HOST:PORT for TLS.
    #[arg(long, env = "BANDITD_TARGET", default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// PEM file of the CA that signed the daemon's certificate (https://
    /// targets; without it the system's roots are trusted).
    #[arg(long, env = "BANDITD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate to present to a daemon that requires mutual TLS
    /// (its --tls-client-ca signed it), with --tls-client-key.
    #[arg(long, env = "BANDITD_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// The key of --tls-client-cert.
    #[arg(long, env = "BANDITD_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
    /// Access token, when the daemon has --tokens-file (prefer the
    /// environment variable: a command line is visible to other users).
    #[arg(long, env = "BANDITD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Target {
    pub fn connect(&self) -> crate::client::Connect {
        crate::client::Connect {
            target: self.target.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_client_cert: self.tls_client_cert.clone(),
            tls_client_key: self.tls_client_key.clone(),
            token: self.token.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// Acknowledge at once; write batches every batch interval and flush
    /// (sled flush + fdatasync) every flush interval.
    Default,
    /// Acknowledge after the change's batch is flushed and fdatasync'd (group commit).
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Raw `serve` flags, as parsed.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BANDITD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Directory of the sled database (created if missing).
    #[arg(long, env = "BANDITD_DATA_DIR", default_value = "./banditd-data")]
    pub data_dir: PathBuf,
    /// Default durability: how often written batches are flushed and
    /// fdatasync'd, in milliseconds (1..=60000).
    #[arg(long, env = "BANDITD_FLUSH_INTERVAL_MS", default_value_t = 200)]
    pub flush_interval_ms: u64,
    /// Default durability: how long changes gather before they are written
    /// as one batch, in milliseconds (1..=1000).
    #[arg(long, env = "BANDITD_BATCH_INTERVAL_MS", default_value_t = 10)]
    pub batch_interval_ms: u64,
    /// Pending decisions one campaign may have; beyond, Choose is
    /// RESOURCE_EXHAUSTED (1..=100000000).
    #[arg(
        long,
        env = "BANDITD_MAX_PENDING_PER_CAMPAIGN",
        default_value_t = 4_000_000
    )]
    pub max_pending_per_campaign: u64,
    /// How long a resolved decision is remembered after its deadline (so
    /// retries are answered), in seconds; 0 = one more reward timeout of
    /// its campaign (0..=31536000).
    #[arg(long, env = "BANDITD_RETENTION_SECONDS", default_value_t = 0)]
    pub retention_seconds: u64,
    /// `default` or `strict`.
    #[arg(long, env = "BANDITD_DURABILITY", value_enum, default_value_t = Durability::Default)]
    pub durability: Durability,
    /// sled page cache in MiB (1..=65536).
    #[arg(long, env = "BANDITD_CACHE_MB", default_value_t = 128)]
    pub cache_mb: u64,
    /// How often overdue decisions are expired, in milliseconds (10..=60000).
    #[arg(long, env = "BANDITD_EXPIRY_INTERVAL_MS", default_value_t = 200)]
    pub expiry_interval_ms: u64,
    /// Seed for the policies' random numbers (reproducible runs); random if unset.
    #[arg(long, env = "BANDITD_SEED")]
    pub seed: Option<u64>,
    /// `text` or `json` logs (filter with RUST_LOG).
    #[arg(long, env = "BANDITD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long the decision log keeps decisions and their outcomes, in
    /// hours; 0 turns the log off (0..=8784).
    #[arg(
        long,
        env = "BANDITD_DECISION_LOG_RETENTION_HOURS",
        default_value_t = 168
    )]
    pub decision_log_retention_hours: u64,
    /// Disk bound of the decision log in MiB: beyond it the oldest
    /// decisions are deleted first (1..=1048576).
    #[arg(long, env = "BANDITD_DECISION_LOG_MAX_MB", default_value_t = 1024)]
    pub decision_log_max_mb: u64,
    /// PEM certificate chain to serve TLS with (with --tls-key).
    #[arg(long, env = "BANDITD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BANDITD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate signed by
    /// one (mutual TLS). Needs --tls-cert.
    #[arg(long, env = "BANDITD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Access tokens, one per line as `NAME ROLE SHA256-HEX` (see `banditd
    /// token new`); without it every caller may do everything.
    #[arg(long, env = "BANDITD_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given).
    #[arg(long, env = "BANDITD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Calls in flight at most (health not counted); beyond, a call is
    /// RESOURCE_EXHAUSTED at once (1..=1000000).
    #[arg(long, env = "BANDITD_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// HTTP/2 streams one connection may have open at once (1..=65536):
    /// a client beyond it waits on its side, so what the daemon queues is
    /// bounded.
    #[arg(long, env = "BANDITD_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// How long a shutdown waits for calls in flight before cancelling
    /// them (the store is flushed either way), e.g. 10s or 500ms.
    #[arg(long, env = "BANDITD_SHUTDOWN_TIMEOUT", default_value = "10s")]
    pub shutdown_timeout: String,
    /// Learn together with other replicas through this Redis
    /// (redis://HOST:PORT[/DB]); needs --replica-id.
    #[arg(long, env = "BANDITD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// This replica's name among the replicas sharing --redis-url (letters,
    /// digits, '-', '_'; at most 64); it prefixes the decision ids it makes.
    #[arg(long, env = "BANDITD_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Where the other replicas reach this one to forward rewards (default
    /// http://LISTEN, which must then not be 0.0.0.0 or [::]).
    #[arg(long, env = "BANDITD_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
}

/// A validated daemon configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub flush_interval: Duration,
    pub batch_interval: Duration,
    pub max_pending_per_campaign: usize,
    /// `None`: each campaign's reward timeout.
    pub retention: Option<Duration>,
    pub durability: Durability,
    pub cache_bytes: u64,
    pub expiry_interval: Duration,
    pub seed: Option<u64>,
    pub log_format: LogFormat,
    /// The decision log's retention and disk bound (retention 0: off).
    pub decision_log: crate::journal::log::LogOptions,
    pub tls: Option<TlsFiles>,
    pub tokens: Option<crate::access::Tokens>,
    pub metrics_listen: Option<SocketAddr>,
    pub max_in_flight: usize,
    pub max_concurrent_streams: u32,
    pub shutdown_timeout: Duration,
    /// Set when this daemon is one of several replicas.
    pub replica: Option<ReplicaConfig>,
}

/// How this daemon joins other replicas (`--redis-url`, `--replica-id`).
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub redis_url: String,
    pub replica_id: String,
    /// `None`: `http(s)://` and the address the daemon is bound to.
    pub advertise_url: Option<String>,
}

/// The server's TLS material, read and checked at start.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl TlsFiles {
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        let mut c = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem),
        );
        if let Some(ca) = &self.client_ca_pem {
            c = c.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        c
    }
}

/// `10s`, `500ms`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

/// A PEM file's bytes; `marker` is what its header line must contain.
fn read_pem(
    setting: &'static str,
    path: &std::path::Path,
    marker: &str,
    what: &str,
) -> Result<Vec<u8>, ConfigError> {
    pem_file(path, marker, what).map_err(|why| bad(setting, why))
}

/// A PEM file's bytes, checked to hold a `-----BEGIN …marker` block, so
/// that a wrong file is named at start, not as a TLS handshake failure
/// later. The error says which file and why.
pub(crate) fn pem_file(
    path: &std::path::Path,
    marker: &str,
    what: &str,
) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains(marker))
    {
        return Err(format!("{} holds no PEM {what}", path.display()));
    }
    Ok(bytes)
}

fn tls_files(a: &ServeArgs) -> Result<Option<TlsFiles>, ConfigError> {
    const CERT: &str = "--tls-cert (BANDITD_TLS_CERT)";
    const KEY: &str = "--tls-key (BANDITD_TLS_KEY)";
    const CLIENT_CA: &str = "--tls-client-ca (BANDITD_TLS_CLIENT_CA)";
    let (cert, key) = match (&a.tls_cert, &a.tls_key) {
        (None, None) => {
            if a.tls_client_ca.is_some() {
                return Err(bad(CLIENT_CA, "needs --tls-cert and --tls-key"));
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => return Err(bad(KEY, "missing: --tls-cert needs its key")),
        (None, Some(_)) => return Err(bad(CERT, "missing: --tls-key needs its certificate")),
    };
    let files = TlsFiles {
        cert_pem: read_pem(CERT, cert, "CERTIFICATE", "certificate")?,
        key_pem: read_pem(KEY, key, "PRIVATE KEY", "private key")?,
        client_ca_pem: a
            .tls_client_ca
            .as_deref()
            .map(|p| read_pem(CLIENT_CA, p, "CERTIFICATE", "certificate"))
            .transpose()?,
    };
    // tonic checks the certificate against the key (and parses them) here.
    tonic::transport::Server::builder()
        .tls_config(files.server_config())
        .map_err(|e| {
            bad(
                CERT,
                format!(
                    "{} and {} do not make a TLS identity: {e}",
                    cert.display(),
                    key.display()
                ),
            )
        })?;
    Ok(Some(files))
}

/// A configuration problem, naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {why}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub why: String,
}

fn bad(setting: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        why: why.into(),
    }
}

impl TryFrom<ServeArgs> for ServeConfig {
    type Error = ConfigError;
    fn try_from(a: ServeArgs) -> Result<Self, ConfigError> {
        let listen: SocketAddr = a.listen.parse().map_err(|e| {
            bad(
                "--listen (BANDITD_LISTEN)",
                format!("{:?} is not an address like 127.0.0.1:50051: {e}", a.listen),
            )
        })?;
        if !(1..=60_000).contains(&a.flush_interval_ms) {
            return Err(bad(
                "--flush-interval-ms (BANDITD_FLUSH_INTERVAL_MS)",
                format!("must be in 1..=60000, got {}", a.flush_interval_ms),
            ));
        }
        if !(1..=1000).contains(&a.batch_interval_ms) {
            return Err(bad(
                "--batch-interval-ms (BANDITD_BATCH_INTERVAL_MS)",
                format!("must be in 1..=1000, got {}", a.batch_interval_ms),
            ));
        }
        if !(1..=100_000_000).contains(&a.max_pending_per_campaign) {
            return Err(bad(
                "--max-pending-per-campaign (BANDITD_MAX_PENDING_PER_CAMPAIGN)",
                format!(
                    "must be in 1..=100000000, got {}",
                    a.max_pending_per_campaign
                ),
            ));
        }
        if a.retention_seconds > 365 * 24 * 3600 {
            return Err(bad(
                "--retention-seconds (BANDITD_RETENTION_SECONDS)",
                format!("must be in 0..=31536000, got {}", a.retention_seconds),
            ));
        }
        if !(1..=65_536).contains(&a.cache_mb) {
            return Err(bad(
                "--cache-mb (BANDITD_CACHE_MB)",
                format!("must be in 1..=65536, got {}", a.cache_mb),
            ));
        }
        if !(10..=60_000).contains(&a.expiry_interval_ms) {
            return Err(bad(
                "--expiry-interval-ms (BANDITD_EXPIRY_INTERVAL_MS)",
                format!("must be in 10..=60000, got {}", a.expiry_interval_ms),
            ));
        }
        if a.decision_log_retention_hours > 366 * 24 {
            return Err(bad(
                "--decision-log-retention-hours (BANDITD_DECISION_LOG_RETENTION_HOURS)",
                format!(
                    "must be in 0..=8784, got {}",
                    a.decision_log_retention_hours
                ),
            ));
        }
        if !(1..=1 << 20).contains(&a.decision_log_max_mb) {
            return Err(bad(
                "--decision-log-max-mb (BANDITD_DECISION_LOG_MAX_MB)",
                format!("must be in 1..=1048576, got {}", a.decision_log_max_mb),
            ));
        }
        if a.data_dir.as_os_str().is_empty() {
            return Err(bad("--data-dir (BANDITD_DATA_DIR)", "must not be empty"));
        }
        if a.data_dir.exists() && !a.data_dir.is_dir() {
            return Err(bad(
                "--data-dir (BANDITD_DATA_DIR)",
                format!("{} exists and is not a directory", a.data_dir.display()),
            ));
        }
        let tls = tls_files(&a)?;
        let tokens = a
            .tokens_file
            .as_deref()
            .map(crate::access::Tokens::load)
            .transpose()
            .map_err(|e| bad("--tokens-file (BANDITD_TOKENS_FILE)", e.to_string()))?;
        let metrics_listen = a
            .metrics_listen
            .as_deref()
            .map(|m| {
                m.parse::<SocketAddr>().map_err(|e| {
                    bad(
                        "--metrics-listen (BANDITD_METRICS_LISTEN)",
                        format!("{m:?} is not an address like 127.0.0.1:9090: {e}"),
                    )
                })
            })
            .transpose()?;
        if metrics_listen.is_some_and(|m| m == listen && m.port() != 0) {
            return Err(bad(
                "--metrics-listen (BANDITD_METRICS_LISTEN)",
                "must differ from --listen",
            ));
        }
        if !(1..=1_000_000).contains(&a.max_in_flight) {
            return Err(bad(
                "--max-in-flight (BANDITD_MAX_IN_FLIGHT)",
                format!("must be in 1..=1000000, got {}", a.max_in_flight),
            ));
        }
        if !(1..=65_536).contains(&a.max_concurrent_streams) {
            return Err(bad(
                "--max-concurrent-streams (BANDITD_MAX_CONCURRENT_STREAMS)",
                format!("must be in 1..=65536, got {}", a.max_concurrent_streams),
            ));
        }
        let shutdown_timeout = parse_duration(&a.shutdown_timeout)
            .filter(|d| *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                bad(
                    "--shutdown-timeout (BANDITD_SHUTDOWN_TIMEOUT)",
                    format!(
                        "{:?}: expected a duration up to 1 hour like 10s or 500ms",
                        a.shutdown_timeout
                    ),
                )
            })?;
        let replica = match (a.redis_url, a.replica_id) {
            (None, None) => {
                if a.advertise_url.is_some() {
                    return Err(bad(
                        "--advertise-url (BANDITD_ADVERTISE_URL)",
                        "only means something with --redis-url and --replica-id",
                    ));
                }
                None
            }
            (Some(_), None) => {
                return Err(bad(
                    "--replica-id (BANDITD_REPLICA_ID)",
                    "is needed with --redis-url: each replica needs a unique name",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "--redis-url (BANDITD_REDIS_URL)",
                    "is needed with --replica-id",
                ))
            }
            (Some(url), Some(id)) => {
                crate::replica::validate_replica_id(&id)
                    .map_err(|why| bad("--replica-id (BANDITD_REPLICA_ID)", why))?;
                if !url.starts_with("redis://") || redis::Client::open(url.as_str()).is_err() {
                    return Err(bad(
                        "--redis-url (BANDITD_REDIS_URL)",
                        format!("{url:?} is not a URL like redis://127.0.0.1:6379"),
                    ));
                }
                let advertise_url = match a.advertise_url {
                    Some(u) => {
                        let ok = (u.starts_with("http://") || u.starts_with("https://"))
                            && tonic::transport::Endpoint::from_shared(u.clone()).is_ok();
                        if !ok {
                            return Err(bad(
                                "--advertise-url (BANDITD_ADVERTISE_URL)",
                                format!("{u:?} is not a URL like http://10.0.0.5:50051"),
                            ));
                        }
                        Some(u)
                    }
                    None if listen.ip().is_unspecified() => {
                        return Err(bad(
                            "--advertise-url (BANDITD_ADVERTISE_URL)",
                            format!("is needed when listening on {listen}: the other replicas need an address to reach this one"),
                        ))
                    }
                    // From the bound address (the port may be 0 here).
                    None => None,
                };
                Some(ReplicaConfig {
                    redis_url: url,
                    replica_id: id,
                    advertise_url,
                })
            }
        };
        Ok(ServeConfig {
            replica,
            tls,
            tokens,
            metrics_listen,
            max_in_flight: a.max_in_flight,
            max_concurrent_streams: a.max_concurrent_streams,
            shutdown_timeout,
            listen,
            data_dir: a.data_dir,
            flush_interval: Duration::from_millis(a.flush_interval_ms),
            batch_interval: Duration::from_millis(a.batch_interval_ms),
            max_pending_per_campaign: a.max_pending_per_campaign as usize,
            retention: (a.retention_seconds > 0).then(|| Duration::from_secs(a.retention_seconds)),
            durability: a.durability,
            cache_bytes: a.cache_mb * 1024 * 1024,
            expiry_interval: Duration::from_millis(a.expiry_interval_ms),
            seed: a.seed,
            log_format: a.log_format,
            decision_log: crate::journal::log::LogOptions {
                retention_ms: a.decision_log_retention_hours * 3_600_000,
                max_bytes: a.decision_log_max_mb << 20,
            },
        })
    }
}
