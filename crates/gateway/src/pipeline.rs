//! The request pipeline in AgentGateway's order (gateway.md §3): route selection, CORS, jwtAuth,
//! authorization, header modifiers and rewrite, then the backend (plain HTTP, LLM or MCP).

use crate::audit::UpstreamPart;
use crate::body::{self, Body};
use crate::config::model::*;
use crate::exchange::{Exchange, TraceContext, correlation_id};
use crate::gateway::Gateway;
use crate::jwt::AuthOutcome;
use crate::request_path::{PathError, RequestTarget};
use crate::rules::{self, EvalContext, Level, RequestInfo, SourceInfo};
use crate::{llm, mcp, router};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Headers never forwarded hop to hop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

pub async fn handle(
    gw: Arc<Gateway>,
    bind_port: u16,
    req: Request<Incoming>,
    peer: SocketAddr,
    scheme: &'static str,
) -> Response<Body> {
    let snap = gw.snapshot();
    let start = Instant::now();
    let headers = req.headers();
    let correlation = correlation_id(headers);
    let trace = TraceContext::from_headers(headers);
    let host_header = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let host = strip_port(&host_header).to_string();
    // The one canonical path and query (request_path): routing, policy, rewrite, audit and the
    // upstream URL all read it; a target without one is refused below.
    let checked = RequestTarget::from_uri(req.uri())
        .and_then(|t| t.to_http_uri(req.uri()).map(|uri| (t, uri)));
    let mut request_info = RequestInfo::from_http(
        req.method(),
        checked.as_ref().map_or(req.uri(), |(_, uri)| uri),
        req.version(),
        headers,
        scheme,
        chrono::Utc::now(),
    );
    if checked.is_err() {
        // Refused below: the audit event keeps a bounded copy of what was sent.
        request_info.path = truncate(&request_info.path, 512);
        request_info.path_and_query = truncate(&request_info.path_and_query, 512);
        request_info.uri = truncate(&request_info.uri, 512);
    }
    let mut ex = Exchange {
        start,
        correlation_id: correlation.clone(),
        trace,
        bind: bind_port,
        listener: None,
        route: None,
        source: peer,
        request: request_info,
        source_info: SourceInfo {
            address: peer.ip().to_string(),
            port: peer.port(),
        },
        verified: None,
        identity: crate::identity::Identity::none(),
        decision: Default::default(),
    };

    let target = match checked {
        Ok((target, _)) => target,
        Err(e) => return finish_error(&gw, &ex, e.status(), e.code(), &e.to_string()),
    };
    if let (Some(authority), Some(host_value)) = (
        req.uri().authority(),
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok()),
    ) && !authority.as_str().eq_ignore_ascii_case(host_value)
    {
        // Absolute-form (HTTP/1.1) or `:authority` (HTTP/2) naming another host than `Host`:
        // the gateway would route on one and the upstream could read the other.
        return finish_error(
            &gw,
            &ex,
            StatusCode::BAD_REQUEST,
            "invalid_host",
            "the request target's authority and the Host header differ",
        );
    }

    let Some(bind) = snap.binds.iter().find(|b| b.port == bind_port) else {
        return finish_error(
            &gw,
            &ex,
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no route matches this request",
        );
    };
    let Some(listener) = router::listener(bind, &host) else {
        return finish_error(
            &gw,
            &ex,
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no listener for this host",
        );
    };
    ex.listener = Some(
        listener
            .name
            .clone()
            .unwrap_or_else(|| listener.index.to_string()),
    );
    let query_string = target.query.as_ref().map_or("", |q| q.as_str());
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query_string.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let facts = router::RequestFacts {
        host: &host,
        path: target.path.as_str(),
        method: req.method().as_str(),
        headers: req.headers(),
        query: &query,
    };
    let Some((route, matched)) = router::select(listener, &facts) else {
        return finish_error(
            &gw,
            &ex,
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no route matches this request",
        );
    };
    let route = route.clone();
    ex.route = Some(route.clone());
    let matched_prefix = match &matched.path {
        PathMatch::Prefix(p) => Some(p.clone()),
        _ => None,
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    // CORS preflights are answered before authentication.
    if let Some(cors) = &route.policies.cors
        && req.method() == http::Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let resp = preflight(cors, origin.as_deref().unwrap_or_default());
        ex.decision.stage = "cors";
        ex.decision.reason = "preflight".into();
        gw.record(&ex, ex.event("http", 200), None);
        return resp;
    }

    let mut resp = authenticated(
        &gw,
        &snap,
        &mut ex,
        route.clone(),
        matched_prefix,
        target,
        req,
    )
    .await;
    if let Some(m) = &route.policies.response_headers {
        m.apply(resp.headers_mut());
    }
    if let (Some(cors), Some(origin)) = (&route.policies.cors, origin) {
        cors_headers(cors, &origin, resp.headers_mut());
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        resp.headers_mut().insert("x-correlation-id", v);
    }
    resp
}

async fn authenticated(
    gw: &Arc<Gateway>,
    snap: &Arc<Snapshot>,
    ex: &mut Exchange,
    route: Arc<Route>,
    matched_prefix: Option<String>,
    target: RequestTarget,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if let Some(jwt) = &route.policies.jwt {
        match jwt.authenticate(req.headers()).await {
            AuthOutcome::Authenticated(v) => {
                ex.identity = v.identity.clone();
                ex.verified = Some(v);
            }
            AuthOutcome::Anonymous(_) => {}
            AuthOutcome::Rejected(f) => {
                gw.metrics
                    .auth_failures
                    .get_or_create(&vec![
                        ("route".into(), route.id.clone()),
                        ("reason".into(), f.reason.as_str().into()),
                    ])
                    .inc();
                ex.decision = crate::audit::DecisionPart {
                    result: "deny",
                    stage: "jwtAuth",
                    reason: f.reason.as_str().into(),
                    ..Default::default()
                };
                let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::UNAUTHORIZED);
                let mut resp =
                    body::gateway_error(status, f.reason.as_str(), &f.message, &ex.correlation_id);
                if status == StatusCode::UNAUTHORIZED {
                    let challenge = if f.reason.as_str() == "token_missing" {
                        "Bearer realm=\"agentid\"".to_string()
                    } else {
                        format!(
                            "Bearer realm=\"agentid\", error=\"invalid_token\", error_description=\"{}\"",
                            f.reason.as_str()
                        )
                    };
                    if let Ok(v) = HeaderValue::from_str(&challenge) {
                        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    }
                }
                gw.record(ex, ex.event("http", status.as_u16()), None);
                return resp;
            }
        }
        // The credential never travels upstream except through backendAuth.
        req.headers_mut().remove(jwt.header());
    }

    if let Some(rules_set) = &route.policies.authorization {
        let ctx = EvalContext {
            request: &ex.request,
            source: &ex.source_info,
            jwt: ex.claims(),
            identity: &ex.identity,
            mcp: None,
            response_code: None,
            llm: None,
            backend: None,
        };
        let d = rules::evaluate(&[(Level::Route, rules_set)], &ctx);
        ex.record_decision("authorization", &d);
        if !d.allow {
            let msg = match &d.rule {
                Some(rule) => format!("denied by authorization rule `{rule}` ({})", d.reason),
                None => format!("denied by authorization rules ({})", d.reason),
            };
            let resp = body::gateway_error(
                StatusCode::FORBIDDEN,
                "authorization_denied",
                &msg,
                &ex.correlation_id,
            );
            gw.record(ex, ex.event("http", 403), None);
            return resp;
        }
    }

    let Some(backend) = pick_backend(&route.backends) else {
        return finish_error(
            gw,
            ex,
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            "no backend with weight > 0",
        );
    };
    match &backend.kind {
        BackendKind::Mcp(m) => mcp::handle(gw, snap, ex, &route, backend, m.clone(), req).await,
        BackendKind::Ai(ai) => {
            let policy = route.policies.upstream.overlay(&backend.policies);
            llm::handle(
                gw,
                snap,
                ex,
                &route,
                backend,
                ai.clone(),
                policy,
                matched_prefix,
                target,
                req,
            )
            .await
        }
        BackendKind::Host { host, port } => {
            let policy = route.policies.upstream.overlay(&backend.policies);
            forward_http(
                gw,
                snap,
                ex,
                &route,
                backend,
                host,
                *port,
                policy,
                matched_prefix,
                target,
                req,
            )
            .await
        }
    }
}

fn pick_backend(backends: &[Backend]) -> Option<&Backend> {
    let total: u32 = backends.iter().map(|b| b.weight).sum();
    if total == 0 {
        return None;
    }
    if backends.len() == 1 {
        return backends.first();
    }
    let mut pick = rand::random::<u32>() % total;
    for b in backends {
        if pick < b.weight {
            return Some(b);
        }
        pick -= b.weight;
    }
    backends.last()
}

#[allow(clippy::too_many_arguments)]
async fn forward_http(
    gw: &Arc<Gateway>,
    snap: &Arc<Snapshot>,
    ex: &mut Exchange,
    route: &Arc<Route>,
    backend: &Backend,
    host: &str,
    port: u16,
    policy: UpstreamPolicy,
    matched_prefix: Option<String>,
    target: RequestTarget,
    req: Request<Incoming>,
) -> Response<Body> {
    let tls = policy.tls.is_some();
    let (parts, incoming) = req.into_parts();
    let url = match rewrite_path(route, matched_prefix.as_deref(), &target)
        .and_then(|t| t.upstream_url(if tls { "https" } else { "http" }, &authority(host, port)))
    {
        Ok(url) => url,
        Err(e) => return finish_error(gw, ex, e.status(), e.code(), &e.to_string()),
    };
    let mut headers = forwardable_headers(&parts.headers);
    set_host(route, &parts.headers, host, port, &mut headers);
    add_trace_headers(ex, &mut headers);
    if let Some(h) = &route.policies.upstream.headers {
        h.apply(&mut headers);
    }
    if let Some(h) = &backend.policies.headers {
        h.apply(&mut headers);
    }
    let credential = match apply_auth(gw, ex, route, &policy, &mut headers, &backend.name).await {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let client = match gw.clients.get(policy.tls.as_deref()) {
        Ok(c) => c,
        Err(e) => return finish_error(gw, ex, StatusCode::BAD_GATEWAY, "upstream_unavailable", &e),
    };
    let body = reqwest::Body::wrap_stream(http_body_util::BodyDataStream::new(incoming));
    let upstream_start = Instant::now();
    let send = client
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send();
    let header_timeout = route
        .policies
        .backend_request_timeout
        .unwrap_or(snap.settings.timeouts.http_response_headers);
    let result = tokio::time::timeout(header_timeout, send).await;
    let upstream_resp = match result {
        Err(_) => {
            return finish_upstream_error(
                gw,
                ex,
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                &format!(
                    "upstream did not answer within {}",
                    crate::config::duration::render(header_timeout)
                ),
                credential,
            );
        }
        Ok(Err(e)) => {
            return finish_upstream_error(
                gw,
                ex,
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                &format!(
                    "upstream {} failed: {}",
                    authority(host, port),
                    error_chain(&e)
                ),
                credential,
            );
        }
        Ok(Ok(r)) => r,
    };
    let status = upstream_resp.status();
    let resp = stream_response(upstream_resp);
    let upstream_ms = upstream_start.elapsed().as_secs_f64() * 1000.0;
    let mut event = ex.event("http", status.as_u16());
    event.upstream = Some(UpstreamPart {
        target: Some(backend.name.clone()),
        status: Some(status.as_u16()),
        duration_ms: Some(upstream_ms),
        error: None,
        credential,
    });
    gw.record(ex, event, None);
    resp
}

/// Relays an upstream response, streaming its body, minus hop-by-hop headers.
pub fn stream_response(upstream: reqwest::Response) -> Response<Body> {
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (k, v) in upstream.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) && k != header::CONTENT_LENGTH {
            headers.append(k.clone(), v.clone());
        }
    }
    let stream =
        futures_util::TryStreamExt::map_err(upstream.bytes_stream(), |e| -> body::BoxError {
            Box::new(e)
        });
    let frames = futures_util::TryStreamExt::map_ok(stream, http_body::Frame::data);
    let mut resp = Response::new(http_body_util::BodyExt::boxed(
        http_body_util::StreamBody::new(frames),
    ));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Applies `urlRewrite.path` (gateway.md §5.2) to the canonical target; the query is kept.
/// The result is canonical too: the config's rewrite values were normalised at load.
pub fn rewrite_path(
    route: &Route,
    matched_prefix: Option<&str>,
    target: &RequestTarget,
) -> Result<RequestTarget, PathError> {
    let path = match route
        .policies
        .url_rewrite
        .as_ref()
        .and_then(|r| r.path.as_ref())
    {
        None => return Ok(target.clone()),
        Some(PathRewrite::Full(full)) => full.clone(),
        Some(PathRewrite::Prefix(replacement)) => target
            .path
            .replace_prefix(matched_prefix.unwrap_or(""), replacement)?,
    };
    Ok(target.with_path(path))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// The client's headers minus hop-by-hop ones (the gateway adds no `X-Forwarded-*`).
pub fn forwardable_headers(src: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in src {
        if !HOP_BY_HOP.contains(&k.as_str()) && k != header::CONTENT_LENGTH {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// Host header per `urlRewrite.authority` (gateway.md §5.2): the dialed address never changes.
pub fn set_host(route: &Route, client: &HeaderMap, host: &str, port: u16, out: &mut HeaderMap) {
    let client_host = client
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let default_port = |p: u16| p == 80 || p == 443;
    let value = match route.policies.url_rewrite.as_ref().map(|r| &r.authority) {
        None | Some(AuthorityRewrite::None) => {
            if client_host.is_empty() {
                authority(host, port)
            } else {
                client_host
            }
        }
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
            let h = strip_port(&client_host).to_string();
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

/// Inserts the upstream credential per `backendAuth` (gateway.md §8). Returns what kind was
/// used, for the audit event; an exchange failure becomes the response.
pub async fn apply_auth(
    gw: &Arc<Gateway>,
    ex: &mut Exchange,
    route: &Route,
    policy: &UpstreamPolicy,
    headers: &mut HeaderMap,
    target: &str,
) -> Result<&'static str, Box<Response<Body>>> {
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
            Ok("passthrough")
        }
        BackendAuth::Key {
            value,
            header,
            prefix,
        } => {
            if let Ok(v) = HeaderValue::from_str(&format!("{prefix}{}", value.0)) {
                headers.insert(header.clone(), v);
            }
            Ok("key")
        }
        BackendAuth::OnBehalfOf(obo) => match gw.obo.exchange(gw, ex, route, obo, target).await {
            Ok(value) => {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(obo.header.clone(), v);
                }
                Ok("onBehalfOf")
            }
            Err(failure) => {
                ex.decision = crate::audit::DecisionPart {
                    result: "deny",
                    stage: "tokenExchange",
                    reason: failure.code.to_string(),
                    ..Default::default()
                };
                let resp = body::gateway_error(
                    failure.status,
                    failure.code,
                    &failure.message,
                    &ex.correlation_id,
                );
                gw.record(ex, ex.event("http", failure.status.as_u16()), None);
                Err(Box::new(resp))
            }
        },
    }
}

pub fn finish_error(
    gw: &Arc<Gateway>,
    ex: &Exchange,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Body> {
    let mut event = ex.event("http", status.as_u16());
    if status.is_client_error() && ex.route.is_none() {
        event.decision.result = "deny";
        event.decision.reason = code.to_string();
    }
    gw.record(ex, event, None);
    body::gateway_error(status, code, message, &ex.correlation_id)
}

fn finish_upstream_error(
    gw: &Arc<Gateway>,
    ex: &Exchange,
    status: StatusCode,
    code: &str,
    message: &str,
    credential: &'static str,
) -> Response<Body> {
    let mut event = ex.event("http", status.as_u16());
    event.upstream = Some(UpstreamPart {
        target: None,
        status: None,
        duration_ms: None,
        error: Some(message.to_string()),
        credential,
    });
    gw.record(ex, event, None);
    body::gateway_error(status, code, message, &ex.correlation_id)
}

fn preflight(cors: &Cors, origin: &str) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    if !origin_allowed(cors, origin) {
        return resp;
    }
    let h = resp.headers_mut();
    allow_origin(cors, origin, h);
    let join = |v: &[String]| v.join(", ");
    if !cors.allow_methods.is_empty()
        && let Ok(v) = HeaderValue::from_str(&join(&cors.allow_methods))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if !cors.allow_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&join(&cors.allow_headers))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = cors.max_age {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    if cors.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    resp
}

fn origin_allowed(cors: &Cors, origin: &str) -> bool {
    cors.allow_origins.iter().any(|o| o == "*" || o == origin)
}

fn allow_origin(cors: &Cors, origin: &str, h: &mut HeaderMap) {
    let star = cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials;
    if star {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn cors_headers(cors: &Cors, origin: &str, h: &mut HeaderMap) {
    if !origin_allowed(cors, origin) {
        return;
    }
    allow_origin(cors, origin, h);
    if !cors.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
    if cors.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}
