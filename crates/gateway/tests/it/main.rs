//! All of this crate's integration tests in one binary (one link instead of one per file).
//! Each module is one former test file; shared helpers are in the support module.

mod support;

mod audit_line;
mod audit_ship;
mod behaviour;
mod conformance;
mod guide;
mod jwt_validation;
mod listener;
mod llm_stream;
mod mcp_auth;
mod mcp_auth_rmcp;
mod mcp_limits;
mod mcp_names;
mod mcp_sessions;
mod mcp_tls;
mod paths;
mod policies;
mod properties;
mod revocation;
mod revocation_deletions;
mod rules_sts_tokens;
