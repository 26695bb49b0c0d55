//! LLM routes (gateway.md §10): OpenAI and Azure OpenAI chat completions, model override,
//! streaming relayed event by event (never buffered), usage accounted per agent, user and model.

use crate::audit::{LlmPart, UpstreamPart, Usage};
use crate::body::{self, Body, BoxError};
use crate::config::model::*;
use crate::exchange::Exchange;
use crate::gateway::Gateway;
use crate::pipeline;
use crate::request_path::RequestTarget;
use crate::rules::LlmInfo;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;

#[allow(clippy::too_many_arguments)]
pub async fn handle(
    gw: &Arc<Gateway>,
    snap: &Arc<Snapshot>,
    ex: &mut Exchange,
    route: &Arc<Route>,
    backend: &Backend,
    ai: Arc<AiBackend>,
    policy: UpstreamPolicy,
    matched_prefix: Option<String>,
    target: RequestTarget,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, incoming) = req.into_parts();
    let limit = snap.settings.limits.llm_request_body_bytes;
    let within = snap.settings.timeouts.request_body;
    let bytes = match body::read_limited(incoming, limit, within).await {
        Ok(b) => b,
        Err(e) => return llm_error(gw, ex, e.status(), e.code(), &e.to_string(), &ai),
    };
    let rewritten = match pipeline::rewrite_path(route, matched_prefix.as_deref(), &target) {
        Ok(t) => t,
        Err(e) => return llm_error(gw, ex, e.status(), e.code(), &e.to_string(), &ai),
    };
    let path_only = rewritten.path.as_str().to_string();
    let query = rewritten.query.as_ref().map(|q| q.as_str().to_string());
    let is_chat = parts.method == http::Method::POST && path_only.ends_with("/chat/completions");
    let deployment = deployment_of(&path_only);

    // Upstream address and path (gateway.md §10.1).
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
            _ => {
                return llm_error(
                    gw,
                    ex,
                    StatusCode::BAD_REQUEST,
                    "invalid_llm_request",
                    "the chat completion request body is not a JSON object",
                    &ai,
                );
            }
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

    let tls = policy.tls.is_some() || default_tls;
    let tls_policy = policy
        .tls
        .clone()
        .or_else(|| default_tls.then(crate::config::upstream_tls::system_roots));
    // The composed path (override, provider form, or the client's canonical path) is checked
    // once more: the upstream receives it byte for byte or not at all.
    let url = match RequestTarget::parse(&upstream_path).and_then(|t| {
        t.upstream_url(
            if tls { "https" } else { "http" },
            &pipeline::authority(&host, port),
        )
    }) {
        Ok(url) => url,
        Err(e) => return llm_error(gw, ex, e.status(), e.code(), &e.to_string(), &ai),
    };
    let mut headers = pipeline::forwardable_headers(&parts.headers);
    headers.remove(http::header::ACCEPT_ENCODING);
    pipeline::set_host(route, &parts.headers, &host, port, &mut headers);
    pipeline::add_trace_headers(ex, &mut headers);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(h) = &route.policies.upstream.headers {
        h.apply(&mut headers);
    }
    if let Some(h) = &backend.policies.headers {
        h.apply(&mut headers);
    }
    let credential =
        match pipeline::apply_auth(gw, ex, route, &policy, &mut headers, &backend.name).await {
            Ok(c) => c,
            Err(resp) => return *resp,
        };
    let client = match gw.clients.get(tls_policy.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            return llm_error(
                gw,
                ex,
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                &e,
                &ai,
            );
        }
    };
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
            return llm_error(
                gw,
                ex,
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                &format!(
                    "LLM upstream did not answer within {}",
                    crate::config::duration::render(header_timeout)
                ),
                &ai,
            );
        }
        Ok(Err(e)) => {
            return llm_error(
                gw,
                ex,
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                &format!(
                    "LLM upstream {host}:{port} failed: {}",
                    pipeline::error_chain(&e)
                ),
                &ai,
            );
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
        return relay_stream(
            gw,
            ex,
            upstream,
            llm,
            upstream_part,
            injected,
            upstream_start,
        );
    }

    // Non-streamed: relay the body, reading usage from (a bounded copy of) it.
    let mut resp_headers = http::HeaderMap::new();
    for (k, v) in upstream.headers() {
        if k != http::header::CONTENT_LENGTH
            && k != http::header::TRANSFER_ENCODING
            && k != http::header::CONNECTION
        {
            resp_headers.append(k.clone(), v.clone());
        }
    }
    let tee_limit = snap.settings.limits.response_tee_bytes;
    let mut collected = Vec::new();
    let mut stream = upstream.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => collected.extend_from_slice(&c),
            Err(e) => {
                return llm_error(
                    gw,
                    ex,
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    &format!("LLM upstream broke off: {}", pipeline::error_chain(&e)),
                    &ai,
                );
            }
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
    finish(gw, ex, status.as_u16(), llm, up);
    let mut resp = Response::new(body::full(collected));
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    resp
}

/// Relays SSE events as they arrive; a copy of each is parsed for the model, the first token
/// time and usage. A usage chunk the gateway asked for (and the client did not) is swallowed.
fn relay_stream(
    gw: &Arc<Gateway>,
    ex: &mut Exchange,
    upstream: reqwest::Response,
    mut llm: LlmPart,
    mut up: UpstreamPart,
    injected: bool,
    upstream_start: Instant,
) -> Response<Body> {
    let status = upstream.status();
    let mut headers = http::HeaderMap::new();
    for (k, v) in upstream.headers() {
        if k != http::header::CONTENT_LENGTH
            && k != http::header::TRANSFER_ENCODING
            && k != http::header::CONNECTION
        {
            headers.append(k.clone(), v.clone());
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(16);
    let gw = gw.clone();
    // The exchange's facts move into the relay task, which writes the audit event at the end.
    let ex_owned = std::mem::replace(ex, placeholder(ex));
    tokio::spawn(async move {
        let ex = ex_owned;
        let mut stream = upstream.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut first_token: Option<f64> = None;
        let mut client_gone = false;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    up.error = Some(pipeline::error_chain(&e));
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
        finish(&gw, &ex, status.as_u16(), llm, up);
    });
    let mut resp = Response::new(body::channel(rx));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

fn placeholder(ex: &Exchange) -> Exchange {
    Exchange {
        start: ex.start,
        correlation_id: ex.correlation_id.clone(),
        trace: ex.trace.clone(),
        bind: ex.bind,
        listener: ex.listener.clone(),
        route: ex.route.clone(),
        source: ex.source,
        request: ex.request.clone(),
        source_info: crate::rules::SourceInfo {
            address: ex.source_info.address.clone(),
            port: ex.source_info.port,
        },
        verified: ex.verified.clone(),
        identity: ex.identity.clone(),
        decision: ex.decision.clone(),
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

fn finish(gw: &Arc<Gateway>, ex: &Exchange, status: u16, llm: LlmPart, up: UpstreamPart) {
    let model = llm
        .response_model
        .clone()
        .or(llm.request_model.clone())
        .unwrap_or_default();
    let agent = ex.identity.id.clone().unwrap_or_default();
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
    gw.record_with(ex, event, Some(&info), None);
}

fn llm_error(
    gw: &Arc<Gateway>,
    ex: &Exchange,
    status: StatusCode,
    code: &str,
    message: &str,
    ai: &AiBackend,
) -> Response<Body> {
    let llm = LlmPart {
        provider: ai.provider.name().to_string(),
        route_type: "chat",
        ..Default::default()
    };
    let up = UpstreamPart {
        target: Some(ai.name.clone()),
        error: Some(message.to_string()),
        credential: "none",
        ..Default::default()
    };
    finish(gw, ex, status.as_u16(), llm, up);
    body::gateway_error(status, code, message, &ex.correlation_id)
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
