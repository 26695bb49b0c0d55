//! Deciding HTTP/1.1 or HTTP/2 per connection (docs/gateway.md §1): well-behaved clients of
//! both protocols, on plain TCP and TLS, and clients that send fragments of the HTTP/2 preface,
//! stall, diverge, or close.

use agentid_listener::detect::H2_PREFACE;
use agentid_listener::{ConnectionLimits, Ended, serve_connection};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// Long enough never to fire in a test that expects another ending.
const PATIENT: Duration = Duration::from_secs(30);
/// How long a test waits for what should happen at once.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Serves one connection on a fresh port, answering every request with its HTTP version.
async fn serve_one(
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, JoinHandle<Ended>, watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
            let v = format!("{:?}", req.version());
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(v))))
        });
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        serve_connection(s, tls, service, limits, rx).await
    });
    (addr, server, stop)
}

fn limits(header_read: Duration) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: header_read,
        tls_handshake_timeout: header_read,
        ..Default::default()
    }
}

async fn ended(server: JoinHandle<Ended>) -> Ended {
    tokio::time::timeout(PROMPTLY, server)
        .await
        .expect("the connection ended in time")
        .unwrap()
}

/// Reads until the server closes.
async fn read_all(c: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PROMPTLY, c.read_to_end(&mut buf))
        .await
        .expect("the server closed the connection");
    buf
}

/// A GET over HTTP/2 on `io`: the status and body.
async fn h2_get<T>(io: T) -> (hyper::StatusCode, hyper::Version, Bytes)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(PROMPTLY, send.send_request(req))
        .await
        .expect("answered")
        .unwrap();
    let (status, version) = (resp.status(), resp.version());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, version, body)
}

#[tokio::test]
async fn http2_with_prior_knowledge_on_plain_tcp() {
    let (addr, server, _stop) = serve_one(limits(PATIENT), None).await;
    let c = TcpStream::connect(addr).await.unwrap();
    let (status, version, body) = h2_get(c).await;
    assert_eq!(status, 200);
    assert_eq!(version, hyper::Version::HTTP_2);
    assert_eq!(&body[..], b"HTTP/2.0");
    server.abort();
}

#[tokio::test]
async fn http1_on_plain_tcp_even_when_it_begins_like_the_preface() {
    // "P" matches the preface's first byte; the next bytes diverge from it in a later write.
    // (Whether the server looks between the two writes is up to the scheduler; that the
    // decision waits when it does is shown poll by poll in `detect`'s unit test.)
    let (addr, server, _stop) = serve_one(limits(PATIENT), None).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    c.write_all(b"P").await.unwrap();
    c.write_all(b"OST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_all(&mut c).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("HTTP/1.1"), "{answer}");
    assert!(matches!(ended(server).await, Ended::Closed));
}

#[tokio::test]
async fn a_request_that_diverges_late_from_the_preface_is_refused_as_http1() {
    // Matches the preface up to "HTTP/" (11 bytes): HTTP/1.1 reads it and refuses it cleanly.
    let (addr, server, _stop) = serve_one(limits(PATIENT), None).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"PRI * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_all(&mut c).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    let e = ended(server).await;
    assert!(matches!(e, Ended::Closed | Ended::Http(_)), "{e:?}");
}

#[tokio::test]
async fn the_preface_split_across_writes_is_http2() {
    let (addr, server, _stop) = serve_one(limits(PATIENT), None).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    c.write_all(&H2_PREFACE[..5]).await.unwrap();
    c.write_all(&H2_PREFACE[5..]).await.unwrap();
    // An empty SETTINGS frame: the server answers with its own SETTINGS (type 4) first.
    c.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(PROMPTLY, c.read_exact(&mut head))
        .await
        .expect("the server spoke")
        .unwrap();
    assert_eq!(head[3], 4, "a SETTINGS frame: {head:?}");
    server.abort();
}

#[tokio::test]
async fn a_partial_preface_then_silence_times_out() {
    let header_read = Duration::from_millis(300);
    let (addr, server, _stop) = serve_one(limits(header_read), None).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    c.write_all(&H2_PREFACE[..10]).await.unwrap();
    let rest = read_all(&mut c).await;
    assert!(rest.is_empty(), "{rest:?}");
    let e = ended(server).await;
    assert!(matches!(e, Ended::TimedOut(_)), "{e:?}");
    assert!(started.elapsed() >= header_read, "not before the deadline");
}

#[tokio::test]
async fn a_partial_preface_then_close_ends_at_once() {
    let (addr, server, _stop) = serve_one(limits(PATIENT), None).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&H2_PREFACE[..10]).await.unwrap();
    c.shutdown().await.unwrap();
    let _ = read_all(&mut c).await;
    let e = ended(server).await;
    assert!(matches!(e, Ended::Closed | Ended::Http(_)), "{e:?}");
}

#[tokio::test]
async fn a_connection_closed_before_a_byte_ends_at_once() {
    let (addr, server, _stop) = serve_one(limits(PATIENT), None).await;
    drop(TcpStream::connect(addr).await.unwrap());
    let e = ended(server).await;
    assert!(matches!(e, Ended::Closed), "{e:?}");
}

#[tokio::test]
async fn stopping_while_waiting_for_the_first_bytes_ends_the_connection() {
    let (addr, server, stop) = serve_one(limits(PATIENT), None).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&H2_PREFACE[..3]).await.unwrap();
    // The server's receiver sees the change whenever it starts waiting.
    stop.send_replace(true);
    let e = ended(server).await;
    assert!(matches!(e, Ended::Closed), "{e:?}");
}

fn tls_server() -> (Arc<rustls::ServerConfig>, rustls::RootCertStore) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    // As every agentid listener offers.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    (Arc::new(config), roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn tls_connect(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn http2_negotiated_by_alpn_on_tls() {
    let (config, roots) = tls_server();
    let (addr, server, _stop) = serve_one(limits(PATIENT), Some(config)).await;
    let c = tls_connect(addr, roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(c.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, version, body) = h2_get(c).await;
    assert_eq!(status, 200);
    assert_eq!(version, hyper::Version::HTTP_2);
    assert_eq!(&body[..], b"HTTP/2.0");
    server.abort();
}

#[tokio::test]
async fn http1_on_tls_with_alpn_or_without() {
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let (config, roots) = tls_server();
        let (addr, server, _stop) = serve_one(limits(PATIENT), Some(config)).await;
        let mut c = tls_connect(addr, roots, alpn).await;
        let expected = alpn.first().copied();
        assert_eq!(c.get_ref().1.alpn_protocol(), expected);
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = String::from_utf8(read_all(&mut c).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("HTTP/1.1"), "{answer}");
        let e = ended(server).await;
        assert!(matches!(e, Ended::Closed | Ended::Http(_)), "{e:?}");
    }
}
