//! Serving HTTP connections with the limits every agentid listener needs (the STS and the
//! gateway share this): a cap on open connections, a deadline for the TLS handshake and for
//! the first request, a header-read timeout and header-size cap per request, an idle timeout
//! (HTTP/1.1 and HTTP/2 alike, through [`guard`]), and a graceful end when the server stops
//! ([`drain`]: the accept loop and the SIGTERM drain of the STS, the gateway and the sidecar).
//! Without these, a client that opens connections and sends nothing (or sends headers a byte
//! at a time) holds a task and a socket for ever. [`threads`] runs a listener on one
//! current-thread runtime per core.

pub mod detect;
pub mod drain;
pub mod guard;
pub mod threads;

pub use drain::{Acceptor, Drain, Drained, OpenConnection, accept_until_drain};
pub use threads::{ServingThreads, serving_thread};

use detect::Protocol;
use guard::{Guard, NO_FIRST_REQUEST, Verdict};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's smallest HTTP/1 read buffer (it refuses smaller ones).
pub const MIN_HEADER_BYTES: usize = 8192;

/// How many connections a listener keeps open, and how long and how much a client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time to read a request's headers (HTTP/1.1), and to present the first request after
    /// the connection is accepted (TLS handshake included).
    pub header_read_timeout: Duration,
    /// Time to finish the TLS handshake (within the first-request deadline).
    pub tls_handshake_timeout: Duration,
    /// A connection with no request in progress that moves no byte for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list), at least [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_header_bytes: 65_536,
        }
    }
}

/// The connection cap of one listener: take a slot before `accept`, hold it for the
/// connection's life.
#[derive(Debug, Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    pub fn new(limits: &ConnectionLimits) -> Self {
        Self(Arc::new(Semaphore::new(limits.max_connections.max(1))))
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }

    /// Connections open now.
    pub fn open(&self, limits: &ConnectionLimits) -> usize {
        limits.max_connections.max(1) - self.0.available_permits()
    }
}

/// How one connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The client or the server closed it normally, or shutdown finished it.
    Closed,
    /// The guard closed it: no first request in time, or idle too long.
    TimedOut(&'static str),
    /// The TLS handshake did not finish in time.
    HandshakeTimeout,
    /// The TLS handshake failed.
    Handshake(std::io::Error),
    /// HTTP ended with an error (including a header-read timeout).
    Http(BoxError),
}

/// A service that tells the connection's [`Guard`] while a request is being handled.
struct Tracked<S> {
    inner: S,
    guard: Guard,
}

type BoxedResponse<R, E> = Pin<Box<dyn std::future::Future<Output = Result<R, E>> + Send>>;

impl<S, B> Service<hyper::Request<Incoming>> for Tracked<S>
where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = hyper::Response<B>;
    type Error = S::Error;
    type Future = BoxedResponse<hyper::Response<B>, S::Error>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let busy = self.guard.request_started();
        let handled = self.inner.call(req);
        Box::pin(async move {
            let r = handled.await;
            drop(busy);
            r
        })
    }
}

/// Serves HTTP/1.1 and HTTP/2 on one accepted connection, over TLS when `tls` is given,
/// within `limits`; when `stop` changes, in-flight requests finish and the connection closes.
/// The protocol is decided before hyper sees a byte ([`detect`]), and the connection is then
/// served by hyper's HTTP/1 or HTTP/2 server alone.
///
/// The future is boxed as `Send` here, where the service's type is a parameter: left to the
/// caller, proving `Send` for a spawned task that awaits hyper's connection over a concrete
/// service runs into the compiler's higher-ranked lifetime limits. Each stage is boxed on its
/// own (plain or TLS; the handshake; HTTP/1 or HTTP/2), so an open connection holds the memory
/// of the stage it is in, not of the largest one (docs/performance.md §6.3).
pub fn serve_connection<S, B>(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> Pin<Box<dyn std::future::Future<Output = Ended> + Send>>
where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    match tls {
        None => Box::pin(serve_plain(stream, service, limits, stop)),
        Some(acceptor) => Box::pin(serve_tls(stream, acceptor, service, limits, stop)),
    }
}

type Serving = Pin<Box<dyn std::future::Future<Output = Ended> + Send>>;

async fn serve_plain<S, B>(
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> Ended
where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let guard = Guard::new();
    // The first bytes are due within the first-request deadline, as the request they begin.
    let detected = tokio::select! {
        d = tokio::time::timeout(limits.header_read_timeout, detect::peek_protocol(&stream)) => d,
        _ = stop.changed() => return Ended::Closed,
    };
    let protocol = match detected {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => return Ended::Closed,
        Ok(Err(e)) => return Ended::Http(e.into()),
        Err(_) => return Ended::TimedOut(NO_FIRST_REQUEST),
    };
    let io = TokioIo::new(guard.watch(stream));
    serve_http(protocol, io, service, guard, limits, stop).await
}

async fn serve_tls<S, B>(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    service: S,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> Ended
where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let guard = Guard::new();
    let deadline = limits.tls_handshake_timeout.min(limits.header_read_timeout);
    // Boxed: the handshake's state is large and not needed once it is done.
    let handshake = Box::pin(tokio::time::timeout(
        deadline,
        acceptor.accept(guard.watch(stream)),
    ));
    let tls = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ended::Handshake(e),
        Err(_) => return Ended::HandshakeTimeout,
    };
    let protocol = detect::from_alpn(tls.get_ref().1.alpn_protocol());
    serve_http(protocol, TokioIo::new(tls), service, guard, limits, stop).await
}

/// Serves `io` with hyper's server for `protocol`, with `limits` (the same for both where
/// both have the setting).
fn serve_http<I, S, B>(
    protocol: Protocol,
    io: I,
    service: S,
    guard: Guard,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> Serving
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let service = Tracked {
        inner: service,
        guard: guard.clone(),
    };
    let header_bytes = limits.max_header_bytes.max(MIN_HEADER_BYTES);
    match protocol {
        Protocol::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(header_bytes)
                .serve_connection(io, service);
            Box::pin(drive(conn, guard, limits, stop))
        }
        Protocol::Http2 => {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
                .serve_connection(io, service);
            Box::pin(drive(conn, guard, limits, stop))
        }
    }
}

/// hyper's HTTP/1 and HTTP/2 server connections alike.
trait HttpConnection: std::future::Future<Output = Result<(), hyper::Error>> {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S, B> HttpConnection for hyper::server::conn::http1::Connection<I, S>
where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> HttpConnection for hyper::server::conn::http2::Connection<I, S, TokioExecutor>
where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs one connection until it ends, the server stops, or its guard says it has been silent
/// too long; then shuts it down gracefully, dropping it if that takes over the header-read
/// timeout. (Everything is owned: a future holding references here is not `Send` for every
/// lifetime, which spawned connection tasks need.)
async fn drive<C: HttpConnection>(
    conn: C,
    guard: Guard,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let (first_request, idle) = (limits.header_read_timeout, limits.idle_timeout);
    tokio::pin!(conn);
    let interval = Guard::check_interval(first_request, idle);
    let ended = loop {
        tokio::select! {
            r = conn.as_mut() => {
                return match r {
                    Ok(()) => Ended::Closed,
                    Err(e) => Ended::Http(e.into()),
                };
            }
            _ = stop.changed() => break Ended::Closed,
            _ = tokio::time::sleep(interval) => {
                if let Verdict::Close(why) = guard.verdict(first_request, idle) {
                    break Ended::TimedOut(why);
                }
            }
        }
    };
    conn.as_mut().shut_down();
    let _ = tokio::time::timeout(first_request, conn).await;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use std::convert::Infallible;
    use std::future::Future;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ok_service() -> impl Service<
        hyper::Request<Incoming>,
        Response = hyper::Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<hyper::Response<Full<Bytes>>, Infallible>> + Send,
    > + Send
    + 'static {
        hyper::service::service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let (_tx, rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve_connection(s, None, ok_service(), limits, rx).await
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        // Never finish the headers: the server closes the connection.
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf))
            .await
            .expect("server closed the connection");
        assert!(n.is_ok());
        let ended = server.await.unwrap();
        assert!(
            matches!(ended, Ended::Http(_) | Ended::TimedOut(_)),
            "{ended:?}"
        );
    }

    #[tokio::test]
    async fn a_stalled_tls_handshake_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            tls_handshake_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let key = rustls_config();
        let (_tx, rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve_connection(
                s,
                Some(tokio_rustls::TlsAcceptor::from(key)),
                ok_service(),
                limits,
                rx,
            )
            .await
        });
        // Connect and say nothing.
        let _c = TcpStream::connect(addr).await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("handshake deadline")
            .unwrap();
        assert!(matches!(ended, Ended::HandshakeTimeout), "{ended:?}");
    }

    fn rustls_config() -> Arc<tokio_rustls::rustls::ServerConfig> {
        // Any certificate does: the client never sends a ClientHello.
        let cert = self_signed();
        Arc::new(
            tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(cert.0, cert.1)
            .unwrap(),
        )
    }

    /// A self-signed certificate and its key.
    fn self_signed() -> (
        Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
        tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (
            vec![ck.cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
                ck.key_pair.serialize_der().into(),
            ),
        )
    }

    #[tokio::test]
    async fn silent_and_idle_connections_are_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let (_tx, rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            let mut ends = Vec::new();
            for _ in 0..2 {
                let (s, _) = listener.accept().await.unwrap();
                ends.push(serve_connection(s, None, ok_service(), limits, rx.clone()).await);
            }
            ends
        });
        // Sends nothing at all (not even the HTTP/2 preface).
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut buf))
            .await
            .expect("a silent connection is closed")
            .unwrap();
        // One request, then nothing: closed after the idle timeout.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut buf))
            .await
            .expect("an idle connection is closed")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
        let ends = server.await.unwrap();
        // Closed by the guard or by hyper's own header-read deadline, whichever fires first.
        for e in &ends {
            assert!(matches!(e, Ended::TimedOut(_) | Ended::Http(_)), "{e:?}");
        }
    }

    #[tokio::test]
    async fn slots_cap_open_connections() {
        let limits = ConnectionLimits {
            max_connections: 2,
            ..Default::default()
        };
        let slots = ConnectionSlots::new(&limits);
        let a = slots.acquire().await.unwrap();
        let _b = slots.acquire().await.unwrap();
        assert_eq!(slots.open(&limits), 2);
        let s2 = slots.clone();
        let third = tokio::spawn(async move { s2.acquire().await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(a);
        assert!(third.await.unwrap().is_some());
    }
}
