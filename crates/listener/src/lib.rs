//! Serving HTTP connections with the limits every agentid listener needs (the STS and the
//! gateway share this): a cap on open connections, a deadline for the TLS handshake, a
//! deadline for reading a request's headers, and a graceful end when the server stops.
//! Without these, a client that opens connections and sends nothing (or sends headers a
//! byte at a time) holds a task and a socket for ever.

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many connections a listener keeps open, and how long a client may take to start one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time to read a request's headers (HTTP/1.1), from the connection's start or the end of
    /// the previous response.
    pub header_read_timeout: Duration,
    /// Time to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
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
    /// The client or the server closed it normally (or shutdown finished it).
    Closed,
    /// The TLS handshake did not finish in time.
    HandshakeTimeout,
    /// The TLS handshake failed.
    Handshake(std::io::Error),
    /// HTTP ended with an error (including a header-read timeout).
    Http(BoxError),
}

/// Serves HTTP/1.1 and HTTP/2 on one accepted connection, over TLS when `tls` is given,
/// within `limits`; when `stop` changes, in-flight requests finish and the connection closes.
pub async fn serve_connection<S, B>(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    limits: &ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> Ended
where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    match tls {
        Some(acceptor) => {
            match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(s)) => drive(&builder, TokioIo::new(s), service, stop).await,
                Ok(Err(e)) => Ended::Handshake(e),
                Err(_) => Ended::HandshakeTimeout,
            }
        }
        None => drive(&builder, TokioIo::new(stream), service, stop).await,
    }
}

async fn drive<I, S, B>(
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
) -> Ended
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => Ended::Closed,
        Err(e) => Ended::Http(e),
    }
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
            serve_connection(s, None, ok_service(), &limits, rx).await
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        // Never finish the headers: the server closes the connection.
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf))
            .await
            .expect("server closed the connection");
        assert!(n.is_ok());
        assert!(matches!(server.await.unwrap(), Ended::Http(_)));
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
                &limits,
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
