//! agentid's token sidecar: the HTTP contract of Microsoft's Entra SDK sidecar
//! (`/AuthorizationHeader/{api}`, `/DownstreamApi/{api}`, …) with safer defaults, a token
//! cache, and every agent flow (docs/sidecar.md). Start it with [`start`]; the `agentid sidecar`
//! command is a thin wrapper.

pub mod clock;
pub mod config;
pub mod http;
pub mod inbound;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod request;
pub mod token;

pub use config::{Config, ConfigError, ConfigSources};
pub use http::server::{RunningSidecar, ServeError};

use clock::{SharedClock, SystemClock};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Everything one sidecar process shares between requests. Only the token cache (and key
/// caches) change after startup; the configuration is immutable.
pub struct Sidecar {
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub metrics: Arc<metrics::Metrics>,
    pub validator: inbound::Validator,
    pub engine: Arc<token::TokenEngine>,
    pub downstream: request::downstream::Downstream,
    pub openapi: Option<bytes::Bytes>,
    /// The main listener's drain; `/healthz` answers 503 while it runs.
    pub drain: agentid_listener::Drain,
}

fn http_client(
    config: &Config,
    redirects: reqwest::redirect::Policy,
) -> Result<reqwest::Client, StartError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(redirects)
        .user_agent(concat!("agentid-sidecar/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(90));
    for pem in &config.sidecar.extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| StartError::Client(e.to_string()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| StartError::Client(e.to_string()))
}

impl Sidecar {
    pub fn new(config: Config, clock: SharedClock) -> Result<Arc<Self>, StartError> {
        let metrics = Arc::new(metrics::Metrics::new());
        let authority_http = http_client(&config, reqwest::redirect::Policy::none())?;
        let downstream_http = http_client(
            &config,
            if config.sidecar.allow_outbound_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            },
        )?;
        let validator = inbound::Validator::new(&config, authority_http.clone(), clock.clone());
        let mut engine = token::TokenEngine::new(
            &config,
            authority_http.clone(),
            clock.clone(),
            metrics.clone(),
        );
        // The kill switch (docs/sidecar.md §18): the tenant's feed, verified with the keys
        // inbound validation uses.
        if let Some(r) = &config.sidecar.revocation
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let issuer = format!("{}{}/v2.0", config.instance, config.tenant_id);
            engine = engine.with_revocation(token::revocation::RevocationGate::start(
                &issuer,
                validator.keys().clone(),
                authority_http,
                r.clone(),
                &config.client_id,
            ));
        }
        let engine = Arc::new(engine);
        let downstream = request::downstream::Downstream::new(
            downstream_http,
            config.sidecar.downstream_timeout,
            config.sidecar.max_response_body_bytes,
            config.sidecar.downstream_response_headers.clone(),
        );
        let openapi = config.sidecar.enable_openapi.then(|| {
            bytes::Bytes::from(serde_json::to_vec(&openapi::document()).unwrap_or_default())
        });
        Ok(Arc::new(Sidecar {
            config: Arc::new(config),
            clock,
            metrics,
            validator,
            engine,
            downstream,
            openapi,
            drain: agentid_listener::Drain::new(),
        }))
    }
}

/// Starts a sidecar with the system clock.
pub async fn start(config: Config) -> Result<RunningSidecar, StartError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Starts a sidecar with the given clock (tests move it forward instead of sleeping).
pub async fn start_with_clock(
    config: Config,
    clock: SharedClock,
) -> Result<RunningSidecar, StartError> {
    let state = Sidecar::new(config, clock)?;
    Ok(http::server::serve(state).await?)
}
