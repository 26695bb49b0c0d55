//! agentid's gateway: an identity-aware proxy for agents' LLM and MCP traffic.
//!
//! The config file is a strict subset of AgentGateway's standalone format plus an `agentid:`
//! block (`config`). Every request is authenticated (`jwt`), the agent's identity is derived
//! from the validated claims (`identity`), and CEL rules (`rules`) decide what it may do; the
//! `pipeline` then hands the request, with its `ctx::RouteCtx`, to plain HTTP forwarding
//! (`forward`), `llm` or `mcp`, which answer with a `reply::Reply`; refusals and failures are
//! `error::GatewayError`s. The pipeline writes every decision as an `audit` event.
//!
//! Dependencies point one way: `pipeline` → backends (`forward`, `llm`, `mcp`) → shared
//! helpers (`backend_auth`, `upstream`, `cors`, `host`, `reply`, `error`) → state (`gateway`,
//! `obo`, `jwt`, `metrics`, `revocation`) and `config`; no module imports one that imports it.

pub mod audit;
pub mod backend_auth;
pub mod body;
pub mod config;
pub mod cors;
pub mod ctx;
pub mod error;
pub mod exchange;
pub mod forward;
pub mod gateway;
pub mod host;
/// Identity derivation lives in `agentid_claims`; re-exported so policies and audit keep one path.
pub use agentid_claims::identity;
pub mod jwt;
pub mod llm;
pub mod mcp;
pub mod mcp_auth;
pub mod metrics;
pub mod obo;
pub mod pipeline;
pub mod reply;
pub mod request_path;
pub mod revocation;
pub mod router;
pub mod rules;
pub mod serve;
pub mod sse;
pub mod tls;
pub mod upstream;

pub use serve::{Options, RunningGateway, ServeError, Source, start};
