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
            Error::ReplicaUnavailable(m) => Status::unavailable(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::NotDurable(why) => {
                tracing::error!(why = %why, "a change was applied but not made durable");
                Status::data_loss(
                    "the change was applied, but the store failed before it was durable; it may be lost on restart (do not retry a Choose without a decision_id)",
                )
            }
        }
    }
}

/// The metadata key that marks a status as a server fault of banditd's own
/// (see [`fault`] and [`wire_response`]); never sent to clients.
const FAULT_MARK: &str = "x-banditd-fault";

/// A fault of the server itself (a panicked handler, a lost task): the
/// only `INTERNAL` a client ever sees, and what an operator is paged for.
pub fn fault(what: &str) -> Status {
    tracing::error!(what, "server fault");
    let mut status = Status::internal(format!("server fault: {what}"));
    status
        .metadata_mut()
        .insert(FAULT_MARK, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// Refusals decided by [`crate::access`].
impl From<crate::access::Denied> for Status {
    fn from(d: crate::access::Denied) -> Status {
        match d {
            crate::access::Denied::Unauthenticated(_) => Status::unauthenticated(d.to_string()),
            crate::access::Denied::PermissionDenied { .. } => {
                Status::permission_denied(d.to_string())
            }
        }
    }
}

/// The answer to a call beyond the global concurrency limit (load shedding).
pub fn overloaded(limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "the daemon is at its limit of {limit} calls in flight; retry with backoff"
    ))
}

/// The status code of a response whose status is in its headers (every
/// error of a unary call, and every error raised before a handler ran);
/// `None` when the status will come in the trailers (a call that started).
pub fn header_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
}

/// The one place where a status tonic chose becomes the one the v1 contract
/// promises, for every response the server sends:
///
/// - tonic answers a request that does not decode (not protobuf, a
///   truncated or ill-flagged frame, a missing message) with `INTERNAL`, as
///   the gRPC status table says a library should. The request is the
///   client's fault, so it becomes `INVALID_ARGUMENT`, keeping tonic's
///   message. `INTERNAL` stays reserved for [`fault`]s.
/// - tonic rejects a message above the size limit with `OUT_OF_RANGE`; the
///   v1 contract promises `RESOURCE_EXHAUSTED` for exceeded limits (banditd
///   itself never returns `OUT_OF_RANGE`).
pub fn wire_response<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    match header_code(headers) {
        Some(tonic::Code::Internal) if headers.remove(FAULT_MARK).is_none() => {
            headers.insert("grpc-status", code_header(tonic::Code::InvalidArgument));
        }
        Some(tonic::Code::OutOfRange) => {
            headers.insert("grpc-status", code_header(tonic::Code::ResourceExhausted));
        }
        _ => {}
    }
    response
}

fn code_header(code: tonic::Code) -> http::HeaderValue {
    http::HeaderValue::from((code as i32) as u16)
}

/// A status as a complete (trailers-only) gRPC response.
pub fn response<B: Default>(status: Status) -> http::Response<B> {
    status.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of<B>(r: &http::Response<B>) -> Option<tonic::Code> {
        header_code(r.headers())
    }

    #[test]
    fn undecodable_requests_are_invalid_argument_and_faults_stay_internal() {
        let decode =
            wire_response::<()>(Status::internal("failed to decode Protobuf message").into_http());
        assert_eq!(code_of(&decode), Some(tonic::Code::InvalidArgument));
        let f = wire_response::<()>(fault("test").into_http());
        assert_eq!(code_of(&f), Some(tonic::Code::Internal));
        assert!(
            f.headers().get(FAULT_MARK).is_none(),
            "the mark is not sent"
        );
        let big = wire_response::<()>(Status::out_of_range("too large").into_http());
        assert_eq!(code_of(&big), Some(tonic::Code::ResourceExhausted));
        let nf = wire_response::<()>(Status::not_found("x").into_http());
        assert_eq!(code_of(&nf), Some(tonic::Code::NotFound));
    }
}
