//! Outbound token acquisition against an Entra-compatible authority (docs/sidecar.md §9).

pub mod assertion_file;
pub mod authority;
pub mod cache;
pub mod certificate;
pub mod credentials;
pub mod engine;
pub mod form;
pub mod revocation;

pub use engine::{AcquireError, Flow, Source, TokenEngine, TokenRequest};
pub use form::UserRef;
