//! The one mapping from [`Error`] to gRPC status.
//!
//! Exhaustive on purpose: a new error variant does not compile until it has a
//! status. Storage failures are logged with their detail and reported as
//! `UNAVAILABLE` with a generic message, so no internals leak to clients.

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
        }
    }
}
