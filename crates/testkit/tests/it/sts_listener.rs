//! The STS listener's limits (issue 10, item 9): a client that opens a connection and never
//! finishes the TLS handshake or its headers is cut off, and open connections are capped.

use agentid_testkit::sts::Options;
use agentid_testkit::{Db, TestSts};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use agentid_testkit::demo::DEMO_TENANT as DEMO;

async fn start(
    tls: bool,
    configure: impl FnOnce(&mut agentid_sts::Settings) + Send + 'static,
) -> TestSts {
    TestSts::start_with(
        Db::Sqlite,
        DEMO,
        Options {
            tls,
            configure: Box::new(configure),
        },
    )
    .await
}

/// Reads until the server closes the connection; `None` if it is still open at the deadline.
async fn closed_within(c: &mut TcpStream, deadline: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    tokio::time::timeout(deadline, c.read_to_end(&mut buf))
        .await
        .ok()
        .map(|_| buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_cut_off() {
    let sts = start(true, |s| {
        s.listener.tls_handshake_timeout = Duration::from_millis(300)
    })
    .await;
    let mut c = TcpStream::connect(sts.running.addr).await.unwrap();
    // A ClientHello is never sent.
    assert!(
        closed_within(&mut c, Duration::from_secs(10))
            .await
            .is_some(),
        "the STS keeps a connection that never starts TLS"
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let sts = start(false, |s| {
        s.listener.header_read_timeout = Duration::from_millis(300)
    })
    .await;
    let mut c = TcpStream::connect(sts.running.addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = closed_within(&mut c, Duration::from_secs(10))
        .await
        .expect("the STS keeps a connection whose headers never end");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    let sts = start(false, |s| s.listener.max_connections = 2).await;
    let addr = sts.running.addr;
    let get = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // Two keep-alive connections hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(get).await.unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    // A third is accepted by the kernel but not served while both are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(get).await.unwrap();
    let mut buf = [0u8; 12];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read_exact(&mut buf))
            .await
            .is_err(),
        "a third connection was served past max_connections = 2"
    );
    // Closing one frees a slot: the third is served.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(10), third.read_exact(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    sts.stop().await;
}
