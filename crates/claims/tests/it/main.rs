//! All of this crate's integration tests in one binary (one link instead of one per file).
//! Each module is one former test file; shared helpers are in the support module.

mod fetch;
mod revocation;
mod revocation_deletions;
mod verifier;
