//! All of this crate's integration tests in one binary (one link instead of one per file).
//! Each module is one former test file; shared helpers are in the support module.

mod adversarial;
mod app_uris;
mod auth_code;
mod bad_input;
mod browser;
mod conformance;
mod console;
mod device_code;
mod flows;
mod form_props;
mod graph;
mod key_cache;
mod kube_bed;
mod lifecycle;
mod mcp_client_grants;
mod mcp_clients;
mod revocation_deletions;
mod revocation_feed;
mod signin_abuse;
mod sts_listener;
mod tenant_file_props;
mod token_cache;
mod trail;
mod trail_api;
