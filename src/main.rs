//! The `banditd` binary: `serve` runs the daemon; the other subcommands are
//! clients of a running daemon.

use banditd::api::server;
use banditd::cli;
use banditd::config::{
    CampaignCommand, Cli, Command, Durability, LogFormat, ServeConfig, EXIT_USAGE,
};
use banditd::engine::{Engine, EngineOptions};
use banditd::store::{GroupCommit, SledOptions, SledStore, Store};
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
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "banditd stopped with an error");
                    eprintln!("banditd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        other => match runtime.block_on(client(other)) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("banditd: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn client(command: Command) -> Result<String, cli::CliError> {
    match command {
        Command::Campaign(CampaignCommand::Create { file, target }) => {
            cli::create_campaign(&target.target, &file).await
        }
        Command::Campaign(CampaignCommand::List { target }) => {
            cli::list_campaigns(&target.target).await
        }
        Command::Campaign(CampaignCommand::Show {
            campaign_id,
            target,
        }) => cli::show_campaign(&target.target, &campaign_id).await,
        Command::Campaign(CampaignCommand::Delete {
            campaign_id,
            target,
        }) => cli::delete_campaign(&target.target, &campaign_id).await,
        Command::Stats {
            campaign_id,
            segment,
            target,
        } => cli::stats(&target.target, &campaign_id, &segment).await,
        Command::Choose {
            campaign_id,
            segment,
            decision_id,
            context,
            target,
        } => {
            cli::choose(
                &target.target,
                &campaign_id,
                &segment,
                &decision_id,
                &context,
            )
            .await
        }
        Command::Reward {
            decision_id,
            value,
            target,
        } => cli::reward(&target.target, &decision_id, value).await,
        Command::Serve(_) | Command::Simulate(_) => Ok(String::new()),
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
        flush_every_ms: config.flush_interval.as_millis() as u64,
        cache_bytes: config.cache_bytes,
    })
    .map_err(|e| {
        format!(
            "cannot open the database in {}: {e}",
            config.data_dir.display()
        )
    })?;
    let store: Arc<dyn Store> = Arc::new(store);
    let mut engine = Engine::open(
        store.clone(),
        EngineOptions {
            seed: config.seed,
            ..EngineOptions::default()
        },
    )?;
    let commit = if config.durability == Durability::Strict {
        let c = GroupCommit::start(store.clone())?;
        engine = engine.with_group_commit(c.clone());
        Some(c)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        durability = ?config.durability,
        flush_interval_ms = config.flush_interval.as_millis() as u64,
        "banditd started"
    );
    let result = server::run(
        listener,
        Arc::new(engine),
        config.expiry_interval,
        shutdown_signal(),
    )
    .await;
    if let Some(c) = commit {
        c.stop();
    }
    tracing::info!("banditd stopped");
    result
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        _ = term => tracing::info!("SIGTERM received; shutting down"),
    }
}
