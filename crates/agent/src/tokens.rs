//! Agent tokens for the APIs the agent calls (the LLM, each MCP server), from one of two
//! providers behind one trait: the token sidecar, or the blueprint credential held directly.
//! Both cache per (API, mode) and refresh five minutes before expiry or when forced (401).

use crate::explain::describe_sts_error;
use crate::signin::{SignInError, UserSession};
use agentid_claims::UnverifiedJwt;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha1::Digest;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Refresh this long before a token expires (the guide's agent never refreshed).
pub const REFRESH_MARGIN: i64 = 300;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the user's sign-in: {0}")]
    SignIn(#[from] SignInError),
    #[error("cannot reach {what} at {url}: {message}")]
    Unreachable {
        what: &'static str,
        url: String,
        message: String,
    },
    #[error("{what} refused the token for `{api}` (HTTP {status}): {message}")]
    Refused {
        what: &'static str,
        api: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Credential(String),
    #[error("unexpected answer from {what}: {message}")]
    BadResponse { what: &'static str, message: String },
}

/// Whether the agent acts for the signed-in user or as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    OnBehalfOf,
    Autonomous,
}

/// An API the agent needs a token for: its sidecar name and its scope (direct mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Api {
    pub name: String,
    pub scope: Option<String>,
}

/// A token and when it expires (unix seconds).
#[derive(Clone)]
pub struct AgentToken {
    pub token: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentToken")
            .field("id", &agentid_claims::jwt::short_hash(&self.token))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AgentToken {
    fn new(token: String, expires_in: Option<i64>) -> Self {
        // The JWT's own `exp` is the truth; `expires_in` is the fallback for opaque tokens.
        let exp = UnverifiedJwt::parse(&token)
            .ok()
            .and_then(|j| j.time_claim("exp"))
            .or(expires_in.map(|e| now() + e))
            .unwrap_or(now() + 600);
        Self {
            token,
            expires_at: exp,
        }
    }

    pub fn fresh(&self) -> bool {
        self.expires_at - REFRESH_MARGIN > now()
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One interface for both ways of getting agent tokens.
pub trait TokenProvider: Send + Sync {
    /// A valid token for `api`; `force` skips the cache (after a 401).
    fn token<'a>(
        &'a self,
        api: &'a Api,
        force: bool,
    ) -> BoxFuture<'a, Result<AgentToken, TokenError>>;
    /// The tokens held now, by label, for `agentid agent tokens` and `/whoami`.
    fn held(&self) -> BoxFuture<'_, Vec<(String, String)>>;
    /// The user token source, when acting for a user.
    fn user(&self) -> Option<&Arc<UserSession>>;
    /// One line saying how tokens are obtained.
    fn describe(&self) -> String;
}

/// Per-(API, mode) token cache shared by both providers.
#[derive(Default)]
struct Cache {
    entries: Mutex<HashMap<(String, Mode), AgentToken>>,
}

impl Cache {
    async fn get(&self, key: &(String, Mode)) -> Option<AgentToken> {
        self.entries
            .lock()
            .await
            .get(key)
            .filter(|t| t.fresh())
            .cloned()
    }

    async fn put(&self, key: (String, Mode), t: AgentToken) {
        self.entries.lock().await.insert(key, t);
    }

    async fn all(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .entries
            .lock()
            .await
            .iter()
            .map(|((api, mode), t)| (format!("{api} ({mode:?})"), t.token.clone()))
            .collect();
        v.sort();
        v
    }
}

fn unreachable(what: &'static str, url: &str, e: reqwest::Error) -> TokenError {
    TokenError::Unreachable {
        what,
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// Tokens from the token sidecar (`agentid sidecar` or Microsoft's), as in Kubernetes.
pub struct SidecarProvider {
    http: reqwest::Client,
    base: String,
    agent: String,
    user: Option<Arc<UserSession>>,
    cache: Cache,
}

impl SidecarProvider {
    /// `user` None means autonomous: app-only tokens of the agent itself.
    pub fn new(
        http: reqwest::Client,
        base: &str,
        agent: &str,
        user: Option<Arc<UserSession>>,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            agent: agent.to_string(),
            user,
            cache: Cache::default(),
        }
    }

    fn mode(&self) -> Mode {
        if self.user.is_some() {
            Mode::OnBehalfOf
        } else {
            Mode::Autonomous
        }
    }

    async fn fetch(&self, api: &Api, force: bool) -> Result<AgentToken, TokenError> {
        let name = percent_segment(&api.name);
        let (mut url, bearer) = match &self.user {
            Some(u) => (
                format!(
                    "{}/AuthorizationHeader/{name}?AgentIdentity={}",
                    self.base, self.agent
                ),
                Some(u.token().await?),
            ),
            None => (
                format!(
                    "{}/AuthorizationHeaderUnauthenticated/{name}?AgentIdentity={}&optionsOverride.RequestAppToken=true",
                    self.base, self.agent
                ),
                None,
            ),
        };
        if force {
            // The sidecar caches too: after a 401 its cached token is no better than ours.
            url.push_str("&optionsOverride.AcquireTokenOptions.ForceRefresh=true");
        }
        let mut req = self.http.get(&url).timeout(Duration::from_secs(30));
        if let Some(b) = &bearer {
            req = req.bearer_auth(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable("the token sidecar", &url, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 200 {
            let detail = body["detail"]
                .as_str()
                .or(body["title"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(300).collect());
            return Err(TokenError::Refused {
                what: "the token sidecar",
                api: api.name.clone(),
                status,
                message: describe_sts_error(&format!("HTTP {status}"), &detail),
            });
        }
        let header =
            body["authorizationHeader"]
                .as_str()
                .ok_or_else(|| TokenError::BadResponse {
                    what: "the token sidecar",
                    message: "no authorizationHeader in the answer".into(),
                })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header)
            .to_string();
        Ok(AgentToken::new(token, None))
    }
}

fn percent_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl TokenProvider for SidecarProvider {
    fn token<'a>(
        &'a self,
        api: &'a Api,
        force: bool,
    ) -> BoxFuture<'a, Result<AgentToken, TokenError>> {
        Box::pin(async move {
            let key = (api.name.clone(), self.mode());
            if !force && let Some(t) = self.cache.get(&key).await {
                return Ok(t);
            }
            let t = self.fetch(api, force).await?;
            tracing::debug!(api = %api.name, token = %agentid_claims::jwt::short_hash(&t.token), "agent token from the sidecar");
            self.cache.put(key, t.clone()).await;
            Ok(t)
        })
    }

    fn held(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(self.cache.all())
    }

    fn user(&self) -> Option<&Arc<UserSession>> {
        self.user.as_ref()
    }

    fn describe(&self) -> String {
        match self.user {
            Some(_) => format!(
                "tokens from the sidecar at {} for agent {}, on behalf of the signed-in user",
                self.base, self.agent
            ),
            None => format!(
                "tokens from the sidecar at {} for agent {}, autonomous (app-only)",
                self.base, self.agent
            ),
        }
    }
}

/// The blueprint's credential, as held by an agent in direct mode.
#[derive(Clone)]
pub enum BlueprintCredential {
    Secret(String),
    /// A certificate (PEM) and its RSA key (PEM): a signed client assertion per request.
    Certificate {
        cert_pem: String,
        key_pem: String,
    },
    /// A federated token file (e.g. a projected service-account token), re-read on each use.
    FederatedTokenFile(PathBuf),
}

impl BlueprintCredential {
    /// Form fields authenticating the blueprint at `token_endpoint`.
    fn form(
        &self,
        client_id: &str,
        token_endpoint: &str,
    ) -> Result<Vec<(String, String)>, TokenError> {
        Ok(match self {
            Self::Secret(s) => vec![("client_secret".into(), s.clone())],
            Self::FederatedTokenFile(p) => {
                let t = std::fs::read_to_string(p).map_err(|e| {
                    TokenError::Credential(format!(
                        "cannot read the federated token file {}: {e}",
                        p.display()
                    ))
                })?;
                let t = t.trim();
                if t.is_empty() {
                    return Err(TokenError::Credential(format!(
                        "the federated token file {} is empty",
                        p.display()
                    )));
                }
                vec![
                    ("client_assertion_type".into(), ASSERTION_TYPE.into()),
                    ("client_assertion".into(), t.to_string()),
                ]
            }
            Self::Certificate { cert_pem, key_pem } => vec![
                ("client_assertion_type".into(), ASSERTION_TYPE.into()),
                (
                    "client_assertion".into(),
                    sign_assertion(cert_pem, key_pem, client_id, token_endpoint)?,
                ),
            ],
        })
    }
}

/// An RFC 7523 client assertion signed with the certificate's key (`x5t` = SHA-1 thumbprint).
fn sign_assertion(
    cert_pem: &str,
    key_pem: &str,
    client_id: &str,
    aud: &str,
) -> Result<String, TokenError> {
    let der = pem_body(cert_pem, "CERTIFICATE").ok_or_else(|| {
        TokenError::Credential("the certificate file holds no PEM CERTIFICATE".into())
    })?;
    let thumb = sha1::Sha1::digest(&der);
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
        TokenError::Credential(format!("the certificate key is not an RSA PEM key: {e}"))
    })?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5t = Some(URL_SAFE_NO_PAD.encode(thumb));
    let n = now();
    let claims = serde_json::json!({
        "aud": aud, "iss": client_id, "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(), "nbf": n, "iat": n, "exp": n + 600,
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| TokenError::Credential(format!("cannot sign the client assertion: {e}")))
}

fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Tokens obtained by the agent itself: T1 (blueprint, `fmi_path`), then T2 (the agent, with
/// T1 as client assertion; on-behalf-of the user or client credentials).
pub struct DirectProvider {
    http: reqwest::Client,
    token_endpoint: String,
    blueprint: String,
    credential: BlueprintCredential,
    agent: String,
    user: Option<Arc<UserSession>>,
    t1: Mutex<Option<AgentToken>>,
    cache: Cache,
}

impl DirectProvider {
    pub fn new(
        http: reqwest::Client,
        token_endpoint: &str,
        blueprint: &str,
        credential: BlueprintCredential,
        agent: &str,
        user: Option<Arc<UserSession>>,
    ) -> Self {
        Self {
            http,
            token_endpoint: token_endpoint.to_string(),
            blueprint: blueprint.to_string(),
            credential,
            agent: agent.to_string(),
            user,
            t1: Mutex::new(None),
            cache: Cache::default(),
        }
    }

    fn mode(&self) -> Mode {
        if self.user.is_some() {
            Mode::OnBehalfOf
        } else {
            Mode::Autonomous
        }
    }

    async fn post(&self, api: &str, form: &[(String, String)]) -> Result<AgentToken, TokenError> {
        let url = &self.token_endpoint;
        let resp = self
            .http
            .post(url)
            .form(form)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| unreachable("the authority", url, e))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(TokenError::Refused {
                what: "the authority",
                api: api.to_string(),
                status,
                message: describe_sts_error(
                    body["error"].as_str().unwrap_or("error"),
                    body["error_description"].as_str().unwrap_or(""),
                ),
            });
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| TokenError::BadResponse {
                what: "the authority",
                message: "no access_token".into(),
            })?;
        Ok(AgentToken::new(
            token.to_string(),
            body["expires_in"].as_i64(),
        ))
    }

    /// T1: the blueprint's exchange token for this agent (cached, it is reusable until expiry).
    async fn t1(&self, force: bool) -> Result<String, TokenError> {
        let mut slot = self.t1.lock().await;
        if !force && let Some(t) = slot.as_ref().filter(|t| t.fresh()) {
            return Ok(t.token.clone());
        }
        let mut form = vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".into(), self.blueprint.clone()),
            ("scope".into(), crate::config::TOKEN_EXCHANGE_SCOPE.into()),
            ("fmi_path".into(), self.agent.clone()),
        ];
        form.extend(
            self.credential
                .form(&self.blueprint, &self.token_endpoint)?,
        );
        let t = self.post("T1 (token exchange)", &form).await?;
        *slot = Some(t.clone());
        Ok(t.token)
    }

    async fn fetch(&self, api: &Api, force: bool) -> Result<AgentToken, TokenError> {
        let scope = api.scope.clone().ok_or_else(|| {
            TokenError::Credential(format!(
                "no scope is configured for `{}` (direct mode needs e.g. `scope: api://<app>/.default`)",
                api.name
            ))
        })?;
        let t1 = self.t1(force).await?;
        let mut form = vec![
            ("client_id".to_string(), self.agent.clone()),
            ("scope".into(), scope),
            ("client_assertion_type".into(), ASSERTION_TYPE.into()),
            ("client_assertion".into(), t1),
        ];
        match &self.user {
            Some(u) => {
                let tc = u.token().await?;
                form.push((
                    "grant_type".into(),
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ));
                form.push(("requested_token_use".into(), "on_behalf_of".into()));
                form.push(("assertion".into(), tc));
            }
            None => form.push(("grant_type".into(), "client_credentials".into())),
        }
        self.post(&api.name, &form).await
    }
}

impl TokenProvider for DirectProvider {
    fn token<'a>(
        &'a self,
        api: &'a Api,
        force: bool,
    ) -> BoxFuture<'a, Result<AgentToken, TokenError>> {
        Box::pin(async move {
            let key = (api.name.clone(), self.mode());
            if !force && let Some(t) = self.cache.get(&key).await {
                return Ok(t);
            }
            let t = self.fetch(api, force).await?;
            tracing::debug!(api = %api.name, token = %agentid_claims::jwt::short_hash(&t.token), "agent token obtained directly");
            self.cache.put(key, t.clone()).await;
            Ok(t)
        })
    }

    fn held(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let mut v = self.cache.all().await;
            if let Some(t1) = self.t1.lock().await.as_ref() {
                v.insert(
                    0,
                    ("T1 (blueprint exchange token)".into(), t1.token.clone()),
                );
            }
            v
        })
    }

    fn user(&self) -> Option<&Arc<UserSession>> {
        self.user.as_ref()
    }

    fn describe(&self) -> String {
        let cred = match &self.credential {
            BlueprintCredential::Secret(_) => "a client secret",
            BlueprintCredential::Certificate { .. } => "a certificate",
            BlueprintCredential::FederatedTokenFile(_) => "a federated token file",
        };
        format!(
            "tokens obtained directly: blueprint {} ({cred}) → T1 → agent {}{}",
            self.blueprint,
            self.agent,
            if self.user.is_some() {
                " on behalf of the signed-in user"
            } else {
                " as itself (autonomous)"
            }
        )
    }
}
