//! All of this crate's integration tests in one binary (one link instead of one per file).
//! Each module is one former test file; shared helpers are in the support module.

mod support;

mod authority;
mod callers;
mod clients;
mod downstream;
mod drain;
mod flows;
mod gating;
mod host;
mod kube_cluster;
mod observability;
mod revocation;
mod validate;
mod workload_identity;
