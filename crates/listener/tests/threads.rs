//! Serving threads with the listener's guarantees: every thread answers, the connection cap
//! holds across threads, and the drain finishes the connections of all of them.

use agentid_listener::{
    ConnectionLimits, ConnectionSlots, Drain, Drained, ServingThreads, accept_until_drain,
    serve_connection, serving_thread, threads::socket_copies,
};
use bytes::Bytes;
use http_body_util::Full;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A server on `count` threads sharing one socket and one cap. A request to `/block` blocks
/// its whole thread until `release` is sent; every answer's body is the thread's index.
struct Server {
    addr: SocketAddr,
    drain: Drain,
    slots: ConnectionSlots,
    limits: ConnectionLimits,
    stop: watch::Sender<bool>,
    threads: Option<ServingThreads>,
    release: mpsc::Sender<()>,
}

fn start(count: usize, max_connections: usize) -> Server {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let copies = Mutex::new(socket_copies(&std_listener, count).unwrap());
    drop(std_listener);
    let limits = ConnectionLimits {
        max_connections,
        ..Default::default()
    };
    let slots = ConnectionSlots::new(&limits);
    let drain = Drain::new();
    let (stop, stop_rx) = watch::channel(false);
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let (d, s) = (drain.clone(), slots.clone());
    let threads = ServingThreads::start(count, "test-serve", stop_rx, move |_, _| {
        let listener = copies.lock().unwrap().pop().unwrap().register().unwrap();
        let (drain, slots, released) = (d.clone(), s.clone(), released.clone());
        let signal = drain.signal();
        accept_until_drain(listener, slots, drain, move |stream, _peer| {
            let released = released.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let released = released.clone();
                async move {
                    if req.uri().path() == "/block" {
                        let _ = released
                            .lock()
                            .unwrap()
                            .recv_timeout(Duration::from_secs(20));
                    }
                    let me = serving_thread().map_or("none".to_string(), |i| i.to_string());
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(me))))
                }
            });
            let conn = serve_connection(stream, None, service, limits, signal.clone());
            async move {
                conn.await;
            }
        })
    })
    .unwrap();
    Server {
        addr,
        drain,
        slots,
        limits,
        stop,
        threads: Some(threads),
        release,
    }
}

async fn send(c: &mut TcpStream, path: &str) {
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
}

/// Reads one small answer and returns its body.
async fn answer(c: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= len {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                return body[..len].to_string();
            }
        }
    }
}

#[tokio::test]
async fn two_threads_both_answer() {
    let server = start(2, 100);
    // The first request blocks its thread: only the other thread can take the second.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    send(&mut first, "/block").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.drain.open() == 0 {
        assert!(
            Instant::now() < deadline,
            "the first connection is accepted"
        );
        tokio::task::yield_now().await;
    }
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    send(&mut second, "/").await;
    let other = answer(&mut second).await;
    server.release.send(()).unwrap();
    let blocked = answer(&mut first).await;
    let mut both = [blocked, other];
    both.sort();
    assert_eq!(both, ["0".to_string(), "1".to_string()]);
}

#[tokio::test]
async fn the_connection_cap_holds_across_threads() {
    let server = start(2, 1);
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    send(&mut first, "/").await;
    answer(&mut first).await;
    assert_eq!(server.slots.open(&server.limits), 1);
    // The other thread has no slot to take the second connection with.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    send(&mut second, "/").await;
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte))
            .await
            .is_err(),
        "a connection over the cap is not served"
    );
    assert_eq!(server.drain.open(), 1);
    drop(first);
    // Served once the first one's slot is free, by whichever thread.
    answer(&mut second).await;
}

#[tokio::test]
async fn the_drain_finishes_every_threads_connections() {
    let mut server = start(2, 100);
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        send(&mut c, "/").await;
        answer(&mut c).await;
        open.push(c);
    }
    assert_eq!(server.drain.open(), 4);
    server.drain.begin();
    assert_eq!(
        server.drain.finished(Duration::from_secs(20)).await,
        Drained::Finished,
        "idle keep-alive connections close on every thread"
    );
    for c in &mut open {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(server.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the socket closes once every thread stops accepting"
        );
        tokio::task::yield_now().await;
    }
    server.stop.send_replace(true);
    tokio::time::timeout(
        Duration::from_secs(10),
        server.threads.take().unwrap().finished(),
    )
    .await
    .expect("every serving thread ends after the drain");
}
