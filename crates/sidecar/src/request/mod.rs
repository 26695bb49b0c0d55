//! One request, in the processing order of docs/sidecar.md §2.1: caller check, route, inbound
//! authentication, query binding, agent parameters, effective options, option checks, token
//! acquisition, response.

pub mod agent;
pub mod downstream;
pub mod options;

use crate::Sidecar;
use crate::config::ApiOptions;
use crate::http::peer::Peer;
use crate::http::query::{self, BoundQuery};
use crate::http::response::{self, Body, Failure, UNEXPECTED};
use crate::http::route::{Listener, RouteKind, RouteMatch, match_route};
use crate::inbound::{InboundError, InboundToken};
use crate::token::{AcquireError, Flow, TokenRequest, UserRef};
use agent::Agent;
use bytes::Bytes;
use downstream::{DownstreamError, OutboundRequest};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use options::MergeOutcome;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

const NO_ACCOUNT: &str = "No account or login hint was passed to the AcquireTokenSilent call. The request needs a user: send a bearer token, pass AgentUsername or AgentUserId, or request an app token.";

/// What the access log says about a request.
#[derive(Default)]
struct Trace {
    route: &'static str,
    api: Option<String>,
    flow: Option<&'static str>,
    agent: Option<String>,
    upn_hash: Option<String>,
    query: Option<String>,
    token_source: Option<&'static str>,
    token_id: Option<String>,
}

/// The first GUID among the correlation headers (§13.2).
fn correlation_from(headers: &HeaderMap) -> Option<Uuid> {
    [
        "client-request-id",
        "x-ms-client-request-id",
        "x-correlation-id",
    ]
    .iter()
    .filter_map(|h| headers.get(*h)?.to_str().ok())
    .find_map(|v| agentid_claims::guid::parse(v.trim()).filter(|g| !g.is_nil()))
}

fn short_sha(s: &str) -> String {
    let mut h = agentid_claims::jwt::short_hash(s);
    h.truncate(8);
    h
}

/// Query keys for the log: names only, with the values of a few harmless keys.
fn loggable_query(q: &BoundQuery) -> String {
    let out = q.keys.clone();
    let o = &q.overrides;
    let mut values = Vec::new();
    if !o.scopes.is_empty() {
        values.push(format!("Scopes={}", o.scopes.join(" ")));
    }
    if let Some(b) = o.request_app_token {
        values.push(format!("RequestAppToken={b}"));
    }
    if let Some(t) = &o.tenant {
        values.push(format!("Tenant={t}"));
    }
    if let Some(f) = o.force_refresh {
        values.push(format!("ForceRefresh={f}"));
    }
    if values.is_empty() {
        out.join(",")
    } else {
        format!("{} ({})", out.join(","), values.join(", "))
    }
}

fn inbound_failure(e: InboundError) -> Failure {
    match e {
        InboundError::Missing => Failure::MissingBearer,
        InboundError::Invalid(r) => Failure::InvalidBearer(r),
        InboundError::KeysUnavailable(d) => Failure::Unavailable {
            detail: d,
            retry_after: 5,
        },
        e @ InboundError::InsufficientScope(_) => Failure::Forbidden(e.to_string()),
    }
}

fn acquire_failure(e: AcquireError, cid: Uuid) -> Failure {
    match e {
        AcquireError::Refused(d) => Failure::Unauthorized(d),
        e @ AcquireError::Unavailable { .. } => {
            let retry_after = match &e {
                AcquireError::Unavailable { retry_after, .. } => *retry_after,
                _ => 5,
            };
            Failure::Unavailable {
                detail: e.to_string(),
                retry_after,
            }
        }
        e @ AcquireError::Credential(_) => Failure::Internal(e.to_string()),
        AcquireError::Unexpected(reason) => {
            tracing::error!(event = "token_acquisition_failed", correlation_id = %cid, reason = %reason, "unexpected failure while acquiring a token");
            Failure::Internal(UNEXPECTED.into())
        }
    }
}

fn route_flag(s: &Sidecar, kind: RouteKind) -> bool {
    let f = &s.config.sidecar.allow_overrides;
    match kind {
        RouteKind::AuthorizationHeader => f.get_authorization_header,
        RouteKind::AuthorizationHeaderUnauthenticated => f.get_authorization_header_unauthenticated,
        RouteKind::DownstreamApi => f.call_downstream_api,
        RouteKind::DownstreamApiUnauthenticated => f.call_downstream_api_unauthenticated,
        _ => false,
    }
}

fn valid_method(m: &str) -> Option<Method> {
    if m.is_empty()
        || !m
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return None;
    }
    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()
}

impl Sidecar {
    /// Handles one request that arrived on `listener` from `peer`.
    pub async fn handle<B>(&self, listener: Listener, peer: Peer, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let mut cid = correlation_from(req.headers()).unwrap_or_else(Uuid::new_v4);
        let method = req.method().clone();
        let mut trace = Trace {
            route: "unmatched",
            ..Trace::default()
        };
        let result = self
            .dispatch(listener, peer, req, &mut cid, &mut trace)
            .await;
        let cid_text = cid.to_string();
        let resp = match result {
            Ok(r) => r,
            Err(f) => f.into_response(&cid_text),
        };
        let resp = response::finish(resp, &cid_text);
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics
            .request(trace.route, status, elapsed.as_secs_f64());
        if trace.route != "healthz" && trace.route != "metrics" {
            tracing::info!(
                target: "agentid_sidecar::access",
                event = "request",
                correlation_id = %cid_text,
                route = trace.route,
                method = %method,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                api = trace.api.as_deref(),
                flow = trace.flow,
                agent_identity = trace.agent.as_deref(),
                upn_sha256_8 = trace.upn_hash.as_deref(),
                query = trace.query.as_deref(),
                token_cache = trace.token_source,
                token = trace.token_id.as_deref(),
                "request"
            );
        }
        resp
    }

    async fn dispatch<B>(
        &self,
        listener: Listener,
        peer: Peer,
        req: Request<B>,
        cid: &mut Uuid,
        trace: &mut Trace,
    ) -> Result<Response<Body>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let m = match_route(listener, req.method(), req.uri().path());
        let is_health = matches!(
            m,
            RouteMatch::Found {
                kind: RouteKind::Healthz,
                ..
            }
        );
        // 1. Caller check (main listener only; /healthz is exempt).
        if matches!(listener, Listener::Main { .. })
            && !is_health
            && !self.config.sidecar.allow_remote_callers
            && !peer.is_local()
        {
            if let RouteMatch::Found { kind, .. } = &m {
                trace.route = kind.label();
            }
            return Err(Failure::RemoteCaller);
        }
        // 2. Route and method.
        let (kind, api) = match m {
            RouteMatch::NotFound => return Err(Failure::NotFound),
            RouteMatch::MethodNotAllowed { kind, allow } => {
                trace.route = kind.label();
                return Err(Failure::MethodNotAllowed(allow));
            }
            RouteMatch::Found { kind, api } => (kind, api),
        };
        trace.route = kind.label();
        match kind {
            RouteKind::Healthz if self.drain.is_draining() => Ok(response::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "Draining",
            )),
            RouteKind::Healthz => Ok(response::text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "Healthy",
            )),
            RouteKind::Metrics => Ok(response::text(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                self.metrics.render(),
            )),
            RouteKind::OpenApi => match &self.openapi {
                Some(doc) => {
                    let mut r = response::json(StatusCode::OK, doc.to_vec());
                    r.headers_mut()
                        .insert(CONTENT_TYPE, http::HeaderValue::from_static(response::JSON));
                    Ok(r)
                }
                None => Err(Failure::NotFound),
            },
            RouteKind::Validate => self.validate_route(&req).await,
            _ => {
                let api = api.unwrap_or_default();
                self.token_route(kind, &api, req, cid, trace).await
            }
        }
    }

    async fn validate_route<B>(&self, req: &Request<B>) -> Result<Response<Body>, Failure> {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let tc = self
            .validator
            .validate(header)
            .await
            .map_err(inbound_failure)?;
        self.validator.check_scopes(&tc).map_err(inbound_failure)?;
        let body = json!({
            "protocol": "Bearer",
            "token": tc.raw(),
            "claims": tc.jwt.claims,
        });
        Ok(response::json(
            StatusCode::OK,
            serde_json::to_vec(&body).unwrap_or_default(),
        ))
    }

    async fn token_route<B>(
        &self,
        kind: RouteKind,
        api: &str,
        req: Request<B>,
        cid: &mut Uuid,
        trace: &mut Trace,
    ) -> Result<Response<Body>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // 3. Inbound authentication.
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let tc: Option<Arc<InboundToken>> = if kind.requires_bearer() {
            let tc = self
                .validator
                .validate(header)
                .await
                .map_err(inbound_failure)?;
            self.validator.check_scopes(&tc).map_err(inbound_failure)?;
            Some(tc)
        } else if header.is_some() {
            match self.validator.validate(header).await {
                Ok(tc) => Some(tc),
                Err(e) => {
                    tracing::debug!(correlation_id = %cid, reason = %e, "invalid bearer on an unauthenticated route; treated as anonymous");
                    None
                }
            }
        } else {
            None
        };

        // 4. Query binding (never fails).
        let q = query::bind(req.uri().query());
        trace.query = Some(loggable_query(&q));
        for k in &q.ignored {
            tracing::debug!(correlation_id = %cid, key = %k, "unsupported override ignored");
        }

        // 5. Agent parameters: validation, then authorization.
        let agent = agent::validate(&q.agent).map_err(|e| Failure::BadRequest(e.to_string()))?;
        trace.agent = agent.identity.clone();
        if let Some(UserRef::Username(u)) = &agent.user {
            trace.upn_hash = Some(short_sha(&u.to_lowercase()));
        }
        let flag = route_flag(self, kind);
        let allow_list = self.config.sidecar.allowed_agents.as_deref();
        if let Err(e) = agent::authorize(&agent, kind, allow_list, flag) {
            tracing::warn!(event = "agent_parameters_rejected", correlation_id = %cid, route = kind.label(), agent_identity = agent.identity.as_deref(), "agent parameters refused");
            return Err(Failure::Forbidden(e.to_string()));
        }

        // 6. Effective options.
        let default = ApiOptions::default();
        let (configured_name, configured) = match self.config.apis.get(api) {
            Some((n, o)) => (Some(n), o),
            None => (None, &default),
        };
        trace.api = Some(configured_name.unwrap_or("_unconfigured").to_string());
        if q.overrides.base_url_given {
            tracing::warn!(event = "base_url_override_ignored", correlation_id = %cid, "optionsOverride.BaseUrl is always ignored");
        }
        let (eff, outcome) =
            options::effective(configured, &q.overrides, flag, kind.is_unauthenticated());
        if matches!(
            outcome,
            MergeOutcome::Ignored | MergeOutcome::IgnoredExceptRequestAppToken
        ) {
            tracing::warn!(event = "overrides_ignored", correlation_id = %cid, route = kind.label(), "optionsOverride.* is not allowed on this route and was ignored");
        }
        if eff.acquire.managed_identity_client_id.is_some() {
            tracing::debug!(correlation_id = %cid, "ManagedIdentity.UserAssignedClientId has no effect");
        }
        if eff.acquire.long_running_session_key.is_some() {
            tracing::debug!(correlation_id = %cid, "LongRunningWebApiSessionKey has no effect");
        }
        if let Some(c) = eff.acquire.correlation_id {
            *cid = c;
        }

        // 7. Option checks.
        if eff.scopes.is_empty() {
            return Err(Failure::BadRequest(format!(
                "No scopes found for the API '{api}' or in optionsOverride. 'scopes' needs to be either a single value or a list of values."
            )));
        }
        let tenant = match &eff.acquire.tenant {
            Some(t) if !options::valid_tenant(t) => {
                return Err(Failure::BadRequest("Invalid tenant override.".into()));
            }
            Some(t) => t.clone(),
            None => self.config.tenant_id.clone(),
        };
        if eff.acquire.pop_public_key.is_some() {
            return Err(Failure::BadRequest(
                "Proof-of-possession (PoP) tokens are not supported by agentid-sidecar.".into(),
            ));
        }
        if outcome == MergeOutcome::Merged
            && let Some(fmi) = &q.overrides.fmi_path
            && eff.acquire.fmi_path.as_ref() == Some(fmi)
        {
            agent::authorize_fmi_path(fmi, allow_list)
                .map_err(|e| Failure::Forbidden(e.to_string()))?;
        }

        let mut outbound = None;
        if kind.is_downstream() {
            let base = eff.base_url.as_ref().ok_or_else(|| {
                Failure::BadRequest(format!("No BaseUrl configured for the API '{api}'."))
            })?;
            let method = valid_method(&eff.http_method).ok_or_else(|| {
                Failure::BadRequest(format!("Invalid HttpMethod '{}'.", eff.http_method))
            })?;
            let url = downstream::build_url(base, &eff.relative_path, &eff.extra_query)
                .map_err(|e| Failure::BadRequest(e.to_string()))?;
            for (k, _) in &eff.extra_headers {
                if downstream::is_reserved(k) {
                    tracing::warn!(event = "reserved_header_ignored", correlation_id = %cid, header = %k, "a reserved header cannot be set through ExtraHeaderParameters");
                }
            }
            let inbound_ct = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let max = self.config.sidecar.max_request_body_bytes;
            let too_large = || Failure::TooLarge(format!("The request body exceeds {max} bytes."));
            if req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n > max)
            {
                return Err(too_large());
            }
            let limited = http_body_util::Limited::new(req.into_body(), max as usize);
            let bytes = match limited.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
                Err(_) => {
                    return Err(Failure::BadRequest(
                        "The request body could not be read.".into(),
                    ));
                }
            };
            let body = match inbound_ct {
                Some(ct) => Some((bytes, ct)),
                None if !bytes.is_empty() => Some((bytes, eff.content_type.clone())),
                None => None,
            };
            outbound = Some((url, method, body));
        }

        // 8. Flow selection and token acquisition.
        let token_request = self.select_flow(&agent, &eff, tc, tenant, *cid)?;
        trace.flow = Some(token_request.flow.label());
        let (token, source) = self
            .engine
            .acquire(token_request.clone())
            .await
            .map_err(|e| acquire_failure(e, *cid))?;
        trace.token_source = Some(source.label());
        trace.token_id = Some(token.log_id.to_string());
        let token = token.token;

        // 9. Respond, or call the downstream API.
        let Some((url, method, body)) = outbound else {
            let body = serde_json::to_vec(&json!({
                "authorizationHeader": format!("Bearer {token}"),
            }))
            .unwrap_or_default();
            return Ok(response::json(StatusCode::OK, body));
        };
        let api_label = configured_name.unwrap_or("_unconfigured");
        let mut call = OutboundRequest {
            url,
            method,
            token: &token,
            accept: &eff.accept_header,
            body,
            extra_headers: &eff.extra_headers,
        };
        let mut result = self.call_downstream(api, api_label, &call).await?;
        if result.status_code == 401
            && let Some(claims) = downstream::claims_challenge(&result.www_authenticate)
        {
            let mut again = token_request;
            again.claims = Some(claims);
            let (fresh, _) = self
                .engine
                .acquire(again)
                .await
                .map_err(|e| acquire_failure(e, *cid))?;
            let fresh = fresh.token;
            call.token = &fresh;
            result = self.call_downstream(api, api_label, &call).await?;
        }
        Ok(response::json(
            StatusCode::OK,
            serde_json::to_vec(&result).unwrap_or_default(),
        ))
    }

    async fn call_downstream(
        &self,
        api: &str,
        api_label: &str,
        call: &OutboundRequest<'_>,
    ) -> Result<downstream::DownstreamResult, Failure> {
        match self.downstream.call(call).await {
            Ok(r) => {
                let class = match r.status_code {
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    500..=599 => "5xx",
                    _ => "error",
                };
                self.metrics.downstream(api_label, class);
                Ok(r)
            }
            Err(DownstreamError::Timeout) => {
                self.metrics.downstream(api_label, "timeout");
                Err(Failure::GatewayTimeout(format!(
                    "The downstream API '{api}' did not respond within {} s.",
                    self.downstream.timeout.as_secs()
                )))
            }
            Err(e @ DownstreamError::TooLarge(_)) => {
                self.metrics.downstream(api_label, "error");
                Err(Failure::BadGateway(e.to_string()))
            }
            Err(DownstreamError::Unreachable(reason)) => {
                self.metrics.downstream(api_label, "error");
                Err(Failure::BadGateway(format!(
                    "The downstream API '{api}' could not be reached: {reason}."
                )))
            }
            Err(e @ DownstreamError::Escapes) => Err(Failure::BadRequest(e.to_string())),
        }
    }

    /// §9.1: the first matching row wins.
    fn select_flow(
        &self,
        agent: &Agent,
        eff: &ApiOptions,
        tc: Option<Arc<InboundToken>>,
        tenant: String,
        cid: Uuid,
    ) -> Result<TokenRequest, Failure> {
        let flow = match (&agent.identity, &agent.user, eff.request_app_token, &tc) {
            (Some(_), Some(_), _, _) => Flow::AgentUser,
            (Some(_), None, true, _) => Flow::AgentApp,
            (Some(_), None, false, Some(_)) => Flow::AgentObo,
            (None, _, true, _) => Flow::App,
            (None, _, false, Some(_)) => Flow::Obo,
            (_, _, false, None) => return Err(Failure::Unauthorized(NO_ACCOUNT.into())),
        };
        Ok(TokenRequest {
            flow,
            tenant,
            scopes: eff.scopes.clone(),
            agent: agent.identity.clone(),
            user: agent.user.clone(),
            tc: matches!(flow, Flow::AgentObo | Flow::Obo)
                .then_some(tc)
                .flatten(),
            fmi_path: (flow == Flow::App)
                .then(|| eff.acquire.fmi_path.clone())
                .flatten(),
            claims: eff.acquire.claims.clone(),
            force_refresh: eff.acquire.force_refresh,
            correlation_id: cid,
        })
    }
}
