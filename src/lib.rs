//! banditd: a self-hosted decision daemon for marketing campaigns.
//!
//! An ad server asks which offer to show a customer (`Choose`) and later says
//! what happened (`Reward`). banditd learns online, per customer segment,
//! with Thompson sampling (or per customer, from their features, with
//! LinUCB), keeps what it learned in sled, and serves it all over gRPC.
//!
//! # Layout
//!
//! - [`policy`]: pure, seedable decision math (Beta posteriors, Thompson
//!   sampling with segment pooling, uniform split, ε-greedy, LinUCB). No I/O,
//!   no clocks.
//! - [`campaign`]: campaign definitions, defaults, limits and validation.
//! - [`engine`]: campaigns in memory, pending decisions and the rules
//!   (idempotency, reward timeout and default reward, reward ranges). The
//!   gRPC layer and the simulator both drive it. It never does I/O: every
//!   state change it makes is appended to the journal.
//! - [`journal`]: the ordered stream of state changes, its on-disk format,
//!   the writer thread that applies it to the store in atomic batches
//!   (default and strict durability), start-up recovery and migration, and
//!   the offline invariant checker (`banditd check`).
//! - [`store`]: the persistence seam, an ordered key-value store with
//!   atomic batches: sled (the daemon's) and in-memory (tests).
//! - [`access`]: access tokens and their roles (`decide`, `admin`): the
//!   tokens file, constant-time checks, `banditd token new`.
//! - [`api`]: generated protobuf types, request/response conversions, the
//!   two v1 services, the gate every call passes (tokens, the global
//!   in-flight limit, panics caught), the one mapping to gRPC status
//!   (`api::status`, the only place a `Status` is built), Prometheus metrics,
//!   and the server (`api::server::run`, with TLS and the shutdown timeout).
//! - [`config`]: command-line flags → validated daemon configuration.
//! - [`cli`]: operator subcommands that talk to a running daemon.
//! - [`client`]: how the CLI and the simulator connect (TLS, tokens).
//! - [`error`]: the crate's error types.
//! - [`sim`]: the campaign simulator (`banditd simulate`): synthetic customers
//!   driven through the same engine, strategies compared on the same customers.
//!
//! Data flows one way: api → engine → policy, and engine → journal → store.

pub mod access;
pub mod api;
pub mod campaign;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
pub mod journal;
/// Off-policy evaluation (`banditd evaluate`): log readers, evaluation
/// policies, and the IPS, SNIPS, DM and DR estimators.
pub mod ope;
pub mod policy;
/// Replicas that learn together through Redis (`serve --redis-url`).
pub mod replica;
pub mod sim;
pub mod store;

pub use error::{Error, Result};

/// The hash map of the hot path: foldhash's quality hasher, seeded at random
/// per map (keys such as decision ids and segments come from clients), about
/// ten times cheaper than SipHash on short strings.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;
