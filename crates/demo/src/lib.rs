//! The demo services of `agentid up`, each startable in-process on any port:
//! - the offline model ([`start_model`]): an OpenAI-compatible chat-completions server that is
//!   deterministic and honest about being a demo (`agentid-offline`);
//! - the demo MCP server ([`start_mcp`]): tools that show and use the caller's identity.
//!
//! Both check the bearer they receive against the STS's published keys ([`TokenCheck`]), the
//! way the guide's Azure OpenAI and MCP servers do with Entra's.

pub mod auth;
pub mod mcp;
pub mod model;
pub mod offline;

pub use auth::TokenCheck;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the {what} cannot listen on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the CA certificate is not usable: {0}")]
    Ca(String),
    #[error("the HTTP client cannot be built: {0}")]
    Client(String),
    #[error("{what} '{value}' is not usable: {why}")]
    Config {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("discovery at {url} failed: {why}")]
    Discovery { url: String, why: String },
}

/// Settings of the offline model; `check: None` serves without any bearer check.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub listen: SocketAddr,
    pub check: Option<TokenCheck>,
}

/// Settings of the demo MCP server.
#[derive(Clone)]
pub struct McpSettings {
    pub listen: SocketAddr,
    pub check: TokenCheck,
    /// Token endpoint for the server's own on-behalf-of exchange (`get_my_profile`).
    pub token_endpoint: String,
    /// Where Graph lives, e.g. `https://127.0.0.1:8443`; the tool calls `{graph_base}/v1.0/me`.
    pub graph_base: String,
    /// The MCP server's application (client) id.
    pub client_id: String,
    /// Its client secret, used only for the on-behalf-of exchange.
    pub client_secret: String,
    /// PEM CA certificate(s) trusted for the token endpoint and Graph, besides the built-in roots.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for McpSettings {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpSettings")
            .field("listen", &self.listen)
            .field("check", &self.check)
            .field("token_endpoint", &self.token_endpoint)
            .field("graph_base", &self.graph_base)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A server running on a tokio task. Dropping it stops it too (without waiting).
pub struct RunningServer {
    /// The address actually bound (the port is chosen by the OS when asked for port 0).
    pub addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections, ends open streams, and waits (at most 5 s) for the server.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// `http://{addr}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An HTTPS client that trusts `ca_pem` in addition to the built-in roots.
pub fn http_client(ca_pem: Option<&str>) -> Result<reqwest::Client, DemoError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("agentid-demo/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // Token and Graph endpoints do not redirect; following one could leak a bearer.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| DemoError::Ca(e.to_string()))?;
        if certs.is_empty() {
            return Err(DemoError::Ca("no certificate in the PEM text".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| DemoError::Client(e.to_string()))
}

/// URLs must be absolute http(s); plain http only to loopback, where nothing can listen in.
fn check_url(what: &'static str, value: &str) -> Result<(), DemoError> {
    let err = |why: &str| DemoError::Config {
        what,
        value: value.to_string(),
        why: why.to_string(),
    };
    let u = url::Url::parse(value).map_err(|e| err(&e.to_string()))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(err("plain http is allowed only to loopback; use https"))
            }
        }
        _ => Err(err("not an http(s) URL")),
    }
}

fn validator(check: &TokenCheck) -> Result<Arc<auth::Validator>, DemoError> {
    check_url("jwks_url", &check.jwks_url)?;
    let http = http_client(check.ca_pem.as_deref())?;
    Ok(Arc::new(auth::Validator::new(check.clone(), http)))
}

async fn serve(
    what: &'static str,
    listen: SocketAddr,
    app: axum::Router,
    cancel: CancellationToken,
) -> Result<RunningServer, DemoError> {
    let bind_err = |source| DemoError::Bind {
        what,
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "the {what} stopped");
        }
    });
    tracing::info!(%addr, "the {what} is listening");
    Ok(RunningServer {
        addr,
        cancel,
        task: Some(task),
    })
}

/// Starts the offline model (`/v1/chat/completions`, the Azure OpenAI path, `/v1/models`).
pub async fn start_model(s: ModelSettings) -> Result<RunningServer, DemoError> {
    let v = s.check.as_ref().map(validator).transpose()?;
    if v.is_none() {
        tracing::warn!("the offline model runs without a bearer check");
    }
    serve(
        "offline model",
        s.listen,
        model::router(v),
        CancellationToken::new(),
    )
    .await
}

/// Starts the demo MCP server at `/mcp` (streamable HTTP).
pub async fn start_mcp(s: McpSettings) -> Result<RunningServer, DemoError> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let v = validator(&s.check)?;
    check_url("token_endpoint", &s.token_endpoint)?;
    check_url("graph_base", &s.graph_base)?;
    let state = Arc::new(mcp::McpState::new(
        http_client(s.ca_pem.as_deref())?,
        s.token_endpoint,
        s.graph_base,
        s.client_id,
        s.client_secret,
    ));
    let cancel = CancellationToken::new();
    // rmcp's Host allow-list guards unauthenticated local servers against DNS rebinding. Every
    // request here needs a bearer token a browser page cannot attach, and the server is reached
    // under other names (through the gateway, as a Kubernetes Service), so the list is off.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(cancel.child_token());
    let service = StreamableHttpService::new(
        move || Ok(mcp::DemoMcp::new(state.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            v,
            auth::require_bearer,
        ))
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    serve("demo MCP server", s.listen, app, cancel).await
}

/// What an authority's v1 metadata says about validating its access tokens.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Issuer and JWKS of `{authority}/.well-known/openid-configuration` (v1 tokens, which is
    /// what agentid and Entra issue for resources that do not ask for v2).
    pub issuer: String,
    pub jwks_url: String,
    pub token_endpoint: String,
}

/// Reads `{authority}/.well-known/openid-configuration`.
pub async fn discover(authority: &str, ca_pem: Option<&str>) -> Result<Discovered, DemoError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        authority.trim_end_matches('/')
    );
    check_url("authority", &url)?;
    let err = |why: String| DemoError::Discovery {
        url: url.clone(),
        why,
    };
    let resp = http_client(ca_pem)?
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| err(auth::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let doc: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| err(format!("not JSON: {e}")))?;
    let field = |k: &str| {
        doc.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| err(format!("the metadata has no '{k}'")))
    };
    Ok(Discovered {
        issuer: field("issuer")?,
        jwks_url: field("jwks_uri")?,
        token_endpoint: field("token_endpoint")?,
    })
}
