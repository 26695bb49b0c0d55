//! LLM routes (docs/gateway.md §10): OpenAI and Azure OpenAI chat completions, model override,
//! streaming relayed event by event (never buffered), usage accounted per agent, user and model.

use crate::audit::{LlmPart, UpstreamPart, Usage};
use crate::backend_auth;
use crate::body::{self, BoxError};
use crate::config::model::*;
use crate::ctx::RouteCtx;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::forward::{self, rewrite_path};
use crate::gateway::Gateway;
use crate::host::authority;
use crate::reply::{self, Audit, Record, Reply};
use crate::request_path::RequestTarget;
use crate::rules::LlmInfo;
use crate::upstream::{end_to_end_headers, error_chain};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;

/// Relays one LLM request. A refusal by policy (a failed token exchange) is the pipeline's
/// `http` event; every other failure is an `llm` event that counts in the LLM metrics.
pub async fn handle(
    ctx: &RouteCtx<'_>,
    ex: &mut Exchange,
    ai: &Arc<AiBackend>,
    req: Request<Incoming>,
) -> Reply {
    match relay(ctx, ex, ai, req).await {
        Ok(reply) => reply,
        Err(e) if e.denied_at().is_some() => reply::failed(ex, e),
        Err(e) => failed(ctx.gw, ex, e, ai),
    }
}

async fn relay(
    ctx: &RouteCtx<'_>,
    ex: &mut Exchange,
    ai: &Arc<AiBackend>,
    req: Request<Incoming>,
) -> Result<Reply, GatewayError> {
    let snap = ctx.snap;
    let route = ctx.route;
    let (parts, incoming) = req.into_parts();
    let limit = snap.settings.limits.llm_request_body_bytes;
    let within = snap.settings.timeouts.request_body;
    let bytes = body::read_limited(incoming, limit, within).await?;
    let rewritten = rewrite_path(ctx)?;
    let path_only = rewritten.path.as_str().to_string();
    let query = rewritten.query.as_ref().map(|q| q.as_str().to_string());
    let is_chat = parts.method == http::Method::POST && path_only.ends_with("/chat/completions");
    let deployment = deployment_of(&path_only);

    // Upstream address and path (docs/gateway.md §10.1).
    let (host, port, default_tls) = match (&ai.host_override, &ai.provider) {
        (Some((h, p)), _) => (h.clone(), *p, false),
        (None, AiProvider::OpenAi { .. }) => ("api.openai.com".to_string(), 443, true),
        (None, AiProvider::Azure { resource_name, .. }) => {
            (format!("{resource_name}.openai.azure.com"), 443, true)
        }
    };
    let upstream_path = if let Some(over) = &ai.path_override {
        match &query {
            Some(q) => format!("{over}?{q}"),
            None => over.clone(),
        }
    } else if ai.host_override.is_some() || !is_chat {
        rewritten.path_and_query()
    } else {
        match &ai.provider {
            AiProvider::OpenAi { .. } => "/v1/chat/completions".to_string(),
            AiProvider::Azure {
                api_version, model, ..
            } => match api_version.as_str() {
                "v1" => "/openai/v1/chat/completions".to_string(),
                "preview" => "/openai/v1/chat/completions?api-version=preview".to_string(),
                v => format!(
                    "/openai/deployments/{}/chat/completions?api-version={v}",
                    model.clone().or(deployment.clone()).unwrap_or_default()
                ),
            },
        }
    };

    let mut llm = LlmPart {
        provider: ai.provider.name().to_string(),
        deployment: deployment.clone(),
        route_type: if is_chat { "chat" } else { "passthrough" },
        ..Default::default()
    };
    let mut injected = false;
    let body_bytes = if is_chat {
        let mut json: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return Err(GatewayError::InvalidLlmRequest),
        };
        if let Some(model) = ai.provider.model_override() {
            json["model"] = serde_json::Value::String(model.to_string());
        }
        llm.request_model = json
            .get("model")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .or(deployment.clone());
        llm.streaming = json
            .get("stream")
            .and_then(|s| s.as_bool())
            .unwrap_or(false);
        if llm.streaming {
            let asked = json
                .pointer("/stream_options/include_usage")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let inject = match snap.settings.inject_stream_usage {
                InjectUsage::Never => false,
                InjectUsage::Always => true,
                InjectUsage::Auto => usage_supported(&path_only, query.as_deref(), &upstream_path),
            };
            if !asked && inject {
                json["stream_options"] = serde_json::json!({"include_usage": true});
                injected = true;
            }
        }
        Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
    } else {
        bytes
    };

    let tls = ctx.policy.tls.is_some() || default_tls;
    let tls_policy = ctx
        .policy
        .tls
        .clone()
        .or_else(|| default_tls.then(crate::config::upstream_tls::system_roots));
    // The composed path (override, provider form, or the client's canonical path) is checked
    // once more: the upstream receives it byte for byte or not at all.
    let url = RequestTarget::parse(&upstream_path)?
        .upstream_url(if tls { "https" } else { "http" }, &authority(&host, port))?;
    let mut headers = forward::request_headers(ctx, ex, &parts.headers, &host, port, |h| {
        // The gateway reads the body (usage): it must arrive uncompressed.
        h.remove(http::header::ACCEPT_ENCODING);
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    });
    let credential = backend_auth::apply(
        ctx.gw,
        ex,
        &ctx.policy,
        &mut headers,
        &route.id,
        &ctx.backend.name,
    )
    .await?;
    let client = ctx
        .gw
        .clients
        .get(tls_policy.as_deref())
        .map_err(GatewayError::UpstreamClient)?;
    let upstream_start = Instant::now();
    let header_timeout = route
        .policies
        .backend_request_timeout
        .unwrap_or(snap.settings.timeouts.llm_response_headers);
    let send = client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body_bytes)
        .send();
    let upstream = match tokio::time::timeout(header_timeout, send).await {
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout {
                upstream: "LLM upstream",
                after: header_timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(GatewayError::UpstreamFailed {
                upstream: format!("LLM upstream {host}:{port}"),
                cause: error_chain(&e),
            });
        }
        Ok(Ok(r)) => r,
    };
    let status = upstream.status();
    let event_stream = upstream
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let upstream_part = UpstreamPart {
        target: Some(ai.name.clone()),
        status: Some(status.as_u16()),
        duration_ms: None,
        error: None,
        credential,
    };

    if is_chat && llm.streaming && event_stream && status.is_success() {
        return Ok(relay_stream(
            ctx.gw,
            ex,
            upstream,
            llm,
            upstream_part,
            injected,
            upstream_start,
        ));
    }

    // Non-streamed: relay the body, reading usage from (a bounded copy of) it.
    let resp_headers = end_to_end_headers(upstream.headers());
    let tee_limit = snap.settings.limits.response_tee_bytes;
    let mut collected = Vec::new();
    let mut stream = upstream.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => collected.extend_from_slice(&c),
            Err(e) => return Err(GatewayError::UpstreamBrokeOff(error_chain(&e))),
        }
    }
    let mut up = upstream_part;
    up.duration_ms = Some(upstream_start.elapsed().as_secs_f64() * 1000.0);
    if is_chat
        && collected.len() <= tee_limit
        && let Ok(json) = serde_json::from_slice::<serde_json::Value>(&collected)
    {
        llm.response_model = json
            .get("model")
            .and_then(|m| m.as_str())
            .map(str::to_string);
        llm.usage = json.get("usage").and_then(usage_of);
    }
    let record = finished(ctx.gw, ex, status.as_u16(), llm, up);
    let mut resp = Response::new(body::full(collected));
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    Ok(Reply::new(resp, record))
}

/// Relays SSE events as they arrive; a copy of each is parsed for the model, the first token
/// time and usage. A usage chunk the gateway asked for (and the client did not) is swallowed.
/// The audit event goes to the pipeline when the stream ends.
fn relay_stream(
    gw: &Arc<Gateway>,
    ex: &Exchange,
    upstream: reqwest::Response,
    mut llm: LlmPart,
    mut up: UpstreamPart,
    injected: bool,
    upstream_start: Instant,
) -> Reply {
    let status = upstream.status();
    let headers = end_to_end_headers(upstream.headers());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(16);
    let (done, audit) = tokio::sync::oneshot::channel();
    let gw = gw.clone();
    // A copy of the exchange's facts goes with the relay task, and back with the event.
    let ex = ex.clone();
    tokio::spawn(async move {
        let mut stream = upstream.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut first_token: Option<f64> = None;
        let mut client_gone = false;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    up.error = Some(error_chain(&e));
                    break;
                }
            };
            buf.extend_from_slice(&chunk);
            // Forward every complete event at once.
            while let Some(end) = crate::sse::event_end(&buf) {
                let event: Vec<u8> = buf.drain(..end).collect();
                let mut forward = true;
                if let Some(data) = crate::sse::event_data(&event).filter(|d| d != "[DONE]")
                    && let Ok(json) = serde_json::from_str::<serde_json::Value>(&data)
                {
                    if llm.response_model.is_none() {
                        llm.response_model = json
                            .get("model")
                            .and_then(|m| m.as_str())
                            .filter(|m| !m.is_empty())
                            .map(str::to_string);
                    }
                    let has_content =
                        json.get("choices")
                            .and_then(|c| c.as_array())
                            .is_some_and(|c| {
                                c.iter().any(|choice| {
                                    choice
                                        .pointer("/delta/content")
                                        .and_then(|v| v.as_str())
                                        .is_some_and(|s| !s.is_empty())
                                        || choice.pointer("/delta/tool_calls").is_some()
                                })
                            });
                    if has_content && first_token.is_none() {
                        first_token = Some(upstream_start.elapsed().as_secs_f64() * 1000.0);
                    }
                    if let Some(usage) = json
                        .get("usage")
                        .filter(|u| !u.is_null())
                        .and_then(usage_of)
                    {
                        llm.usage = Some(usage);
                        let empty_choices = json
                            .get("choices")
                            .and_then(|c| c.as_array())
                            .is_none_or(|c| c.is_empty());
                        if injected && empty_choices {
                            forward = false;
                        }
                    }
                }
                if forward && !client_gone && tx.send(Ok(Bytes::from(event))).await.is_err() {
                    client_gone = true;
                }
            }
            if client_gone {
                break;
            }
        }
        if !buf.is_empty() && !client_gone {
            let _ = tx.send(Ok(Bytes::from(buf))).await;
        }
        llm.time_to_first_token_ms = first_token;
        up.duration_ms = Some(upstream_start.elapsed().as_secs_f64() * 1000.0);
        if let Some(ttft) = first_token {
            gw.metrics
                .llm_ttft
                .get_or_create(&vec![
                    ("route".to_string(), ex.route_id()),
                    (
                        "model".to_string(),
                        llm.response_model
                            .clone()
                            .or(llm.request_model.clone())
                            .unwrap_or_default(),
                    ),
                ])
                .observe(ttft / 1000.0);
        }
        let record = finished(&gw, &ex, status.as_u16(), llm, up);
        let _ = done.send((ex, record));
    });
    let mut resp = Response::new(body::channel(rx));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Reply {
        response: resp,
        audit: Audit::Later(audit),
    }
}

fn usage_of(u: &serde_json::Value) -> Option<Usage> {
    let n = |p: &str| u.pointer(p).and_then(|v| v.as_u64());
    let usage = Usage {
        input: n("/prompt_tokens"),
        output: n("/completion_tokens"),
        total: n("/total_tokens"),
        cached_input: n("/prompt_tokens_details/cached_tokens"),
        reasoning: n("/completion_tokens_details/reasoning_tokens"),
    };
    (usage.input.is_some() || usage.output.is_some() || usage.total.is_some()).then_some(usage)
}

/// `stream_options` is understood by OpenAI and by Azure's v1/preview and dated API versions
/// from 2024-09-01; older Azure versions reject it.
fn usage_supported(path: &str, query: Option<&str>, upstream_path: &str) -> bool {
    if !path.contains("/openai/deployments/") && !upstream_path.contains("/openai/deployments/") {
        return true;
    }
    let version = query
        .into_iter()
        .chain(upstream_path.split_once('?').map(|(_, q)| q))
        .flat_map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v);
    match version.as_deref() {
        Some("v1") | Some("preview") => true,
        Some(v) => v.get(..10).is_some_and(|d| d >= "2024-09-01"),
        None => false,
    }
}

fn deployment_of(path: &str) -> Option<String> {
    let mut parts = path.split('/');
    while let Some(p) = parts.next() {
        if p == "deployments" {
            return parts.next().filter(|d| !d.is_empty()).map(str::to_string);
        }
    }
    None
}

/// Counts the request in the LLM metrics and builds its `llm` audit event.
fn finished(gw: &Gateway, ex: &Exchange, status: u16, llm: LlmPart, up: UpstreamPart) -> Record {
    let model = llm
        .response_model
        .clone()
        .or(llm.request_model.clone())
        .unwrap_or_default();
    let agent = ex.identity().id.clone().unwrap_or_default();
    let user = gw.user_label(ex);
    let route = ex.route_id();
    gw.metrics
        .llm_requests
        .get_or_create(&vec![
            ("route".to_string(), route.clone()),
            ("model".to_string(), model.clone()),
            ("agent".to_string(), agent.clone()),
            ("user".to_string(), user.clone()),
            ("status".to_string(), status.to_string()),
        ])
        .inc();
    if let Some(u) = &llm.usage {
        for (kind, value) in [
            ("input", u.input),
            ("output", u.output),
            ("cached_input", u.cached_input),
            ("reasoning", u.reasoning),
        ] {
            if let Some(v) = value {
                gw.metrics
                    .llm_tokens
                    .get_or_create(&vec![
                        ("route".to_string(), route.clone()),
                        ("model".to_string(), model.clone()),
                        ("agent".to_string(), agent.clone()),
                        ("user".to_string(), user.clone()),
                        ("type".to_string(), kind.to_string()),
                    ])
                    .inc_by(v);
            }
        }
    }
    let info = LlmInfo {
        request_model: llm.request_model.clone(),
        response_model: llm.response_model.clone(),
        provider: llm.provider.clone(),
        streaming: llm.streaming,
        input_tokens: llm.usage.as_ref().and_then(|u| u.input),
        output_tokens: llm.usage.as_ref().and_then(|u| u.output),
        total_tokens: llm.usage.as_ref().and_then(|u| u.total),
    };
    let mut event = ex.event("llm", status);
    event.llm = Some(llm);
    event.upstream = Some(up);
    Record {
        event,
        llm: Some(info),
        mcp: None,
    }
}

/// The gateway's own error for an LLM request, with its `llm` event.
fn failed(gw: &Gateway, ex: &Exchange, e: GatewayError, ai: &AiBackend) -> Reply {
    let message = e.to_string();
    let llm = LlmPart {
        provider: ai.provider.name().to_string(),
        route_type: "chat",
        ..Default::default()
    };
    let up = UpstreamPart {
        target: Some(ai.name.clone()),
        error: Some(message),
        credential: "none",
        ..Default::default()
    };
    let record = finished(gw, ex, e.status().as_u16(), llm, up);
    Reply::new(e.into_response(&ex.correlation_id), record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_support_by_api_version() {
        assert!(usage_supported(
            "/v1/chat/completions",
            None,
            "/v1/chat/completions"
        ));
        assert!(usage_supported(
            "/openai/deployments/d/chat/completions",
            Some("api-version=2024-10-21"),
            ""
        ));
        assert!(!usage_supported(
            "/openai/deployments/d/chat/completions",
            Some("api-version=2024-02-15-preview"),
            ""
        ));
        assert_eq!(
            deployment_of("/openai/deployments/gpt4/chat/completions").as_deref(),
            Some("gpt4")
        );
    }
}
