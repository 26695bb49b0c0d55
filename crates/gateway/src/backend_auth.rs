//! `backendAuth` (docs/gateway.md §8): the credential an upstream request carries — the
//! caller's own token, a static key, or a token exchanged on the caller's behalf. One home for
//! plain HTTP, LLM and MCP targets.

use crate::config::model::{BackendAuth, UpstreamPolicy};
use crate::exchange::Exchange;
use crate::gateway::Gateway;
use crate::obo::{ExchangeFailure, ExchangeFor};
use http::{HeaderMap, HeaderValue};

/// Inserts the credential `policy.auth` calls for into `headers`; returns its kind for the
/// audit event (`none`, `passthrough`, `key`, `onBehalfOf`). `route` and `target` label the
/// token-exchange metrics.
pub async fn apply(
    gw: &Gateway,
    ex: &Exchange,
    policy: &UpstreamPolicy,
    headers: &mut HeaderMap,
    route: &str,
    target: &str,
) -> Result<&'static str, ExchangeFailure> {
    let Some(auth) = &policy.auth else {
        return Ok("none");
    };
    match auth.as_ref() {
        BackendAuth::Passthrough { header, prefix } => {
            if let Some(v) = &ex.verified
                && let Ok(value) = HeaderValue::from_str(&format!("{prefix}{}", v.token.expose()))
            {
                headers.insert(header.clone(), value);
            }
        }
        BackendAuth::Key {
            value,
            header,
            prefix,
        } => {
            if let Ok(v) = HeaderValue::from_str(&format!("{prefix}{}", value.0)) {
                headers.insert(header.clone(), v);
            }
        }
        BackendAuth::OnBehalfOf(obo) => {
            let call = ExchangeFor { ex, route, target };
            let value = gw.obo.exchange(&gw.exchange_env(), call, obo).await?;
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(obo.header.clone(), v);
            }
        }
    }
    Ok(auth.kind())
}
