//! The crate's error type: one enum for every rule the engine enforces.
//!
//! Messages are written for the client (what was wrong with *their* input);
//! storage failures carry details for the logs only, and the API layer maps
//! each variant to exactly one gRPC status (see `api::status`).

use thiserror::Error;

/// What can go wrong in a request to the engine.
#[derive(Debug, Error)]
pub enum Error {
    /// An unknown campaign, decision or arm.
    #[error("{0} not found")]
    NotFound(String),
    /// Malformed or out-of-range input.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is well formed but the state forbids it (reward after timeout).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Creating something that exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A configured limit would be exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store could not be read or opened (start-up).
    #[error("storage failure")]
    Storage(#[from] StoreError),
    /// The store failed earlier and the daemon no longer accepts changes;
    /// this request changed nothing.
    #[error("the store failed; no changes are accepted: {0}")]
    Unavailable(String),
    /// Something another replica or Redis must do could not be done (an
    /// unreachable Redis for a campaign change, an unreachable replica for
    /// a forwarded reward); nothing was changed. The message is for clients.
    #[error("{0}")]
    ReplicaUnavailable(String),
    /// A campaign changed concurrently on another replica; retry.
    #[error("{0}")]
    Aborted(String),
    /// The request's change was applied in memory, but the store failed
    /// before it was durable: whether it survives a restart is unknown.
    #[error("the change was applied but the store failed before it was durable: {0}")]
    NotDurable(String),
}

/// A failure of the persistence layer.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt record under key {key}: {why}")]
    Corrupt { key: String, why: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for an `InvalidArgument` error.
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}
