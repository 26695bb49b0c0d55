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
pub mod host;
/// Identity derivation lives in `agentid_claims`; re-exported so policies and audit keep one path.
pub use agentid_claims::identity;
pub mod jwt;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod obo;
pub mod pipeline;
pub mod request_path;
pub mod router;
pub mod rules;
pub mod serve;
pub mod sse;
pub mod tls;

pub use serve::{Options, RunningGateway, ServeError, Source, start};

/// JWKS cache figures in Prometheus text form, added to `/metrics`.
pub(crate) fn jwt_metrics_text(gw: &gateway::Gateway) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::from(
        "# HELP agentid_gateway_jwks_refreshes_total JWKS fetches.\n# TYPE agentid_gateway_jwks_refreshes_total counter\n",
    );
    let all = gw.jwks.metrics();
    for m in &all {
        for r in &m.refreshes {
            out.push_str(&format!(
                "agentid_gateway_jwks_refreshes_total{{jwks=\"{}\",trigger=\"{}\",result=\"{}\"}} {}\n",
                esc(&m.url),
                r.trigger,
                r.result,
                r.count
            ));
        }
    }
    out.push_str("# HELP agentid_gateway_jwks_keys Usable keys per JWKS URL.\n# TYPE agentid_gateway_jwks_keys gauge\n");
    for m in &all {
        out.push_str(&format!(
            "agentid_gateway_jwks_keys{{jwks=\"{}\"}} {}\n",
            esc(&m.url),
            m.keys
        ));
    }
    out
}
