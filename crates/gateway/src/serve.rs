//! Starting the gateway: one listener per bind, the admin/stats/readiness servers, hot reload
//! of the config file, and graceful shutdown.

use crate::body::{self, Body};
use crate::config::{self, ConfigError, Snapshot};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::jwt::JwksRegistry;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the serving threads: {0}")]
    Threads(std::io::Error),
}

pub enum Source {
    File(PathBuf),
    Inline(String),
}

pub struct Options {
    pub source: Source,
    /// Private CAs added to the system roots for every upstream (`--ca-file`).
    pub extra_roots: Vec<PathBuf>,
    /// Test hook: binds listen on port 0 and the admin servers on 127.0.0.1:0.
    pub ephemeral_ports: bool,
    /// Threads serving the binds, each a current-thread runtime with its own upstream pool
    /// (docs/performance.md §6.1); 0 serves them on the caller's runtime. The admin servers,
    /// the config watcher and the background tasks run on the caller's runtime either way.
    pub serving_threads: usize,
}

pub struct RunningGateway {
    pub gateway: Arc<Gateway>,
    /// Configured port → actual address.
    pub binds: HashMap<u16, SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub stats: Option<SocketAddr>,
    pub readiness: Option<SocketAddr>,
    /// The binds' drain (SIGTERM); the admin servers outlive it.
    drain: agentid_listener::Drain,
    /// Stops the admin servers, the file watcher and housekeeping, after the drain.
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningGateway {
    pub fn addr(&self, port: u16) -> SocketAddr {
        self.binds[&port]
    }

    /// The SIGTERM drain (docs/architecture.md §7): readiness turns 503, the binds stop accepting,
    /// in-flight requests finish for up to `deadline`; then the admin servers stop.
    pub async fn shutdown(self, deadline: Duration) -> agentid_listener::Drained {
        self.gateway.ready.store(false, Ordering::SeqCst);
        let drained = self.drain.run("gateway", deadline).await;
        // Every decision of the drained requests is written (and spooled) before the process ends.
        self.gateway.audit.flush(Duration::from_secs(5)).await;
        let _ = self.shutdown.send(true);
        let all = futures_util::future::join_all(self.tasks);
        let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
        drained
    }
}

pub fn jwks_registry(
    snapshot_settings: &crate::jwt::JwtSettings,
    extra_roots: &[PathBuf],
) -> Arc<JwksRegistry> {
    let tls = crate::tls::client_config(None, extra_roots).ok();
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(tls) = tls {
        builder = builder.use_preconfigured_tls(tls);
    }
    let http = builder.build().unwrap_or_default();
    JwksRegistry::new(snapshot_settings.clone(), http)
}

fn load(source: &Source, ctx: &config::ValidateContext) -> Result<Snapshot, ConfigError> {
    match source {
        Source::File(p) => config::load_file(p, ctx),
        Source::Inline(text) => config::load_str(text, std::path::Path::new("."), ctx),
    }
}

/// The `agentid.jwt` settings, read before the JWKS registry exists (the registry is built with
/// them). A bad file falls back to defaults here; the full load right after reports the error.
fn jwt_settings(source: &Source) -> crate::jwt::JwtSettings {
    let text = match source {
        Source::File(p) => std::fs::read_to_string(p).unwrap_or_default(),
        Source::Inline(t) => t.clone(),
    };
    config::jwt_settings_of(&text).unwrap_or_default()
}

/// Compiling a config outside a tokio runtime starts no JWKS fetch (`--validate-only`).
pub fn load_offline(source: &Source, extra_roots: &[PathBuf]) -> Result<Snapshot, ConfigError> {
    let ctx = config::ValidateContext {
        jwks: jwks_registry(&crate::jwt::JwtSettings::default(), extra_roots),
    };
    load(source, &ctx)
}

pub async fn start(opts: Options) -> Result<RunningGateway, ServeError> {
    let settings = jwt_settings(&opts.source);
    let jwks = jwks_registry(&settings, &opts.extra_roots);
    let ctx = config::ValidateContext { jwks: jwks.clone() };
    let snapshot = load(&opts.source, &ctx)?;
    let static_cfg = snapshot.static_cfg.clone();
    let bind_ip = snapshot.settings.bind_address;
    let ports: Vec<u16> = snapshot.binds.iter().map(|b| b.port).collect();
    let max_connections = snapshot.settings.limits.max_connections;
    let gateway = Gateway::new(
        snapshot,
        jwks.clone(),
        opts.extra_roots.clone(),
        opts.serving_threads,
    );
    let (shutdown, rx) = watch::channel(false);
    let drain = agentid_listener::Drain::new();
    let mut tasks = Vec::new();
    let mut binds = HashMap::new();
    let mut sockets = Vec::new();
    for port in ports {
        let addr = SocketAddr::new(bind_ip, if opts.ephemeral_ports { 0 } else { port });
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        binds.insert(port, local);
        // One cap per bind, shared by every serving thread.
        let slots = agentid_listener::ConnectionSlots::new(&agentid_listener::ConnectionLimits {
            max_connections,
            ..Default::default()
        });
        if opts.serving_threads == 0 {
            tasks.push(tokio::spawn(accept_loop(
                gateway.clone(),
                port,
                listener,
                slots,
                drain.clone(),
                None,
            )));
        } else {
            let copies = listener
                .into_std()
                .and_then(|l| agentid_listener::threads::socket_copies(&l, opts.serving_threads))
                .map_err(|source| ServeError::Bind { addr, source })?;
            sockets.push((port, copies, slots));
        }
    }
    if opts.serving_threads > 0 {
        let threads = serving_threads(&gateway, sockets, opts.serving_threads, &drain, &rx)?;
        tasks.push(tokio::spawn(threads.finished()));
    }
    let mut admin_addrs = [None, None, None];
    for (i, (addr, kind)) in [
        (static_cfg.admin_addr, AdminKind::Admin),
        (static_cfg.stats_addr, AdminKind::Stats),
        (static_cfg.readiness_addr, AdminKind::Readiness),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(mut addr) = addr else { continue };
        if opts.ephemeral_ports {
            addr = SocketAddr::from(([127, 0, 0, 1], 0));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        admin_addrs[i] = listener.local_addr().ok();
        tasks.push(tokio::spawn(admin_loop(
            gateway.clone(),
            kind,
            listener,
            rx.clone(),
        )));
    }
    if let Source::File(path) = &opts.source {
        tasks.push(tokio::spawn(watch_file(
            gateway.clone(),
            path.clone(),
            ctx,
            static_cfg,
            rx.clone(),
        )));
    }
    let gw = gateway.clone();
    let mut housekeeping_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {
                    gw.sessions.expire(gw.snapshot().settings.session_ttl);
                }
                _ = housekeeping_rx.changed() => break,
            }
        }
    }));
    gateway.ready.store(true, Ordering::SeqCst);
    Ok(RunningGateway {
        gateway,
        binds,
        admin: admin_addrs[0],
        stats: admin_addrs[1],
        readiness: admin_addrs[2],
        drain,
        shutdown,
        tasks,
    })
}

/// Each bind's socket copies and cap, per bind.
type BindSockets = Vec<(
    u16,
    Vec<agentid_listener::threads::Shared>,
    agentid_listener::ConnectionSlots,
)>;

/// Serving per core (docs/performance.md §6.1): thread `i` accepts on its copy of every bind's
/// socket, within the bind's shared cap, and runs the connections it accepts. The threads end
/// after the drain, when `stop` turns (or the gateway is dropped).
fn serving_threads(
    gateway: &Arc<Gateway>,
    sockets: BindSockets,
    count: usize,
    drain: &agentid_listener::Drain,
    stop: &watch::Receiver<bool>,
) -> Result<agentid_listener::ServingThreads, ServeError> {
    let mut per_thread: Vec<Vec<_>> = (0..count).map(|_| Vec::new()).collect();
    for (port, copies, slots) in sockets {
        for (i, copy) in copies.into_iter().enumerate() {
            per_thread[i].push((port, copy, slots.clone()));
        }
    }
    let per_thread: std::sync::Mutex<Vec<Vec<_>>> = std::sync::Mutex::new(per_thread);
    let (gw, drain) = (gateway.clone(), drain.clone());
    agentid_listener::ServingThreads::start(
        count,
        "gateway-serve",
        stop.clone(),
        move |i, placement| {
            let mine = per_thread
                .lock()
                .map(|mut all| std::mem::take(&mut all[i]))
                .unwrap_or_default();
            let loops: Vec<_> = mine
                .into_iter()
                .filter_map(|(port, copy, slots)| match copy.register() {
                    Ok(listener) => Some(accept_loop(
                        gw.clone(),
                        port,
                        listener,
                        slots,
                        drain.clone(),
                        Some((placement.clone(), i)),
                    )),
                    Err(e) => {
                        tracing::error!(port, "a serving thread cannot listen: {e}");
                        None
                    }
                })
                .collect();
            async move {
                futures_util::future::join_all(loops).await;
            }
        },
    )
    .map_err(ServeError::Threads)
}

type Connection = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Accepts on one bind's socket. On a serving thread (`placement` and the thread's index), a
/// connection runs on the least loaded thread (usually this one, docs/performance.md §6.1).
async fn accept_loop(
    gw: Arc<Gateway>,
    port: u16,
    listener: TcpListener,
    slots: agentid_listener::ConnectionSlots,
    drain: agentid_listener::Drain,
    placement: Option<(agentid_listener::threads::Placement, usize)>,
) {
    let stop = drain.signal();
    agentid_listener::accept_until_drain(listener, slots, drain, move |stream, peer| {
        let _ = stream.set_nodelay(true);
        let here = |stream| -> Connection {
            Box::pin(connection(gw.clone(), port, stream, peer, stop.clone()))
        };
        let Some((placement, me)) = &placement else {
            return here(stream);
        };
        let (target, placed) = placement.place(*me);
        if target == *me {
            let conn = here(stream);
            return Box::pin(async move {
                conn.await;
                drop(placed);
            });
        }
        // Moved to the other thread's runtime; this task holds the slot and the drain's count
        // until the connection ends there.
        let Ok(std_stream) = stream.into_std() else {
            return Box::pin(async move { drop(placed) });
        };
        let (gw, stop) = (gw.clone(), stop.clone());
        let moved = placement.handle(target).spawn(async move {
            if let Ok(stream) = TcpStream::from_std(std_stream) {
                connection(gw, port, stream, peer, stop).await;
            }
            drop(placed);
        });
        Box::pin(async move {
            let _ = moved.await;
        })
    })
    .await;
}

/// Serves one accepted connection of bind `port` until it ends.
async fn connection(
    gw: Arc<Gateway>,
    port: u16,
    stream: TcpStream,
    peer: SocketAddr,
    stop_conn: watch::Receiver<bool>,
) {
    let gauge = gw
        .metrics
        .connections
        .get_or_create(&vec![("bind".to_string(), port.to_string())])
        .clone();
    gauge.inc();
    let snap = gw.snapshot();
    let tls = snap
        .binds
        .iter()
        .find(|b| b.port == port)
        .and_then(|b| b.listeners.iter().find_map(|l| l.tls.clone()));
    // The first request (TLS handshake included) is due within headerRead.
    let limits = agentid_listener::ConnectionLimits {
        max_connections: snap.settings.limits.max_connections,
        header_read_timeout: snap.settings.timeouts.header_read,
        tls_handshake_timeout: snap.settings.timeouts.header_read,
        idle_timeout: snap.settings.timeouts.downstream_idle,
        max_header_bytes: snap.settings.limits.max_request_header_bytes,
    };
    drop(snap);
    let svc_gw = gw.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let gw = svc_gw.clone();
        async move {
            // Boxed: hyper keeps a slot the size of this future for the whole life
            // of each connection, and the pipeline's state machine is large; boxed, an
            // idle connection holds a pointer (docs/performance.md §6).
            let handled = std::panic::AssertUnwindSafe(Box::pin(crate::pipeline::handle(
                gw.clone(),
                port,
                req,
                peer,
                scheme,
            )));
            match futures_util::FutureExt::catch_unwind(handled).await {
                Ok(resp) => Ok::<_, std::convert::Infallible>(resp),
                Err(_) => {
                    gw.metrics.panics.inc();
                    Ok(GatewayError::Internal.into_response(""))
                }
            }
        }
    });
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let ended = agentid_listener::serve_connection(stream, tls, service, limits, stop_conn).await;
    if let agentid_listener::Ended::TimedOut(why) = ended {
        tracing::debug!("closing a downstream connection: {why}");
    }
    gauge.dec();
}

#[derive(Clone, Copy)]
enum AdminKind {
    Admin,
    Stats,
    Readiness,
}

async fn admin_loop(
    gw: Arc<Gateway>,
    kind: AdminKind,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let gw = gw.clone();
                async move { Ok::<_, std::convert::Infallible>(admin(gw, kind, req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn admin(gw: Arc<Gateway>, kind: AdminKind, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    match (kind, path) {
        (AdminKind::Readiness, "/healthz/ready") => {
            if gw.ready.load(Ordering::SeqCst) {
                body::json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}))
            } else {
                body::json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "not ready"}),
                )
            }
        }
        (AdminKind::Stats, "/metrics") => {
            let mut r = Response::new(body::full(gw.metrics.encode()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (AdminKind::Admin, "/healthz") => {
            body::json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (AdminKind::Admin, "/config_dump") => {
            let snap = gw.snapshot();
            let reload = gw.reload.lock().map(|r| r.clone()).unwrap_or_default();
            body::json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "config": snap.effective,
                    "lastReload": {"ok": reload.ok, "error": reload.error, "time": reload.time},
                    "restartRequired": reload.restart_required,
                }),
            )
        }
        (AdminKind::Admin, "/audit/events") => {
            match crate::audit::Query::parse(req.uri().query().unwrap_or("")) {
                Ok(q) => body::raw_json_response(StatusCode::OK, gw.audit.query_json(&q)),
                Err(e) => body::json_response(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": e.to_string()}),
                ),
            }
        }
        _ => body::json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        ),
    }
}

/// Watches the file and its directory (ConfigMaps swap a `..data` symlink), with a 5 s
/// content-hash poll as a fallback; a bad file is refused and the old config keeps serving.
async fn watch_file(
    gw: Arc<Gateway>,
    path: PathBuf,
    ctx: config::ValidateContext,
    static_cfg: crate::config::model::StaticConfig,
    mut stop: watch::Receiver<bool>,
) {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let watcher_tx = tx.clone();
    let config_name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only events about the config file or a ConfigMap's `..data` swap: the directory may
        // also hold a file written per request (the audit log), whose events would otherwise
        // wake this task and re-hash the config on every request (docs/performance.md §6).
        let relevant = match &res {
            Ok(event) => {
                event.paths.is_empty()
                    || event
                        .paths
                        .iter()
                        .any(|p| concerns_config(p, config_name.as_deref()))
            }
            Err(_) => true,
        };
        if relevant {
            let _ = watcher_tx.try_send(());
        }
    })
    .ok();
    if let Some(w) = watcher.as_mut() {
        let dir = path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        let _ = w.watch(&dir, notify::RecursiveMode::NonRecursive);
    }
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut last_hash = hash_file(&path);
    let mut poll = tokio::time::interval(Duration::from_secs(5));
    loop {
        let forced;
        #[cfg(unix)]
        {
            let hup_fut = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = rx.recv() => { forced = false; tokio::time::sleep(Duration::from_millis(250)).await; while rx.try_recv().is_ok() {} }
                _ = poll.tick() => { forced = false; }
                _ = hup_fut => { forced = true; }
                _ = stop.changed() => break,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                _ = rx.recv() => { forced = false; }
                _ = poll.tick() => { forced = false; }
                _ = stop.changed() => break,
            }
        }
        let hash = hash_file(&path);
        if !forced && hash == last_hash {
            continue;
        }
        last_hash = hash;
        let result = match std::fs::read_to_string(&path) {
            Ok(text) => config::load_str(
                &text,
                path.parent().unwrap_or(std::path::Path::new(".")),
                &ctx,
            ),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        };
        let now = crate::audit::now_rfc3339();
        match result {
            Ok(snapshot) => {
                let restart = snapshot.static_cfg != static_cfg || {
                    let old = gw.snapshot();
                    let mut a: Vec<u16> = old.binds.iter().map(|b| b.port).collect();
                    let mut b: Vec<u16> = snapshot.binds.iter().map(|b| b.port).collect();
                    a.sort_unstable();
                    b.sort_unstable();
                    a != b
                };
                if restart {
                    tracing::warn!(
                        "config reload changed startup-only settings or binds: they apply after a restart"
                    );
                }
                gw.swap(snapshot);
                gw.metrics
                    .config_reloads
                    .get_or_create(&vec![("result".to_string(), "ok".to_string())])
                    .inc();
                if let Ok(mut r) = gw.reload.lock() {
                    *r = crate::gateway::ReloadStatus {
                        ok: true,
                        error: None,
                        time: Some(now),
                        restart_required: restart,
                    };
                }
                tracing::info!(path = %path.display(), "config reloaded");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), "config reload refused, the previous config keeps serving: {e}");
                gw.metrics
                    .config_reloads
                    .get_or_create(&vec![("result".to_string(), "error".to_string())])
                    .inc();
                if let Ok(mut r) = gw.reload.lock() {
                    let restart = r.restart_required;
                    *r = crate::gateway::ReloadStatus {
                        ok: false,
                        error: Some(e.to_string()),
                        time: Some(now),
                        restart_required: restart,
                    };
                }
            }
        }
    }
    drop(watcher);
}

/// Whether a watched directory's event path may change the config: the file itself, or a
/// Kubernetes ConfigMap's `..data` / `..<timestamp>` entries behind its symlink.
fn concerns_config(p: &std::path::Path, config_name: Option<&std::ffi::OsStr>) -> bool {
    match p.file_name() {
        None => true,
        Some(n) => Some(n) == config_name || n.to_string_lossy().starts_with(".."),
    }
}

fn hash_file(path: &std::path::Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path)
        .ok()
        .map(|b| sha2::Sha256::digest(&b).into())
}

#[cfg(test)]
mod tests {
    use super::concerns_config;
    use std::ffi::OsStr;
    use std::path::Path;

    #[test]
    fn only_the_config_and_configmap_swaps_wake_the_reload() {
        let name = Some(OsStr::new("gateway.yaml"));
        assert!(concerns_config(Path::new("/etc/gw/gateway.yaml"), name));
        assert!(concerns_config(Path::new("/etc/gw/..data"), name));
        assert!(concerns_config(Path::new("/etc/gw/..data_tmp"), name));
        assert!(concerns_config(
            Path::new("/etc/gw/..2026_12_05_04_00_00.123"),
            name
        ));
        assert!(!concerns_config(Path::new("/etc/gw/audit.jsonl"), name));
        assert!(!concerns_config(Path::new("/etc/gw/audit.jsonl.1"), name));
        assert!(!concerns_config(
            Path::new("/etc/gw/gateway.yaml.swp"),
            name
        ));
    }
}
