//! The request pipeline in AgentGateway's order (docs/gateway.md §3): route selection, CORS, jwtAuth,
//! authorization, header modifiers and rewrite, then the backend (plain HTTP, LLM or MCP).
//! Every request's audit event is written here (`write_audit`), once the backend has answered
//! or, for a streamed LLM response, once the stream has ended.

use crate::body::Body;
use crate::config::model::*;
use crate::cors;
use crate::ctx::RouteCtx;
use crate::error::GatewayError;
use crate::exchange::{Exchange, TraceContext, correlation_id};
use crate::gateway::Gateway;
use crate::host::strip_port;
use crate::jwt::AuthOutcome;
use crate::reply::{self, Audit, Failure, Reply};
use crate::request_path::RequestTarget;
use crate::rules::{self, EvalContext, Level, RequestInfo, SourceInfo};
use crate::{forward, llm, mcp, mcp_auth, router};
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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
        decision: Default::default(),
    };

    let target = match checked {
        Ok((target, _)) => target,
        Err(e) => {
            let reply = reply::failed(&mut ex, e);
            return write_audit(&gw, &ex, reply);
        }
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
        let reply = reply::failed(&mut ex, GatewayError::HostMismatch);
        return write_audit(&gw, &ex, reply);
    }
    // RFC 9728 metadata of the listener's `mcpAuthentication` routes (docs/gateway.md §18).
    if let Some(suffix) = target.path.as_str().strip_prefix(mcp_auth::WELL_KNOWN)
        && (suffix.is_empty() || suffix.starts_with('/'))
        && let Some(auth) = metadata_route(&snap, bind_port, &host, suffix)
    {
        let o = mcp_auth::Origin {
            scheme,
            host: &host_header,
        };
        return mcp_auth::metadata_response(&auth, o, req.method());
    }
    let (route, matched_prefix) = match select(&snap, &mut ex, bind_port, &host, &target, &req) {
        Ok(selected) => selected,
        Err(e) => {
            let reply = reply::failed(&mut ex, e);
            return write_audit(&gw, &ex, reply);
        }
    };
    ex.route = Some(route.clone());
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
        let resp = cors::preflight(cors, origin.as_deref().unwrap_or_default());
        ex.decision.stage = "cors";
        ex.decision.reason = "preflight".into();
        let event = ex.event("http", 200);
        return write_audit(&gw, &ex, Reply::new(resp, event));
    }

    let reply = authenticated(
        &gw,
        &snap,
        &mut ex,
        &route,
        matched_prefix.as_deref(),
        target,
        req,
    )
    .await
    .unwrap_or_else(|f| reply::failed(&mut ex, f));
    let mut resp = write_audit(&gw, &ex, reply);
    if let Some(m) = &route.policies.response_headers {
        m.apply(resp.headers_mut());
    }
    if let (Some(cors), Some(origin)) = (&route.policies.cors, origin) {
        cors::apply(cors, &origin, resp.headers_mut());
    }
    if let Some(auth) = &route.policies.mcp_auth {
        let o = mcp_auth::Origin {
            scheme,
            host: &host_header,
        };
        mcp_auth::decorate(auth, o, &mut resp);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        resp.headers_mut().insert("x-correlation-id", v);
    }
    resp
}

/// The `mcpAuthentication` whose resource the well-known `suffix` names on the request's
/// listener; the root form (no suffix) names the listener's only one.
fn metadata_route(
    snap: &Snapshot,
    bind_port: u16,
    host: &str,
    suffix: &str,
) -> Option<Arc<mcp_auth::McpAuth>> {
    let bind = snap.binds.iter().find(|b| b.port == bind_port)?;
    let listener = router::listener(bind, host)?;
    let all: Vec<_> = listener
        .routes
        .iter()
        .filter(|r| r.hostnames.is_empty() || r.hostnames.iter().any(|h| h.matches(host)))
        .filter_map(|r| r.policies.mcp_auth.clone())
        .collect();
    if let Some(a) = all.iter().find(|a| a.serves(suffix)) {
        return Some(a.clone());
    }
    (suffix.trim_end_matches('/').is_empty() && all.len() == 1).then(|| all[0].clone())
}

/// Writes the reply's audit event (now, or when its stream ends) and returns its response.
fn write_audit(gw: &Arc<Gateway>, ex: &Exchange, reply: Reply) -> Response<Body> {
    match reply.audit {
        Audit::Skip => {}
        Audit::Now(r) => {
            let r = *r;
            gw.record(ex, r.event, r.llm.as_ref(), r.mcp.as_ref());
        }
        Audit::Later(done) => {
            let gw = gw.clone();
            tokio::spawn(async move {
                // A relay that ended without an event (it panicked) writes none, as before.
                if let Ok((ex, r)) = done.await {
                    gw.record(&ex, r.event, r.llm.as_ref(), r.mcp.as_ref());
                }
            });
        }
    }
    reply.response
}

/// The route for the request: its bind, listener (by host) and route (by match).
fn select(
    snap: &Snapshot,
    ex: &mut Exchange,
    bind_port: u16,
    host: &str,
    target: &RequestTarget,
    req: &Request<Incoming>,
) -> Result<(Arc<Route>, Option<String>), GatewayError> {
    let bind = snap
        .binds
        .iter()
        .find(|b| b.port == bind_port)
        .ok_or(GatewayError::NoRoute)?;
    let listener = router::listener(bind, host).ok_or(GatewayError::NoListener)?;
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
        host,
        path: target.path.as_str(),
        method: req.method().as_str(),
        headers: req.headers(),
        query: &query,
    };
    let (route, matched) = router::select(listener, &facts).ok_or(GatewayError::NoRoute)?;
    let matched_prefix = match &matched.path {
        PathMatch::Prefix(p) => Some(p.clone()),
        _ => None,
    };
    Ok((route.clone(), matched_prefix))
}

/// jwtAuth, authorization, then the backend.
async fn authenticated(
    gw: &Arc<Gateway>,
    snap: &Arc<Snapshot>,
    ex: &mut Exchange,
    route: &Arc<Route>,
    matched_prefix: Option<&str>,
    target: RequestTarget,
    mut req: Request<Incoming>,
) -> Result<Reply, Failure> {
    if let Some(jwt) = &route.policies.jwt {
        match jwt.authenticate(req.headers()).await {
            AuthOutcome::Authenticated(v) => {
                ex.verified = Some(v.clone());
                // The kill switch (docs/gateway.md §19).
                gw.revocations
                    .check(&snap.settings, route, &v)
                    .map_err(GatewayError::Revocation)?;
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
                return Err(GatewayError::Unauthenticated(f).into());
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
            identity: ex.identity(),
            mcp: None,
            response_code: None,
            llm: None,
            backend: None,
        };
        let d = rules::evaluate(&[(Level::Route, rules_set)], &ctx);
        ex.record_decision("authorization", &d);
        if !d.allow {
            return Err(GatewayError::Denied {
                rule: d.rule,
                reason: d.reason.to_string(),
            }
            .into());
        }
    }

    let backend = pick_backend(&route.backends).ok_or(GatewayError::NoBackend)?;
    let ctx = RouteCtx::new(gw, snap, route, backend, matched_prefix, target);
    match &backend.kind {
        // Not boxed separately: measured, a second box per MCP request left each connection
        // with an MCP session ≈ 4 KiB larger (docs/performance.md §6.4).
        BackendKind::Mcp(m) => Ok(mcp::handle(&ctx, ex, m, req).await),
        BackendKind::Ai(ai) => Ok(llm::handle(&ctx, ex, ai, req).await),
        BackendKind::Host { host, port } => forward::http(&ctx, ex, host, *port, req).await,
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

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}
