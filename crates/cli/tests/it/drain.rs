//! SIGTERM drains (docs/architecture.md §7), on real `agentid` processes: the STS and the gateway
//! stop accepting, answer the request in flight, fail readiness meanwhile, and exit 0. (The
//! sidecar's drain is tested in-process in crates/sidecar/tests/drain.rs; all three share the
//! accept loop and drain of `agentid-listener`.)

use crate::process_support::{Proc, eventually, free_port, refuses_connections};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads from `stream` until `needle` has arrived (or the peer closes).
fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading: {e} after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn sts_serve_drains_on_sigterm_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("sts.yaml");
    std::fs::write(&config, "server:\n  drain_timeout: 20\n").unwrap();
    let args: Vec<String> = vec![
        "sts".into(),
        "serve".into(),
        "--insecure-http".into(),
        format!("--config={}", config.display()),
        format!("--data-dir={}", dir.path().display()),
        format!("--listen=127.0.0.1:{port}"),
        format!(
            "--tenant-file={}",
            repo_root().join("examples/demo-tenant.yaml").display()
        ),
    ];
    let mut sts = Proc::spawn("agentid sts serve", &args, &[]);
    sts.wait_for_line("agentid STS ready at", Duration::from_secs(60));

    // A token request whose body is still on its way: `Expect: 100-continue` makes the server
    // say when the handler has started reading it, so it is in flight when SIGTERM arrives.
    let body = format!(
        "grant_type=client_credentials&client_id={BP}&client_secret={BP_SECRET}\
         &scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "POST /contoso.test/oauth2/v2.0/token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let continued = read_until(&mut conn, "\r\n\r\n");
    assert!(
        continued.starts_with("HTTP/1.1 100"),
        "the handler reads the body: {continued}"
    );

    let terminated = Instant::now();
    sts.signal("TERM");
    // Readiness fails: a probe's new connection is refused (the listening socket is closed).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refuses_connections(port) {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sts.is_running(), "it waits for the request in flight");

    conn.write_all(body.as_bytes()).unwrap();
    let response = read_until(&mut conn, "\"access_token\"");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the request in flight is answered: {response}"
    );
    let status = sts.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", sts.output());
    let output = sts.output();
    assert!(output.contains("draining"), "{output}");
    assert!(output.lines().any(|l| l.trim() == "stopped"), "{output}");
    eprintln!(
        "STS: SIGTERM to exit 0 in {} ms, with one request in flight",
        terminated.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_readyz_answers_503_while_draining() {
    let sts = agentid_testkit::TestSts::start(
        agentid_testkit::Db::Sqlite,
        include_str!("../../../../examples/demo-tenant.yaml"),
    )
    .await;
    let state = sts.running.state.clone();
    let ready = agentid_sts::discovery::readyz(axum::extract::State(state.clone())).await;
    assert_eq!(ready.status(), 200);
    sts.running.shutdown();
    let draining = agentid_sts::discovery::readyz(axum::extract::State(state)).await;
    assert_eq!(draining.status(), 503);
    sts.stop().await;
}

/// An upstream that holds every request until released, and says when one has arrived.
async fn holding_upstream() -> (
    u16,
    tokio::sync::watch::Sender<bool>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let (release, released) = tokio::sync::watch::channel(false);
    let arrived = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = arrived.clone();
    let app = axum::Router::new().fallback(move || {
        let (mut released, seen) = (released.clone(), seen.clone());
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = released.wait_for(|r| *r).await;
            "finished upstream"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, release, arrived)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_drains_on_sigterm_and_exits_zero() {
    use std::sync::atomic::Ordering;
    let (upstream, release, arrived) = holding_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let [bind, admin, stats, readiness] = [free_port(), free_port(), free_port(), free_port()];
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "config:\n  adminAddr: 127.0.0.1:{admin}\n  statsAddr: 127.0.0.1:{stats}\n  \
             readinessAddr: 127.0.0.1:{readiness}\n  connectionTerminationDeadline: 20s\n\
             binds:\n- port: {bind}\n  listeners:\n  - routes:\n    - backends: [{{host: \"127.0.0.1:{upstream}\"}}]\n"
        ),
    )
    .unwrap();
    let mut gateway = Proc::spawn(
        "agentid gateway",
        &["gateway".into(), "-f".into(), config.display().to_string()],
        &[],
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready_url = format!("http://127.0.0.1:{readiness}/healthz/ready");
    eventually(
        "the gateway to be ready",
        Duration::from_secs(60),
        || async {
            let r = http.get(&ready_url).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    assert!(gateway.is_running(), "{}", gateway.output());

    let in_flight = {
        let http = http.clone();
        tokio::spawn(async move {
            http.get(format!("http://127.0.0.1:{bind}/slow"))
                .send()
                .await
        })
    };
    eventually(
        "the request to reach the upstream",
        Duration::from_secs(30),
        || async { (arrived.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;

    let terminated = Instant::now();
    gateway.signal("TERM");
    eventually(
        "readiness to answer 503",
        Duration::from_secs(10),
        || async {
            let r = http.get(&ready_url).send().await.ok()?;
            (r.status() == 503).then_some(())
        },
    )
    .await;
    eventually(
        "the bind to refuse connections",
        Duration::from_secs(10),
        || async { refuses_connections(bind).then_some(()) },
    )
    .await;
    assert!(gateway.is_running(), "it waits for the request in flight");

    release.send_replace(true);
    let response = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished upstream");
    let status = gateway.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", gateway.output());
    eprintln!(
        "gateway: SIGTERM to exit 0 in {} ms, with one request in flight",
        terminated.elapsed().as_millis()
    );
}
