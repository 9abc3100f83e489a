//! The `banditd` binary: `serve` runs the daemon; the other subcommands are
//! clients of a running daemon.

use banditd::api::server;
use banditd::cli;
use banditd::config::{
    CampaignCommand, Cli, Command, Durability, EvalLogFormat, EvaluateArgs, ExportFormatArg,
    LogCommand, LogFormat, ServeConfig, TokenCommand, EXIT_USAGE,
};
use banditd::engine::{Engine, EngineOptions};
use banditd::journal::{JournalOptions, Mode};
use banditd::store::{SledOptions, SledStore, Store};
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let parsed = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE as u8 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Command::Simulate(args) = &parsed.command {
        return match banditd::sim::run_cli(args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("banditd: {e}");
                match e {
                    banditd::sim::SimCliError::Usage(_) => ExitCode::from(EXIT_USAGE as u8),
                    banditd::sim::SimCliError::Failed(_) => ExitCode::FAILURE,
                }
            }
        };
    }
    if let Command::Token(TokenCommand::New { name, role }) = &parsed.command {
        return new_token(name, role);
    }
    if let Command::Check { data_dir } = &parsed.command {
        return check(data_dir);
    }
    if let Command::Evaluate(args) = &parsed.command {
        return evaluate(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("banditd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match parsed.command {
        Command::Serve(args) => {
            let config = match ServeConfig::try_from(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("banditd: {e}");
                    return ExitCode::from(EXIT_USAGE as u8);
                }
            };
            init_tracing(config.log_format);
            let code = match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "banditd stopped with an error");
                    eprintln!("banditd: {e}");
                    ExitCode::FAILURE
                }
            };
            // The store is flushed by now; calls cancelled at the shutdown
            // timeout may still hold a blocking thread: do not wait for them.
            runtime.shutdown_timeout(std::time::Duration::from_millis(200));
            code
        }
        other => match runtime.block_on(client(other)) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("banditd: {e}");
                match e {
                    // The command line or a local file is wrong: nothing was sent.
                    cli::CliError::Parse { .. } | cli::CliError::Read { .. } => {
                        ExitCode::from(EXIT_USAGE as u8)
                    }
                    _ => ExitCode::FAILURE,
                }
            }
        },
    }
}

async fn client(command: Command) -> Result<String, cli::CliError> {
    match command {
        Command::Campaign(CampaignCommand::Create { file, target }) => {
            cli::create_campaign(&target.connect(), &file).await
        }
        Command::Campaign(CampaignCommand::List { target }) => {
            cli::list_campaigns(&target.connect()).await
        }
        Command::Campaign(CampaignCommand::Show {
            campaign_id,
            target,
        }) => cli::show_campaign(&target.connect(), &campaign_id).await,
        Command::Campaign(CampaignCommand::Delete {
            campaign_id,
            target,
        }) => cli::delete_campaign(&target.connect(), &campaign_id).await,
        Command::Stats {
            campaign_id,
            segment,
            target,
        } => cli::stats(&target.connect(), &campaign_id, &segment).await,
        Command::Choose {
            campaign_id,
            segment,
            decision_id,
            context,
            count,
            target,
        } => {
            cli::choose(
                &target.connect(),
                &campaign_id,
                &segment,
                &decision_id,
                &context,
                count,
            )
            .await
        }
        Command::Reward {
            decision_id,
            value,
            slot,
            target,
        } => cli::reward(&target.connect(), &decision_id, slot, value).await,
        Command::Log(LogCommand::Export {
            campaign_id,
            format,
            since,
            until,
            out,
            target,
        }) => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let format = match format {
                ExportFormatArg::Dsjson => cli::ExportFormat::Dsjson,
                ExportFormatArg::Csv => cli::ExportFormat::Csv,
            };
            cli::export_log(
                &target.connect(),
                &campaign_id,
                format,
                since.as_deref(),
                until.as_deref(),
                out.as_deref(),
                now_ms,
            )
            .await
        }
        Command::Serve(_)
        | Command::Simulate(_)
        | Command::Check { .. }
        | Command::Evaluate(_)
        | Command::Token(_) => Ok(String::new()),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(config: ServeConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create --data-dir {}: {e}",
            config.data_dir.display()
        )
    })?;
    let store = SledStore::open(&SledOptions {
        path: config.data_dir.clone(),
        cache_bytes: config.cache_bytes,
    })
    .map_err(|e| {
        format!(
            "cannot open the database in {}: {e}",
            config.data_dir.display()
        )
    })?;
    let store: Arc<dyn Store> = Arc::new(store);
    let engine = Engine::open(
        store,
        EngineOptions {
            seed: config.seed,
            journal: JournalOptions {
                mode: match config.durability {
                    Durability::Default => Mode::Default,
                    Durability::Strict => Mode::Strict,
                },
                batch_interval: config.batch_interval,
                flush_interval: config.flush_interval,
                decision_log: config.decision_log,
                ..JournalOptions::default()
            },
            max_pending_per_campaign: config.max_pending_per_campaign,
            retention: config.retention,
            // No decision computes a Thompson vector: the server's
            // background task does (see `engine::vectors`).
            vectors: banditd::engine::VectorMode::Deferred,
            ..EngineOptions::default()
        },
    )?;
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on --metrics-listen {addr}: {e}"))?,
        ),
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = config.tls.is_some(),
        mutual_tls = config.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some()),
        tokens = config.tokens.as_ref().map_or(0, |t| t.len()),
        max_in_flight = config.max_in_flight,
        max_concurrent_streams = config.max_concurrent_streams,
        metrics_listen = %metrics
            .as_ref()
            .and_then(|m| m.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        data_dir = %config.data_dir.display(),
        durability = ?config.durability,
        batch_interval_ms = config.batch_interval.as_millis() as u64,
        flush_interval_ms = config.flush_interval.as_millis() as u64,
        decision_log_retention_hours = config.decision_log.retention_ms / 3_600_000,
        decision_log_max_mb = config.decision_log.max_bytes >> 20,
        "banditd started"
    );
    if config.tls.is_none() && !listener.local_addr()?.ip().is_loopback() {
        tracing::warn!(
            listen = %listener.local_addr()?,
            "serving plaintext on a non-loopback address: give --tls-cert and --tls-key, or keep the port on a private network"
        );
    }
    if config.tokens.is_none() && !listener.local_addr()?.ip().is_loopback() {
        tracing::warn!(
            "no --tokens-file: anyone who reaches the port may create and delete campaigns"
        );
    }
    let engine = Arc::new(engine);
    let replica = match &config.replica {
        Some(r) => {
            let listen = listener.local_addr()?;
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let advertise_url = r
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{listen}"));
            let replica = banditd::replica::Replica::new(
                engine.clone(),
                banditd::replica::ReplicaOptions {
                    redis_url: r.redis_url.clone(),
                    replica_id: r.replica_id.clone(),
                    advertise_url,
                    prefix: banditd::replica::DEFAULT_PREFIX.to_string(),
                    ship_interval: banditd::replica::DEFAULT_SHIP_INTERVAL,
                    pull_interval: banditd::replica::DEFAULT_PULL_INTERVAL,
                },
            )?;
            Some(Arc::new(replica))
        }
        None => None,
    };
    let options = server::ServerOptions {
        expiry_interval: config.expiry_interval,
        max_in_flight: config.max_in_flight,
        max_concurrent_streams: config.max_concurrent_streams,
        shutdown_timeout: config.shutdown_timeout,
        tokens: config.tokens,
        tls: config.tls.as_ref().map(|t| t.server_config()),
        metrics,
        replica,
    };
    let result = server::run(listener, engine, options, shutdown).await;
    tracing::info!("banditd stopped");
    result
}

/// `banditd token new NAME ROLE`: the token on stdout's first line, the
/// tokens-file line on the second.
fn new_token(name: &str, role: &str) -> ExitCode {
    let Some(role) = banditd::access::Role::parse(role) else {
        eprintln!("banditd: role {role:?}: expected decide or admin");
        return ExitCode::from(EXIT_USAGE as u8);
    };
    match banditd::access::new_token(name, role) {
        Ok((token, line)) => {
            println!("{token}");
            println!("{line}");
            eprintln!(
                "banditd: give the first line to the client (as BANDITD_TOKEN); append the second to the --tokens-file and restart the daemon"
            );
            ExitCode::SUCCESS
        }
        Err(banditd::access::TokensFileError::Line { message, .. }) => {
            eprintln!("banditd: {message}");
            ExitCode::from(EXIT_USAGE as u8)
        }
        Err(e) => {
            eprintln!("banditd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `banditd check`: opens the data directory read-only in spirit (sled
/// needs it writable, so no daemon may be using it) and prints the report.
/// Exit 0 when every invariant holds, 1 otherwise, 64 for a bad directory.
fn check(data_dir: &std::path::Path) -> ExitCode {
    if !data_dir.join("db").is_file() {
        eprintln!(
            "banditd: --data-dir {} holds no banditd database",
            data_dir.display()
        );
        return ExitCode::from(EXIT_USAGE as u8);
    }
    let store = match SledStore::open(&SledOptions {
        path: data_dir.to_path_buf(),
        cache_bytes: 64 << 20,
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "banditd: cannot open {}: {e} (is a daemon using it?)",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    match banditd::journal::check::check(&store) {
        Ok(report) => {
            print!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("banditd: {} cannot be read: {e}", data_dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called (before the daemon says it started), not when it is first polled,
/// so a signal sent right after start-up is never lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = match (term, int) {
                (Ok(t), Ok(i)) => (t, i),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                    return std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("SIGINT received; shutting down");
            }
        }
    }
}

/// `--policy campaign:FILE.toml`: the campaign file parsed and validated as
/// `banditd campaign create` would, then fitted on the log.
fn campaign_policy(
    file: &str,
    log: &banditd::ope::Log,
) -> Result<banditd::ope::CampaignPolicy, banditd::ope::OpeError> {
    use banditd::ope::OpeError;
    let text = std::fs::read_to_string(file).map_err(|e| OpeError::Io {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let bad = |message: String| OpeError::File {
        file: file.to_string(),
        message,
    };
    let wire = cli::CampaignFile::parse(file, &text)
        .map_err(|e| bad(e.to_string()))?
        .into_wire();
    let spec = banditd::campaign::CampaignSpec::try_from(wire).map_err(|e| bad(e.to_string()))?;
    spec.validate().map_err(|e| bad(e.to_string()))?;
    let name = format!(
        "campaign:{}",
        std::path::Path::new(file)
            .file_name()
            .map_or(file.into(), |n| n.to_string_lossy())
    );
    banditd::ope::CampaignPolicy::fit(log, &spec, name)
}

/// `banditd evaluate`: every failure is the input's (a file, a row, a
/// column, a policy that does not fit the log), so it exits 64.
fn evaluate(args: &EvaluateArgs) -> ExitCode {
    use banditd::ope;
    let run = || -> Result<String, ope::OpeError> {
        let format = match args.log_format {
            EvalLogFormat::Banditd => ope::LogFormat::Banditd,
            EvalLogFormat::ObpCsv => ope::LogFormat::ObpCsv,
        };
        let log = ope::read_log(&args.log, format)?;
        let policy: Box<dyn ope::EvalPolicy> = match (&args.policy, &args.policy_dist) {
            (_, Some(path)) => Box::new(ope::ActionDistribution::from_file(path, &log)?),
            (Some(spec), None) => match spec.strip_prefix("campaign:") {
                Some(file) => Box::new(campaign_policy(file, &log)?),
                None => ope::parse_policy(spec, &log)?,
            },
            (None, None) => {
                return Err(ope::OpeError::Options(
                    "give --policy or --policy-dist".into(),
                ))
            }
        };
        let opts = ope::EvalOptions {
            ridge_lambda: args.ridge_lambda,
            ..ope::EvalOptions::default()
        };
        let report = ope::evaluate(&log, policy.as_ref(), &opts)?;
        Ok(if args.json {
            format!("{}\n", report.to_json())
        } else {
            report.to_table()
        })
    };
    match run() {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("banditd: {e}");
            ExitCode::from(EXIT_USAGE as u8)
        }
    }
}
