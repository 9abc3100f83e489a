//! The gRPC layer: generated types, conversions, the two v1 services and the
//! server.
//!
//! Generated protobuf types stay in [`pb`] and never leave this module.
//! Handlers convert the request (rejecting bad input with
//! `INVALID_ARGUMENT`), call the engine, convert the reply; every engine
//! error becomes a status in exactly one place ([`status`]).

pub mod convert;
pub mod gate;
pub mod metrics;
pub mod server;
pub mod service;
pub mod status;

/// Generated code for `banditd.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("banditd.v1");

    /// Encoded file descriptor set for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/banditd_descriptor.bin"));
}
