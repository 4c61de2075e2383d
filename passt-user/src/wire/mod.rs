//! # Theory of operation
//!
//! Thin helpers over etherparse for what the data plane needs on the wire:
//! the "malformed" error, and the Internet checksum (RFC 1071).

pub mod csum;
pub mod frame;

/// A frame or message from untrusted input is malformed. The caller drops it
/// and counts the drop; nothing else happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed")]
pub struct Error;
