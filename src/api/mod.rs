//! The gRPC layer: generated types, conversions, the two v1 services and the
//! server.
//!
//! Generated protobuf types stay in [`pb`] and never leave this module.
//! Every call passes the [`gate`] (tokens, the in-flight limit), then a
//! handler converts the request, calls the engine (which owns defaults and
//! validation), converts the reply. Every status is built in exactly one
//! place ([`status`]), including the remap of what tonic answers itself.

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
