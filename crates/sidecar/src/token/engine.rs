//! Token acquisition (docs/sidecar.md §9): the legs of each flow, the cache in front of each leg,
//! single flight for concurrent misses, stale tokens during an outage, and the mapping of
//! authority outcomes to what the caller sees.

use super::authority::{Authority, AuthorityError, Issued};
use super::cache::{CacheKey, CachedToken, Lookup, TokenCache, scope_key};
use super::credentials::Credentials;
use super::form::{self, CredentialParams, EXCHANGE_SCOPE, UserRef};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::inbound::InboundToken;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

const ACQUISITION_DEADLINE: Duration = Duration::from_secs(25);
const STALE_HOLD: i64 = 30;
const DEFAULT_RETRY_AFTER: u64 = 5;

/// The five flows of §9.1 (`flow` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    App,
    AgentApp,
    AgentObo,
    AgentUser,
    Obo,
}

impl Flow {
    pub fn label(self) -> &'static str {
        match self {
            Flow::App => "app",
            Flow::AgentApp => "agent_app",
            Flow::AgentObo => "agent_obo",
            Flow::AgentUser => "agent_user",
            Flow::Obo => "obo",
        }
    }
}

/// One request for a token, fully resolved (overrides merged, agent parameters validated).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub flow: Flow,
    pub tenant: String,
    pub scopes: Vec<String>,
    /// Lower-case agent id for the agent flows.
    pub agent: Option<String>,
    pub user: Option<UserRef>,
    pub tc: Option<Arc<InboundToken>>,
    /// `fmi_path` of the app flow.
    pub fmi_path: Option<String>,
    /// Claims challenge for the final leg.
    pub claims: Option<String>,
    pub force_refresh: bool,
    pub correlation_id: Uuid,
}

/// How the token was obtained (the `result` of the cache-lookup metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Hit,
    Miss,
    Stale,
    Bypass,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
            Source::Stale => "stale",
            Source::Bypass => "bypass",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// The authority refused a leg: 401 with this detail.
    #[error("{0}")]
    Refused(String),
    /// The authority could not be reached and no cached token can be used: 503.
    #[error(
        "The token authority {host} is unavailable ({reason}) and no cached token can be used."
    )]
    Unavailable {
        host: String,
        reason: String,
        retry_after: u64,
    },
    /// Every credential failed to load: 500.
    #[error("No usable client credential: {0}")]
    Credential(String),
    /// Anything else: 500 "An unexpected error occurred."
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// The kill switch's refusals as the caller sees them: 401, or 503 while the feed is stale
/// on a sidecar that fails closed (docs/sidecar.md §18).
fn refusal(r: super::revocation::Refusal) -> AcquireError {
    match r {
        super::revocation::Refusal::Revoked(detail) => AcquireError::Refused(detail),
        super::revocation::Refusal::Unavailable { url } => AcquireError::Unavailable {
            host: url,
            reason: "the revocation feed has not been refreshed within its grace period".into(),
            retry_after: DEFAULT_RETRY_AFTER,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    T1,
    T2x,
    Final,
}

impl Leg {
    fn label(self) -> &'static str {
        match self {
            Leg::T1 => "t1",
            Leg::T2x => "t2x",
            Leg::Final => "final",
        }
    }
}

type FlightResult = Option<Result<CachedToken, AcquireError>>;
type LegFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(CachedToken, Source), AcquireError>> + Send + 'a>>;
type FlightKey = (CacheKey, Option<String>);

pub struct TokenEngine {
    client_id: String,
    authority_key: Arc<str>,
    authority: Authority,
    credentials: Credentials,
    cache: Arc<TokenCache>,
    /// The kill switch (docs/sidecar.md §18), when `Sidecar:Revocation` is enabled.
    revocation: Option<super::revocation::RevocationGate>,
    inflight: Mutex<HashMap<FlightKey, watch::Receiver<FlightResult>>>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

impl TokenEngine {
    pub fn new(
        config: &Config,
        http: reqwest::Client,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client_id: config.client_id.clone(),
            authority_key: Arc::from(config.instance.to_ascii_lowercase()),
            authority: Authority::new(
                http,
                &config.instance,
                config.sidecar.authority_timeout,
                clock.clone(),
                metrics.clone(),
            ),
            credentials: Credentials::new(config, clock.clone(), metrics.clone()),
            cache: Arc::new(TokenCache::new(config.sidecar.cache_max_entries)),
            revocation: None,
            inflight: Mutex::new(HashMap::new()),
            clock,
            metrics,
        }
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Checks every token against the revocation feed and drops cached tokens it revokes.
    pub fn with_revocation(mut self, gate: super::revocation::RevocationGate) -> Self {
        gate.purge_on_change(Arc::downgrade(&self.cache));
        self.revocation = Some(gate);
        self
    }

    pub fn revocation(&self) -> Option<&super::revocation::RevocationGate> {
        self.revocation.as_ref()
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Drops expired entries (run every 60 s).
    pub fn sweep(&self) {
        let n = self.cache.sweep(self.clock.now());
        self.metrics.cache_entries(n);
    }

    /// The token for `req`, from the cache or the authority.
    pub async fn acquire(
        self: &Arc<Self>,
        req: TokenRequest,
    ) -> Result<(CachedToken, Source), AcquireError> {
        let deadline = Instant::now() + ACQUISITION_DEADLINE;
        if let Some(gate) = &self.revocation {
            gate.before(req.agent.as_deref(), req.tc.as_deref())
                .map_err(refusal)?;
        }
        let req = Arc::new(req);
        let bypass = req.force_refresh || req.claims.is_some();
        let (token, source) = self.leg(&req, Leg::Final, bypass, deadline).await?;
        if let Some(gate) = &self.revocation
            && let Some(e) = gate.revokes(&token)
        {
            self.cache.remove(&self.key(&req, Leg::Final));
            return Err(refusal(e));
        }
        Ok((token, source))
    }

    fn key(&self, req: &TokenRequest, leg: Leg) -> CacheKey {
        let agent = req.agent.clone().unwrap_or_default();
        let base =
            |client_id: &str, user: String, scopes: String, leg: &'static str, fmi: String| {
                CacheKey {
                    authority: self.authority_key.clone(),
                    tenant: req.tenant.to_ascii_lowercase(),
                    client_id: client_id.to_ascii_lowercase(),
                    agent: agent.clone(),
                    user,
                    scopes,
                    leg,
                    fmi_path: fmi,
                }
            };
        match leg {
            Leg::T1 => base(
                &self.client_id,
                String::new(),
                EXCHANGE_SCOPE.into(),
                "t1",
                agent.clone(),
            ),
            Leg::T2x => base(
                &agent,
                String::new(),
                EXCHANGE_SCOPE.into(),
                "t2x",
                String::new(),
            ),
            Leg::Final => {
                let client = if req.agent.is_some() {
                    agent.as_str()
                } else {
                    self.client_id.as_str()
                };
                let user = match (&req.user, req.flow) {
                    (Some(UserRef::Username(u)), Flow::AgentUser) => {
                        format!("upn:{}", u.to_lowercase())
                    }
                    (Some(UserRef::ObjectId(o)), Flow::AgentUser) => {
                        format!("oid:{}", o.to_lowercase())
                    }
                    (_, Flow::AgentObo | Flow::Obo) => req
                        .tc
                        .as_ref()
                        .map(|t| t.cache_id.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                let fmi = match req.flow {
                    Flow::App => req.fmi_path.clone().unwrap_or_default(),
                    _ => String::new(),
                };
                base(client, user, scope_key(&req.scopes), req.flow.label(), fmi)
            }
        }
    }

    /// One leg through the cache: a hit, a held stale token, or a (single-flight) acquisition.
    async fn leg(
        self: &Arc<Self>,
        req: &Arc<TokenRequest>,
        leg: Leg,
        bypass: bool,
        deadline: Instant,
    ) -> Result<(CachedToken, Source), AcquireError> {
        let key = self.key(req, leg);
        let now = self.clock.now();
        let flow = req.flow.label();
        if !bypass {
            match self.cache.lookup(&key, now) {
                Lookup::Fresh(t) => {
                    self.metrics.cache_lookup(flow, leg.label(), "hit");
                    return Ok((t, Source::Hit));
                }
                Lookup::Held(t) => {
                    self.metrics.cache_lookup(flow, leg.label(), "stale");
                    return Ok((t, Source::Stale));
                }
                Lookup::Miss => {}
            }
        }
        let claims = if leg == Leg::Final {
            req.claims.clone()
        } else {
            None
        };
        let result = self
            .single_flight(key.clone(), claims, req.clone(), leg, deadline)
            .await;
        match result {
            Ok(t) => {
                let source = if bypass { Source::Bypass } else { Source::Miss };
                self.metrics.cache_lookup(flow, leg.label(), source.label());
                Ok((t, source))
            }
            Err(AcquireError::Unavailable { .. }) if !bypass => {
                let now = self.clock.now();
                match self.cache.peek(&key).filter(|t| t.is_servable_stale(now)) {
                    Some(t) => {
                        self.cache.hold(&key, now + STALE_HOLD);
                        self.metrics.cache_lookup(flow, leg.label(), "stale");
                        tracing::warn!(
                            event = "stale_token_served",
                            flow,
                            leg = leg.label(),
                            correlation_id = %req.correlation_id,
                            expires_in = t.expires_at - now,
                            "the authority is unavailable; serving a cached token that is still valid"
                        );
                        Ok((t, Source::Stale))
                    }
                    None => {
                        self.metrics.cache_lookup(flow, leg.label(), "miss");
                        result.map(|t| (t, Source::Miss))
                    }
                }
            }
            Err(e) => {
                self.metrics.cache_lookup(
                    flow,
                    leg.label(),
                    if bypass { "bypass" } else { "miss" },
                );
                Err(e)
            }
        }
    }

    /// Concurrent misses on one key share one acquisition, run in its own task so that a
    /// cancelled waiter does not cancel it.
    async fn single_flight(
        self: &Arc<Self>,
        key: CacheKey,
        claims: Option<String>,
        req: Arc<TokenRequest>,
        leg: Leg,
        deadline: Instant,
    ) -> Result<CachedToken, AcquireError> {
        let fkey: FlightKey = (key.clone(), claims);
        let mut rx = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&fkey) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(fkey.clone(), rx.clone());
                    let this = self.clone();
                    tokio::spawn(async move {
                        let result = this.run(&req, leg, deadline).await.map(|issued| {
                            let now = this.clock.now();
                            let token = CachedToken {
                                token: issued.access_token,
                                expires_at: issued.expires_at.unwrap_or(now),
                                acquired_at: now,
                                log_id: issued.log_id,
                            };
                            if issued.expires_at.is_some() {
                                let n = this.cache.insert(key, token.clone());
                                this.metrics.cache_entries(n);
                            }
                            token
                        });
                        this.inflight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&fkey);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v
                .clone()
                .unwrap_or_else(|| Err(AcquireError::Unexpected("no result".into()))),
            Err(_) => Err(AcquireError::Unexpected("acquisition task ended".into())),
        }
    }

    /// Performs one leg against the authority (legs before it come from `leg`).
    async fn run(
        self: &Arc<Self>,
        req: &Arc<TokenRequest>,
        leg: Leg,
        deadline: Instant,
    ) -> Result<Issued, AcquireError> {
        let scopes = req.scopes.join(" ");
        let claims = req.claims.as_deref();
        match (leg, req.flow) {
            (Leg::T1, _) => {
                let agent = req.agent.clone().unwrap_or_default();
                self.with_credentials(req, leg, |c| form::t1(&self.client_id, &agent, c), deadline)
                    .await
            }
            (Leg::T2x, _) => {
                let agent = req.agent.clone().unwrap_or_default();
                self.with_t1(req, leg, deadline, |t1| form::t2x(&agent, t1))
                    .await
            }
            (Leg::Final, Flow::App) => {
                let fmi = req.fmi_path.as_deref();
                self.with_credentials(
                    req,
                    leg,
                    |c| form::app(&self.client_id, &scopes, c, fmi, claims),
                    deadline,
                )
                .await
            }
            (Leg::Final, Flow::Obo) => {
                let tc = req
                    .tc
                    .as_ref()
                    .map(|t| t.raw().to_string())
                    .unwrap_or_default();
                self.with_credentials(
                    req,
                    leg,
                    |c| form::obo(&self.client_id, &scopes, &tc, c, claims),
                    deadline,
                )
                .await
            }
            (Leg::Final, Flow::AgentApp) => {
                let agent = req.agent.clone().unwrap_or_default();
                self.with_t1(req, leg, deadline, |t1| {
                    form::agent_app(&agent, &scopes, t1, claims)
                })
                .await
            }
            (Leg::Final, Flow::AgentObo) => {
                let agent = req.agent.clone().unwrap_or_default();
                let tc = req
                    .tc
                    .as_ref()
                    .map(|t| t.raw().to_string())
                    .unwrap_or_default();
                self.with_t1(req, leg, deadline, |t1| {
                    form::agent_obo(&agent, &scopes, &tc, t1, claims)
                })
                .await
            }
            (Leg::Final, Flow::AgentUser) => {
                let agent = req.agent.clone().unwrap_or_default();
                let user = req.user.clone().ok_or_else(|| {
                    AcquireError::Unexpected("agent user flow without a user".into())
                })?;
                let (t2x, _) = self.leg_boxed(req, Leg::T2x, deadline).await?;
                let t2x = t2x.token;
                self.with_t1(req, leg, deadline, |t1| {
                    form::agent_user(&agent, &scopes, t1, &t2x, &user, claims)
                })
                .await
            }
        }
    }

    /// `leg` behind a type-erased box: the legs of a flow call each other.
    fn leg_boxed<'a>(
        self: &'a Arc<Self>,
        req: &'a Arc<TokenRequest>,
        leg: Leg,
        deadline: Instant,
    ) -> LegFuture<'a> {
        Box::pin(self.leg(req, leg, false, deadline))
    }

    /// A leg whose client is the agent, authenticated with T1. A cached T1 that the authority
    /// rejects is dropped and the leg is tried once more with a fresh one.
    async fn with_t1(
        self: &Arc<Self>,
        req: &Arc<TokenRequest>,
        leg: Leg,
        deadline: Instant,
        build: impl Fn(&str) -> String,
    ) -> Result<Issued, AcquireError> {
        let (t1, source) = self.leg_boxed(req, Leg::T1, deadline).await?;
        let t1 = t1.token;
        match self.post(req, leg, &build(&t1), deadline).await {
            Err(e) if e.is_credential_rejection() && source == Source::Hit => {
                let n = self.cache.remove(&self.key(req, Leg::T1));
                self.metrics.cache_entries(n);
                let (t1, _) = self.leg_boxed(req, Leg::T1, deadline).await?;
                let t1 = t1.token;
                self.post(req, leg, &build(&t1), deadline)
                    .await
                    .map_err(|e| self.map_error(req, leg, e))
            }
            other => other.map_err(|e| self.map_error(req, leg, e)),
        }
    }

    /// A leg whose client is the blueprint, with its credentials in order (§9.3).
    async fn with_credentials(
        self: &Arc<Self>,
        req: &Arc<TokenRequest>,
        leg: Leg,
        build: impl Fn(&CredentialParams) -> String,
        deadline: Instant,
    ) -> Result<Issued, AcquireError> {
        let endpoint = self.authority.token_endpoint(&req.tenant);
        let mut load_failures = Vec::new();
        let mut last_rejection = None;
        let mut rejections = 0;
        for cred in self.credentials.ordered() {
            let params = match cred.load(&endpoint, false).await {
                Ok(p) => p,
                Err(reason) => {
                    self.metrics
                        .token_request(req.flow.label(), leg.label(), "credential_error");
                    tracing::warn!(
                        event = "credential_unavailable",
                        credential = cred.index,
                        kind = cred.kind(),
                        reason = %reason,
                        correlation_id = %req.correlation_id,
                        "a client credential could not be loaded"
                    );
                    load_failures.push(format!("credential {}: {reason}", cred.index));
                    continue;
                }
            };
            let mut result = self.post(req, leg, &build(&params), deadline).await;
            if cred.is_file()
                && matches!(&result, Err(e) if e.is_credential_rejection())
                && let Ok(fresh) = cred.load(&endpoint, true).await
                && !same_material(&fresh, &params)
            {
                // The rejected assertion may be one kubelet already replaced: read and retry once.
                result = self.post(req, leg, &build(&fresh), deadline).await;
            }
            match result {
                Ok(issued) => return Ok(issued),
                Err(e) if e.is_credential_rejection() => {
                    self.credentials.demote(cred);
                    last_rejection = Some(e);
                    rejections += 1;
                    if rejections >= 2 {
                        break;
                    }
                }
                Err(e) => return Err(self.map_error(req, leg, e)),
            }
        }
        match last_rejection {
            Some(e) => Err(self.map_error(req, leg, e)),
            None => Err(AcquireError::Credential(load_failures.join("; "))),
        }
    }

    async fn post(
        &self,
        req: &TokenRequest,
        leg: Leg,
        form: &str,
        deadline: Instant,
    ) -> Result<Issued, AuthorityError> {
        let result = self
            .authority
            .post(leg.label(), &req.tenant, form, req.correlation_id, deadline)
            .await;
        let label = match &result {
            Ok(_) => "success",
            Err(e) => e.result_label(),
        };
        self.metrics
            .token_request(req.flow.label(), leg.label(), label);
        result
    }

    fn map_error(&self, req: &TokenRequest, leg: Leg, e: AuthorityError) -> AcquireError {
        let (status, aadsts) = match &e {
            AuthorityError::OAuth { status, .. } => (Some(*status), e.aadsts()),
            AuthorityError::Status(s) => (Some(*s), None),
            _ => (None, None),
        };
        tracing::warn!(
            event = "token_acquisition_failed",
            flow = req.flow.label(),
            leg = leg.label(),
            correlation_id = %req.correlation_id,
            authority_status = status,
            aadsts,
            reason = %e,
            "the token authority did not issue a token"
        );
        match e {
            AuthorityError::OAuth {
                error, description, ..
            } => AcquireError::Refused(description.filter(|d| !d.is_empty()).unwrap_or(error)),
            AuthorityError::Status(n) => {
                AcquireError::Refused(format!("The token endpoint returned HTTP {n}."))
            }
            AuthorityError::Transient {
                reason,
                retry_after,
            } => AcquireError::Unavailable {
                host: self.authority.host().to_string(),
                reason,
                retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            },
            AuthorityError::BadResponse(r) => AcquireError::Unexpected(r),
        }
    }
}

fn same_material(a: &CredentialParams, b: &CredentialParams) -> bool {
    match (a, b) {
        (CredentialParams::Secret(x), CredentialParams::Secret(y))
        | (CredentialParams::Assertion(x), CredentialParams::Assertion(y)) => x == y,
        _ => false,
    }
}
