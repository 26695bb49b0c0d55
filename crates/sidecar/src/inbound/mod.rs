//! Inbound bearer tokens (sidecar.md §7): signing keys from the authority's metadata, and the
//! validation rules.

pub mod keys;
pub mod validate;

pub use keys::SigningKeys;
pub use validate::{InboundError, InboundToken, Validator};
