//! Forwarding to a plain HTTP backend (`host:port`), and the request rewriting LLM backends
//! share with it: `urlRewrite` (docs/gateway.md §5.2), the upstream `Host`, trace headers and
//! the request header modifiers (§5.3).

use crate::audit::UpstreamPart;
use crate::backend_auth;
use crate::config::model::{AuthorityRewrite, PathRewrite};
use crate::ctx::RouteCtx;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::host::{authority, strip_port};
use crate::reply::{Failure, Reply};
use crate::request_path::{PathError, RequestTarget};
use crate::upstream::{Destination, SendError, end_to_end_headers};
use http::{HeaderMap, HeaderValue, Request, header};
use hyper::body::Incoming;
use std::time::Instant;

/// Streams the request to `host:port` and the response back (never buffered).
pub async fn http(
    ctx: &RouteCtx<'_>,
    ex: &mut Exchange,
    host: &str,
    port: u16,
    req: Request<Incoming>,
) -> Result<Reply, Failure> {
    let (parts, incoming) = req.into_parts();
    let to = Destination::new(
        ctx.policy.tls.as_ref(),
        &rewrite_path(ctx)?,
        &authority(host, port),
    )?;
    let mut headers = request_headers(ctx, ex, &parts.headers, host, port, |_| {});
    let credential = backend_auth::apply(
        ctx.gw,
        ex,
        &ctx.policy,
        &mut headers,
        &ctx.route.id,
        &ctx.backend.name,
    )
    .await
    .map_err(GatewayError::from)?;
    let upstream_start = Instant::now();
    let send = ctx.gw.clients.send(to, parts.method, headers, incoming);
    let header_timeout = ctx
        .route
        .policies
        .backend_request_timeout
        .unwrap_or(ctx.snap.settings.timeouts.http_response_headers);
    let resp = match tokio::time::timeout(header_timeout, send).await {
        Err(_) => {
            let e = GatewayError::UpstreamTimeout {
                upstream: "upstream",
                after: header_timeout,
            };
            return Err(Failure::upstream(e, credential));
        }
        Ok(Err(SendError::Client(e))) => return Err(GatewayError::UpstreamClient(e).into()),
        Ok(Err(SendError::Failed(cause))) => {
            let e = GatewayError::UpstreamFailed {
                upstream: format!("upstream {}", authority(host, port)),
                cause,
            };
            return Err(Failure::upstream(e, credential));
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let mut event = ex.event("http", status.as_u16());
    event.upstream = Some(UpstreamPart {
        target: Some(ctx.backend.name.clone()),
        status: Some(status.as_u16()),
        duration_ms: Some(upstream_start.elapsed().as_secs_f64() * 1000.0),
        error: None,
        credential,
    });
    Ok(Reply::new(resp, event))
}

/// The headers of the upstream request: the client's end-to-end ones, `Host` per
/// `urlRewrite.authority`, trace context, then `adjust` (the backend kind's own changes), then
/// the route's and the backend's request header modifiers.
pub fn request_headers(
    ctx: &RouteCtx<'_>,
    ex: &Exchange,
    client: &HeaderMap,
    host: &str,
    port: u16,
    adjust: impl FnOnce(&mut HeaderMap),
) -> HeaderMap {
    let mut headers = end_to_end_headers(client);
    set_host(ctx, client, host, port, &mut headers);
    add_trace_headers(ex, &mut headers);
    adjust(&mut headers);
    if let Some(h) = &ctx.route.policies.upstream.headers {
        h.apply(&mut headers);
    }
    if let Some(h) = &ctx.backend.policies.headers {
        h.apply(&mut headers);
    }
    headers
}

/// Applies `urlRewrite.path` (docs/gateway.md §5.2) to the canonical target; the query is kept.
/// The result is canonical too: the config's rewrite values were normalised at load.
pub fn rewrite_path(ctx: &RouteCtx<'_>) -> Result<RequestTarget, PathError> {
    let target = &ctx.target;
    let path = match ctx
        .route
        .policies
        .url_rewrite
        .as_ref()
        .and_then(|r| r.path.as_ref())
    {
        None => return Ok(target.clone()),
        Some(PathRewrite::Full(full)) => full.clone(),
        Some(PathRewrite::Prefix(replacement)) => target
            .path
            .replace_prefix(ctx.matched_prefix.unwrap_or(""), replacement)?,
    };
    Ok(target.with_path(path))
}

/// Host header per `urlRewrite.authority` (docs/gateway.md §5.2): the dialed address never changes.
fn set_host(ctx: &RouteCtx<'_>, client: &HeaderMap, host: &str, port: u16, out: &mut HeaderMap) {
    let client_value = client
        .get(header::HOST)
        .filter(|v| v.to_str().is_ok_and(|s| !s.is_empty()));
    let client_host = client_value
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let default_port = |p: u16| p == 80 || p == 443;
    let rewrite = ctx
        .route
        .policies
        .url_rewrite
        .as_ref()
        .map(|r| &r.authority);
    let value = match rewrite {
        None | Some(AuthorityRewrite::None) => match client_value {
            // The client's own value, shared rather than copied (the common case).
            Some(v) => {
                out.insert(header::HOST, v.clone());
                return;
            }
            None => authority(host, port),
        },
        Some(AuthorityRewrite::Auto) => {
            if default_port(port) {
                host.to_string()
            } else {
                authority(host, port)
            }
        }
        Some(AuthorityRewrite::Full(full)) => full.clone(),
        Some(AuthorityRewrite::Host(h)) => match client_host.rsplit_once(':') {
            Some((_, p)) if p.parse::<u16>().is_ok() => format!("{h}:{p}"),
            _ => h.clone(),
        },
        Some(AuthorityRewrite::Port(p)) => {
            let h = strip_port(client_host).to_string();
            if default_port(*p) {
                h
            } else {
                format!("{h}:{p}")
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        out.insert(header::HOST, v);
    }
}

/// `traceparent` (this gateway's span as the parent), `tracestate` and `x-correlation-id`.
pub fn add_trace_headers(ex: &Exchange, headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&ex.trace.traceparent()) {
        headers.insert("traceparent", v);
    }
    if let Some(ts) = ex
        .trace
        .tracestate
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert("tracestate", ts);
    }
    if let Ok(v) = HeaderValue::from_str(&ex.correlation_id) {
        headers.insert("x-correlation-id", v);
    }
}
