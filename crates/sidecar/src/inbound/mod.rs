//! Inbound bearer tokens (docs/sidecar.md §7): the sidecar's parameters over the shared
//! verifier and key cache.

pub mod validate;

pub use validate::{InboundError, InboundToken, Validator};
