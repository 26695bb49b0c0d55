//! Listeners: the main listener (loopback by default; TCP or a Unix socket) and the health
//! listener, each the shared accept loop of `agentid-listener` serving HTTP/1.1 and h2c with
//! hyper. On SIGTERM the main listener drains (docs/architecture.md §7) while the health listener
//! answers `/healthz` with 503; it stops once the drain is over.

use super::host::HostPolicy;
use super::peer::Peer;
use super::response::{self, Body, Failure};
use super::route::Listener;
use crate::Sidecar;
use crate::config::ListenAddr;
use agentid_listener::{ConnectionLimits, ConnectionSlots, Drain, Drained};
use http::Response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A sidecar serving requests; dropped or [`RunningSidecar::shutdown`] stops it,
/// [`RunningSidecar::drain`] drains it.
pub struct RunningSidecar {
    pub state: Arc<Sidecar>,
    /// Bound TCP addresses of the main listener (the real ports when 0 was asked for).
    pub addrs: Vec<SocketAddr>,
    pub unix_paths: Vec<PathBuf>,
    pub health_addrs: Vec<SocketAddr>,
    /// The health listener's own drain, begun after the main listener's.
    health: Drain,
    /// Stops the background tasks.
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSidecar {
    /// `http://addr` of the first TCP address of the main listener.
    pub fn url(&self) -> String {
        self.addrs
            .first()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default()
    }

    pub fn health_url(&self) -> Option<String> {
        self.health_addrs.first().map(|a| format!("http://{a}"))
    }

    /// Stops every listener at once (in-flight requests still finish); does not wait.
    pub fn shutdown(&self) {
        self.state.drain.begin();
        self.health.begin();
        let _ = self.shutdown.send(true);
    }

    /// The SIGTERM drain: the main listener stops accepting and `/healthz` answers 503 while
    /// in-flight requests finish, for up to `deadline`; then everything stops.
    pub async fn drain(&self, deadline: Duration) -> Drained {
        let drained = self.state.drain.run("sidecar", deadline).await;
        self.shutdown();
        drained
    }

    /// Waits until every listener has stopped.
    pub async fn wait(mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for RunningSidecar {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

async fn bind(addr: &ListenAddr) -> Result<Option<Bound>, ServeError> {
    match addr {
        ListenAddr::Tcp { addr, required } => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Ok(Some(Bound::Tcp(l))),
            Err(e) if !required => {
                tracing::debug!(%addr, error = %e, "optional listen address not available");
                Ok(None)
            }
            Err(source) => Err(ServeError::Bind {
                addr: addr.to_string(),
                source,
            }),
        },
        ListenAddr::Unix(path) => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            tokio::net::UnixListener::bind(path)
                .map(|l| Some(Bound::Unix(l)))
                .map_err(|source| ServeError::Bind {
                    addr: format!("unix:{}", path.display()),
                    source,
                })
        }
    }
}

/// One accepted connection: who is calling, and the address it arrived at.
#[derive(Clone, Copy)]
struct Conn {
    peer: Peer,
    local: Option<IpAddr>,
}

/// Serves one connection; when `stop` turns true, in-flight requests finish and the
/// connection closes (the drain's deadline bounds how long that may take).
async fn serve_connection<S>(
    state: Arc<Sidecar>,
    hosts: Arc<HostPolicy>,
    listener: Listener,
    conn: Conn,
    io: S,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (state, hosts) = (state.clone(), hosts.clone());
        async move {
            // Before anything else, probes included: the DNS-rebinding defence.
            if !hosts.allows(conn.peer, conn.local, req.uri(), req.headers()) {
                return Ok::<_, Infallible>(misdirected(&state, &req));
            }
            Ok::<_, Infallible>(state.handle(listener, conn.peer, req).await)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

/// The 421 answer to a request for a host this sidecar does not serve; counted and logged
/// like every other request.
fn misdirected<B>(state: &Sidecar, req: &http::Request<B>) -> Response<Body> {
    let cid = uuid::Uuid::new_v4().to_string();
    let host = req.headers().get(http::header::HOST).map(|h| {
        String::from_utf8_lossy(h.as_bytes())
            .chars()
            .take(256)
            .collect::<String>()
    });
    tracing::warn!(
        target: "agentid_sidecar::access",
        event = "misdirected_host",
        correlation_id = %cid,
        method = %req.method(),
        host = host.as_deref(),
        status = 421,
        "request for a host this sidecar does not serve refused (DNS rebinding?)"
    );
    state.metrics.request("misdirected", 421, 0.0);
    response::finish(Failure::MisdirectedHost.into_response(&cid), &cid)
}

fn accept_loop(
    state: Arc<Sidecar>,
    hosts: Arc<HostPolicy>,
    listener: Listener,
    bound: Bound,
    drain: Drain,
) -> JoinHandle<()> {
    let slots = ConnectionSlots::new(&ConnectionLimits::default());
    let stop = drain.signal();
    match bound {
        Bound::Tcp(l) => tokio::spawn(agentid_listener::accept_until_drain(
            l,
            slots,
            drain,
            move |stream, addr| {
                let _ = stream.set_nodelay(true);
                let conn = Conn {
                    peer: Peer::Tcp(addr),
                    local: stream.local_addr().ok().map(|a| a.ip()),
                };
                serve_connection(
                    state.clone(),
                    hosts.clone(),
                    listener,
                    conn,
                    stream,
                    stop.clone(),
                )
            },
        )),
        Bound::Unix(l) => tokio::spawn(agentid_listener::accept_until_drain(
            l,
            slots,
            drain,
            move |stream, ()| {
                let conn = Conn {
                    peer: Peer::Unix,
                    local: None,
                };
                serve_connection(
                    state.clone(),
                    hosts.clone(),
                    listener,
                    conn,
                    stream,
                    stop.clone(),
                )
            },
        )),
    }
}

/// Binds every listener and starts serving.
pub async fn serve(state: Arc<Sidecar>) -> Result<RunningSidecar, ServeError> {
    let (tx, rx) = watch::channel(false);
    let health_drain = Drain::new();
    let mut tasks = Vec::new();
    let mut addrs = Vec::new();
    let mut unix_paths = Vec::new();
    let mut health_addrs = Vec::new();
    let main = Listener::Main {
        openapi: state.config.sidecar.enable_openapi,
    };
    let mut bound_main = Vec::new();
    for a in &state.config.sidecar.listen {
        if let Some(b) = bind(a).await? {
            match &b {
                Bound::Tcp(l) => addrs.extend(l.local_addr().ok()),
                Bound::Unix(_) => {
                    if let ListenAddr::Unix(p) = a {
                        unix_paths.push(p.clone());
                    }
                }
            }
            bound_main.push(b);
        }
    }
    let mut bound_health = Vec::new();
    for a in state.config.sidecar.health_listen.iter().flatten() {
        if let Some(b) = bind(a).await? {
            if let Bound::Tcp(l) = &b {
                health_addrs.extend(l.local_addr().ok());
            }
            bound_health.push(b);
        }
    }
    let hosts = Arc::new(HostPolicy::new(&state.config.sidecar.allowed_hosts));
    for b in bound_main {
        tasks.push(accept_loop(
            state.clone(),
            hosts.clone(),
            main,
            b,
            state.drain.clone(),
        ));
    }
    for b in bound_health {
        tasks.push(accept_loop(
            state.clone(),
            hosts.clone(),
            Listener::Health,
            b,
            health_drain.clone(),
        ));
    }
    // Expired tokens are swept every 60 s.
    let sweeper = state.clone();
    let mut stop = rx.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => sweeper.engine.sweep(),
            }
        }
    }));
    // Signing keys are fetched ahead of the first request (failures are retried on demand).
    let prefetch = state.clone();
    tokio::spawn(async move { prefetch.validator.keys().prefetch().await });
    let listen: Vec<String> = addrs
        .iter()
        .map(ToString::to_string)
        .chain(unix_paths.iter().map(|p| format!("unix:{}", p.display())))
        .collect();
    let health: Vec<String> = health_addrs.iter().map(ToString::to_string).collect();
    tracing::info!(
        event = "started",
        listen = %listen.join(", "),
        health = %health.join(", "),
        version = env!("CARGO_PKG_VERSION"),
        "agentid sidecar listening"
    );
    Ok(RunningSidecar {
        state,
        addrs,
        unix_paths,
        health_addrs,
        health: health_drain,
        shutdown: tx,
        tasks,
    })
}
