//! Issue 10, item 9: the gateway's listener bounds what a connection may hold. A socket that
//! never sends a request (or stops inside the HTTP/2 preface) is closed after `headerRead`, an
//! HTTP/2 connection with no traffic after `downstreamIdle`, so silent sockets cannot keep the
//! `maxConnections` permits from real clients; a request body that does not arrive within
//! `requestBody` is answered 408.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway() -> Gw {
    let (upstream, _) = mock_llm().await;
    let config = format!(
        r#"
agentid:
  limits: {{maxConnections: 2}}
  timeouts: {{headerRead: 300ms, downstreamIdle: 500ms, requestBody: 300ms}}
binds:
- port: 3000
  listeners:
  - routes:
    - backends: [{{ai: {{name: m, hostOverride: "{upstream}", provider: {{openAI: {{}}}}}}}}]
"#
    );
    Gw::start(&config, None).await
}

/// Waits for the server to close the socket; `false` if it is still open after `within`.
async fn closed_by_server(sock: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An error response before closing is fine; keep reading to the end.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_header_read() {
    let gw = gateway().await;
    let addr = gw.running.addr(3000);
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(10)).await);
    // Stopping inside the HTTP/2 preface (hyper's protocol sniffing waits for 24 bytes).
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(closed_by_server(&mut partial, Duration::from_secs(10)).await);
    // And inside an HTTP/1 request head.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut slow, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn silent_sockets_do_not_lock_out_real_clients() {
    let gw = gateway().await;
    let addr = gw.running.addr(3000);
    // Both connection permits taken by sockets that never speak.
    let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        gw.http.get(gw.url(3000, "/v1/models")).send(),
    )
    .await
    .expect("a real client is served once the silent sockets are closed")
    .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let done = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, done)
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_downstream_idle() {
    let gw = gateway().await;
    let addr = gw.running.addr(3000);
    let (mut sender, done) = h2_connection(addr).await;
    let req = http::Request::get(format!("http://{addr}/v1/models"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // No more traffic: the server ends the connection.
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap();
    // An HTTP/2 connection that never sends a request is closed after headerRead.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tcp = tcp;
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut tcp, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn a_request_body_that_never_completes_is_answered_408() {
    let gw = gateway().await;
    let addr = gw.running.addr(3000);
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the gateway answers instead of waiting for the body");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}
