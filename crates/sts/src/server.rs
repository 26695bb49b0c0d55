//! Starting the STS: database, master key, tenant files, TLS, router, background jobs.

use crate::context::{ClientAddr, RequestContext};
use crate::error::OAuthError;
use crate::federation::Federation;
use crate::keys::KeyRing;
use crate::settings::{Settings, derive_base_url};
use crate::state::{Sts, StsState};
use crate::{client_ip, devicelogin, discovery, graph, tls, token, userinfo};
use agentid_directory::Store;
use agentid_directory::password_gate::PasswordGate;
use agentid_directory::secrets::MasterKey;
use agentid_directory::tenant_file::{ApplyReport, TenantFile};
use agentid_listener::{ConnectionLimits, ConnectionSlots, Drain, Drained, Ended};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{any, get};
use ipnet::IpNet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Directory(#[from] agentid_directory::DirectoryError),
    #[error("tenant file: {0}")]
    TenantFile(#[from] agentid_directory::tenant_file::TenantFileError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Config(String),
}

/// A running STS. Dropping it does not stop it; call [`RunningSts::shutdown`] or
/// [`RunningSts::drain`].
pub struct RunningSts {
    pub addr: SocketAddr,
    pub base: String,
    pub ca_pem: Option<String>,
    pub state: Sts,
    pub reports: Vec<ApplyReport>,
}

impl RunningSts {
    /// Stops accepting and asks every connection to finish; does not wait.
    pub fn shutdown(&self) {
        self.state.drain.begin();
    }

    /// The SIGTERM drain (docs/architecture.md §7): stops accepting, `/readyz` answers 503, and
    /// in-flight requests finish within `deadline`.
    pub async fn drain(&self, deadline: Duration) -> Drained {
        self.state.drain.run("sts", deadline).await
    }

    /// Waits until shutdown is requested (for the command line).
    pub async fn wait(&self) {
        self.state.drain.begun().await;
    }
}

/// Opens the database and loads (or creates) the master key.
pub async fn open_store(settings: &Settings) -> Result<(Store, MasterKey), StartError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        StartError::Config(format!(
            "cannot create data directory {}: {e}",
            settings.data_dir.display()
        ))
    })?;
    let options = agentid_directory::StoreOptions {
        durable_audit_flush: settings.audit_durable_flush,
    };
    let store = Store::connect_with(&settings.storage_url, options).await?;
    let env_key = std::env::var("AGENTID_MASTER_KEY").ok();
    let create = store.backend() == agentid_directory::Backend::Sqlite;
    let master = MasterKey::load(env_key.as_deref(), &settings.master_key_file, create)?;
    Ok((store, master))
}

pub fn router(state: Sts) -> Router {
    Router::new()
        .route("/healthz", get(discovery::healthz))
        .route("/readyz", get(discovery::readyz))
        .route("/error", get(discovery::error_page))
        .route(
            "/common/discovery/instance",
            get(discovery::instance_discovery),
        )
        .route("/common/userrealm/{upn}", get(discovery::user_realm))
        .route("/v1.0/{*rest}", any(graph::v1))
        .route("/beta/{*rest}", any(graph::beta))
        .route("/agentid/v1/{*rest}", any(graph::agentid_v1))
        .route(
            "/oidc/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(
            "/{tenant}/openid/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route("/{tenant}/oauth2/v2.0/token", any(token_or_405))
        .route("/{tenant}/oauth2/v2.0/devicecode", any(devicecode_or_405))
        .route("/{tenant}/oauth2/v2.0/logout", get(crate::logout::logout))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(crate::authorize::authorize).post(crate::authorize::authorize),
        )
        .route(
            "/devicelogin",
            get(devicelogin::enter_code).post(devicelogin::submit_code),
        )
        .route(
            "/devicelogin/signin",
            get(devicelogin::signin).post(devicelogin::submit_signin),
        )
        .route(
            "/devicelogin/consent",
            get(devicelogin::consent_page).post(devicelogin::submit_consent),
        )
        .route("/devicelogin/done", get(devicelogin::done))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_v2),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(discovery::openid_v1),
        )
        // MCP clients (docs/sts.md §16).
        .route(
            "/.well-known/oauth-authorization-server/{tenant}/v2.0",
            get(crate::mcp::metadata::oauth_v2),
        )
        .route(
            "/.well-known/oauth-authorization-server/{tenant}",
            get(crate::mcp::metadata::oauth_v1),
        )
        .route(
            "/{tenant}/oauth2/v2.0/register",
            axum::routing::post(crate::mcp::register::register),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::jwks))
        .route("/{tenant}/discovery/keys", get(discovery::jwks))
        // The web console (docs/console.md).
        .merge(crate::console::router())
        // The revocation feed (docs/sts.md §17).
        .route(
            "/{tenant}/agentid/v1/revocations",
            get(crate::revocation::feed_v1),
        )
        .route(
            "/{tenant}/v2.0/agentid/v1/revocations",
            get(crate::revocation::feed_v2),
        )
        .layer(axum::middleware::map_response(ensure_request_id))
        .with_state(state)
}

/// Every response carries `x-ms-request-id` (OAuth endpoints set it to their trace id).
async fn ensure_request_id(mut resp: Response) -> Response {
    if !resp.headers().contains_key("x-ms-request-id") {
        let id = uuid::Uuid::new_v4().to_string();
        resp.headers_mut().insert(
            "x-ms-request-id",
            axum::http::HeaderValue::from_str(&id).expect("uuid header"),
        );
    }
    resp
}

async fn devicecode_or_405(
    state: State<Sts>,
    path: axum::extract::Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if req.method() == axum::http::Method::POST {
        return token::devicecode_endpoint(state, path, req).await;
    }
    let ctx = RequestContext::new(&headers, req.uri().query(), None);
    ctx.error_response(&state.base, &OAuthError::method_not_allowed())
}

/// The token endpoint answers other methods with AADSTS900561 in Entra's error shape.
async fn token_or_405(
    state: State<Sts>,
    path: axum::extract::Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if req.method() == axum::http::Method::POST {
        return token::token_endpoint(state, path, req).await;
    }
    let ctx = RequestContext::new(&headers, req.uri().query(), None);
    ctx.error_response(&state.base, &OAuthError::method_not_allowed())
}

/// Starts the STS: applies `tenant_files` before the listener opens, then serves.
pub async fn start(
    mut settings: Settings,
    tenant_files: &[TenantFile],
) -> Result<RunningSts, StartError> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.listen,
        source,
    })?;
    if settings.public_base_url == derive_base_url(&settings.listen, settings.insecure_http) {
        settings.public_base_url = derive_base_url(&addr, settings.insecure_http);
    }
    if settings.insecure_http != settings.public_base_url.starts_with("http://") {
        return Err(StartError::Config(format!(
            "public_base_url {} must use {} (insecure_http is {})",
            settings.public_base_url,
            if settings.insecure_http {
                "http://"
            } else {
                "https://"
            },
            settings.insecure_http
        )));
    }
    let (store, master) = open_store(&settings).await?;
    // Replicas starting together provision one after the other: the tenant files, the local
    // CA and the first signing keys are created once (docs/sts.md §13).
    let startup = store
        .lock_session(agentid_directory::ReplicaLock::Startup)
        .await?;
    let mut reports = Vec::new();
    for f in tenant_files {
        reports.push(agentid_directory::tenant_file::apply(&store, f).await?);
    }
    // Built-ins added since a tenant was created (the console's client, docs/console.md §2).
    store.ensure_builtin_principals().await?;
    let tls_config = if settings.insecure_http {
        tracing::warn!(
            "serving plain HTTP (--insecure-http): Microsoft clients will refuse this authority; use only for tests"
        );
        None
    } else {
        let material = match (&settings.tls_cert_file, &settings.tls_key_file) {
            (Some(c), Some(k)) => tls::load_files(c, k)?,
            (None, None) => {
                tls::local_ca(
                    &store,
                    &master,
                    &settings.public_base_url,
                    &settings.tls_extra_sans,
                )
                .await?
            }
            _ => {
                return Err(StartError::Config(
                    "tls.cert_file and tls.key_file go together".into(),
                ));
            }
        };
        if let Some(pem) = &material.ca_pem {
            tls::write_ca(&settings.tls_ca_out, pem)?;
        }
        let ca = material.ca_pem.clone();
        Some((tls::server_config(material)?, ca))
    };
    let ca_pem = tls_config.as_ref().and_then(|(_, ca)| ca.clone());
    let client_documents =
        crate::mcp::client_metadata::ClientDocuments::new(&settings.client_metadata)
            .map_err(StartError::Config)?;
    let state = Arc::new(StsState {
        client_documents,
        hot: agentid_directory::hot::HotReads::new(),
        passwords: PasswordGate::new(settings.password_checks),
        keys: KeyRing::with_limits(store.clone(), master, settings.key_cache),
        federation: Federation::new(Duration::from_secs(settings.metadata_cache_ttl)),
        base: settings.public_base_url.clone(),
        store,
        settings,
        drain: Drain::new(),
        revocations: Default::default(),
    });
    // Every tenant gets its signing key before the first request.
    let now = chrono::Utc::now().timestamp();
    for t in state.store.tenants().await? {
        state
            .keys
            .signer(&t.id, now)
            .await
            .map_err(|e| StartError::Config(e.to_string()))?;
    }
    startup.release().await;
    let app = router(state.clone());
    tokio::spawn(accept_loop(
        listener,
        app,
        tls_config.map(|(c, _)| tokio_rustls::TlsAcceptor::from(c)),
        Connections {
            limits: state.settings.listener,
            trusted_proxies: Arc::new(state.settings.trusted_proxies.clone()),
        },
        state.drain.clone(),
    ));
    tokio::spawn(housekeeping(state.clone(), state.drain.signal()));
    tracing::info!(%addr, base = %state.base, "agentid STS listening");
    Ok(RunningSts {
        addr,
        base: state.base.clone(),
        ca_pem,
        state,
        reports,
    })
}

/// What every connection of the listener shares.
struct Connections {
    limits: ConnectionLimits,
    trusted_proxies: Arc<Vec<IpNet>>,
}

/// Accepts while a connection slot is free; each connection is served within the limits
/// (TLS-handshake and header-read deadlines) and finishes its requests when the drain begins.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    conns: Connections,
    drain: Drain,
) {
    let slots = ConnectionSlots::new(&conns.limits);
    let stop = drain.signal();
    agentid_listener::accept_until_drain(listener, slots, drain, move |stream, peer| {
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let limits = conns.limits;
        let trusted = conns.trusted_proxies.clone();
        let stop = stop.clone();
        async move {
            let svc = app.map_request(move |mut r: Request<hyper::body::Incoming>| {
                let client = client_ip::resolve(peer, r.headers(), &trusted);
                r.extensions_mut().insert(ClientAddr(client));
                r
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            match agentid_listener::serve_connection(stream, tls, svc, limits, stop).await {
                Ended::Closed => {}
                Ended::TimedOut(why) => {
                    tracing::debug!(%peer, "connection closed: {why}");
                }
                Ended::HandshakeTimeout => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
                Ended::Handshake(e) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                }
                Ended::Http(e) => {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
            }
        }
    })
    .await;
}

/// Key rotation and purging of expired state, once a minute.
async fn housekeeping(state: Sts, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let job = housekeeping_once(&state);
        match state.store.exclusive(job).await {
            Ok(Some(())) => {}
            Ok(None) => tracing::debug!("housekeeping runs on another replica"),
            Err(e) => tracing::warn!(error = %e, "housekeeping lock unavailable"),
        }
    }
}

/// One round of housekeeping: scheduled key rotation, then purging what has expired.
async fn housekeeping_once(state: &Sts) {
    let now = chrono::Utc::now().timestamp();
    let s = &state.settings;
    match state.store.tenants().await {
        Ok(tenants) => {
            for t in tenants {
                if let Err(e) = state
                    .keys
                    .rotate_if_due(
                        &t.id,
                        now,
                        s.key_rotation_interval,
                        s.key_prepublish,
                        s.clock_skew,
                    )
                    .await
                {
                    tracing::warn!(error = %e, tenant = %t.id, "key rotation failed");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "housekeeping cannot list tenants"),
    }
    if let Err(e) = state
        .store
        .purge_expired(now, now - s.refresh_inactivity)
        .await
    {
        tracing::warn!(error = %e, "purge failed");
    }
    if let Err(e) = state
        .store
        .purge_audit_before(now - s.audit_retention)
        .await
    {
        tracing::warn!(error = %e, "audit purge failed");
    }
    if let Err(e) = state.store.purge_console_sessions(now).await {
        tracing::warn!(error = %e, "console session purge failed");
    }
    if let Err(e) = state.store.purge_revoked_tokens(now).await {
        tracing::warn!(error = %e, "revoked-token purge failed");
    }
}
