//! All of this crate's integration tests in one binary (one link instead of one per file).
//! Each module is one former test file; shared helpers are in the support module.

mod deploy_support;
mod process_support;

mod admin;
mod agent_chat;
mod audit_loss;
mod cli;
mod console_browser;
mod deploy_applied;
mod deploy_manifests;
mod deploy_types;
mod dockerfile;
mod drain;
mod replicas;
mod up;
