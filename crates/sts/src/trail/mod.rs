//! The trail over HTTP (docs/audit.md): gateway event ingest, the audit query, chains, and the
//! chain picture.

pub(crate) mod api;
pub mod ingest;
pub mod svg;
