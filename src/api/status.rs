//! The one mapping from [`Error`] to gRPC status.
//!
//! Exhaustive on purpose: a new error variant does not compile until it has a
//! status. Storage failures are logged with their detail and reported with
//! a generic message, so no internals leak to clients: `UNAVAILABLE` when
//! nothing was applied, `DATA_LOSS` when the change was applied in memory
//! but the store failed before it was durable (strict durability).

use crate::error::Error;
use tonic::Status;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::AlreadyExists(_) => Status::already_exists(e.to_string()),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::Storage(inner) => {
                tracing::error!(error = %inner, "storage failure");
                Status::unavailable("storage unavailable; the request was not applied")
            }
            Error::Unavailable(why) => {
                tracing::warn!(why = %why, "change refused: the store has failed");
                Status::unavailable("the store has failed; the request was not applied")
            }
            Error::NotDurable(why) => {
                tracing::error!(why = %why, "a change was applied but not made durable");
                Status::data_loss(
                    "the change was applied, but the store failed before it was durable; it may be lost on restart (do not retry a Choose without a decision_id)",
                )
            }
        }
    }
}
