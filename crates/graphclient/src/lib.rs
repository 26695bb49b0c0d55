//! The Graph-compatible directory client (docs/operator.md §3): one home for the Graph calls that
//! `agentid admin` and `agentid operator` make, so both work the same against agentid and Entra.
//!
//! [`GraphClient`] knows where the authority and Graph are; [`ops`] holds the operations
//! (blueprints, agent identities, federated credentials, consent, trusted issuers). Tokens are
//! the caller's business: the admin CLI caches a signed-in administrator's, the operator gets its
//! own from a Secret.

pub mod ops;

/// The delegated Graph permissions an administrator's sign-in asks for (`agentid admin`, the
/// operator's Password credential), and that `agentid up` consents for the admin client.
pub const ADMIN_GRAPH_SCOPES: &[&str] = &[
    "User.Read",
    "openid",
    "profile",
    "offline_access",
    "Directory.Read.All",
    "Application.ReadWrite.All",
    "AgentIdentityBlueprint.Create",
    "AgentIdentityBlueprint.ReadWrite.All",
    "AgentIdentityBlueprint.AddRemoveCreds.All",
    "AgentIdentityBlueprintPrincipal.Create",
    "DelegatedPermissionGrant.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "AgentIdUser.ReadWrite.All",
];

/// [`ADMIN_GRAPH_SCOPES`] (plus `extra`) as a token request's `scope`: Graph permissions with
/// their resource, the OpenID scopes bare.
pub fn admin_scope(extra: &[&str]) -> String {
    ADMIN_GRAPH_SCOPES
        .iter()
        .chain(extra)
        .map(|s| {
            if matches!(*s, "openid" | "profile" | "offline_access") {
                s.to_string()
            } else {
                format!("https://graph.microsoft.com/{s}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

use serde_json::Value;

/// Why a directory call failed: each variant carries what an operator needs to act on it (the
/// AADSTS code of a token error, the Graph error code of a Graph error).
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} did not answer JSON")]
    NotJson { url: String },
    /// An OAuth error from the token endpoint; `description` starts with its AADSTS code.
    #[error("{error}: {description}")]
    OAuth { error: String, description: String },
    /// A Graph error answer.
    #[error("{method} {path}: {status} {code}: {message}{hint}")]
    Graph {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
        hint: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl GraphError {
    /// A Graph answer that says the object is gone (404), as opposed to any other failure.
    pub fn is_not_found(&self) -> bool {
        matches!(self, GraphError::NotFound(_))
            || matches!(self, GraphError::Graph { status: 404, .. })
    }
}

pub type Result<T> = std::result::Result<T, GraphError>;

/// Where the directory is and how to reach it.
#[derive(Clone)]
pub struct GraphClient {
    /// `https://HOST:PORT/TENANT` (agentid) or `https://login.microsoftonline.com/TENANT`.
    pub authority: String,
    /// The Graph base URL, no trailing slash.
    pub graph: String,
    pub http: reqwest::Client,
}

/// Is this authority real Entra (rather than agentid)?
pub fn is_entra(authority: &url::Url) -> bool {
    authority
        .host_str()
        .is_some_and(|h| h.ends_with("login.microsoftonline.com"))
}

impl GraphClient {
    /// A client for `authority`; Graph defaults to the authority's host for agentid and to
    /// graph.microsoft.com for Entra; `ca_pem` is an extra root to trust (agentid's private CA).
    pub fn new(authority: &str, graph: Option<&str>, ca_pem: Option<&[u8]>) -> Result<GraphClient> {
        let authority = authority.trim_end_matches('/').to_string();
        let url = url::Url::parse(&authority)
            .map_err(|_| GraphError::Invalid(format!("--authority {authority} is not a URL")))?;
        let graph = match graph {
            Some(g) => g.to_string(),
            None if is_entra(&url) => "https://graph.microsoft.com".into(),
            None => format!("{}://{}", url.scheme(), url.authority()),
        };
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(pem).map_err(GraphError::Client)?,
            );
        }
        Ok(GraphClient {
            authority,
            graph: graph.trim_end_matches('/').into(),
            http: b.build().map_err(GraphError::Client)?,
        })
    }

    /// The tenant part of the authority (its last path segment).
    pub fn tenant(&self) -> &str {
        self.authority.rsplit('/').next().unwrap_or_default()
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v2.0/token", self.authority)
    }

    /// POSTs to the token endpoint; OAuth errors become readable messages with their AADSTS code.
    pub async fn token(&self, form: &[(&str, &str)]) -> Result<Value> {
        let url = self.token_url();
        let r = self
            .http
            .post(&url)
            .form(form)
            .send()
            .await
            .map_err(|source| GraphError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let body: Value = r.json().await.map_err(|_| GraphError::NotJson { url })?;
        if let Some(e) = body["error"].as_str() {
            let desc = body["error_description"]
                .as_str()
                .unwrap_or("")
                .split(" Trace ID:")
                .next()
                .unwrap_or("");
            return Err(GraphError::OAuth {
                error: e.to_string(),
                description: desc.to_string(),
            });
        }
        Ok(body)
    }

    /// The `access_token` of a token response.
    pub async fn access_token(&self, form: &[(&str, &str)]) -> Result<String> {
        let t = self.token(form).await?;
        t["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| GraphError::Invalid("the token endpoint sent no access_token".into()))
    }

    /// A Graph call; Graph errors become messages with their code and what to do.
    pub async fn graph(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.graph);
        let m: reqwest::Method = method
            .parse()
            .map_err(|_| GraphError::Invalid(format!("{method} is not an HTTP method")))?;
        let mut r = self
            .http
            .request(m, &url)
            .bearer_auth(token)
            .header("OData-Version", "4.0");
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.map_err(|source| GraphError::Unreachable {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = v["error"]["code"].as_str().unwrap_or("error");
            let msg = v["error"]["message"].as_str().unwrap_or(&text);
            let hint = match code {
                "Authorization_RequestDenied" => {
                    " (sign in as an administrator, or check the client's consented permissions)"
                }
                "InvalidAuthenticationToken" => " (run `agentid admin login`)",
                "Request_ResourceNotFound" => " (check the id)",
                _ => "",
            };
            return Err(GraphError::Graph {
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                code: code.to_string(),
                message: msg.chars().take(1000).collect(),
                hint,
            });
        }
        if text.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_str(&text).map_err(|_| GraphError::NotJson { url })
        }
    }
}

/// A string field of a Graph object ("" when absent).
pub fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}
