//! Who may call (docs/sidecar.md §11 S2/S14, §16.H): only loopback and Unix-socket peers reach the
//! main listener (except `/healthz`), whatever the Host header or ASPNETCORE_ENVIRONMENT; the
//! health listener serves nothing but `/healthz` and `/metrics`.

use crate::support::*;
use agentid_sidecar::http::peer::Peer;
use agentid_sidecar::http::route::Listener;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAIN: Listener = Listener::Main { openapi: false };

async fn call(
    sc: &TestSidecar,
    peer: Peer,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(t) = bearer {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b.body(Full::new(Bytes::new())).unwrap();
    let resp = sc.running.state.handle(MAIN, peer, req).await;
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

const TOKEN_ROUTES: [(&str, &str); 7] = [
    ("GET", "/AuthorizationHeader/graph"),
    ("GET", "/AuthorizationHeaderUnauthenticated/graph-app"),
    ("POST", "/DownstreamApi/graph"),
    ("POST", "/DownstreamApiUnauthenticated/graph-app"),
    ("GET", "/Validate"),
    ("GET", "/metrics"),
    ("GET", "/nope"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_peers_are_refused_except_for_healthz() {
    let sts = start_sts().await;
    let tc = alice_tc(&sts).await;
    for env in [
        vec![],
        vec![("ASPNETCORE_ENVIRONMENT", Some("Development"))],
    ] {
        let sc = TestSidecar::direct(&sts, &env).await;
        let remote = Peer::Tcp("203.0.113.10:40000".parse().unwrap());
        // H1, H4
        for (m, p) in TOKEN_ROUTES {
            let (status, body) = call(&sc, remote, m, p, Some(&tc)).await;
            assert_eq!((status, body.len()), (403, 0), "{m} {p}");
        }
        let mapped = Peer::Tcp("[::ffff:203.0.113.10]:1".parse().unwrap());
        assert_eq!(
            call(
                &sc,
                mapped,
                "GET",
                "/AuthorizationHeaderUnauthenticated/graph-app",
                None
            )
            .await
            .0,
            403
        );
        // H2
        let (status, body) = call(&sc, remote, "GET", "/healthz", None).await;
        assert_eq!((status, body.as_slice()), (200, &b"Healthy"[..]));
        // H3
        for p in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            let (status, _) = call(
                &sc,
                Peer::Tcp(p.parse().unwrap()),
                "GET",
                "/AuthorizationHeaderUnauthenticated/graph-app",
                None,
            )
            .await;
            assert_eq!(status, 200, "{p}");
        }
        let (status, _) = call(
            &sc,
            Peer::Unix,
            "GET",
            "/AuthorizationHeaderUnauthenticated/graph-app",
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let open = TestSidecar::direct(&sts, &[("Sidecar__AllowRemoteCallers", Some("true"))]).await;
    let (status, _) = call(
        &open,
        Peer::Tcp("203.0.113.10:1".parse().unwrap()),
        "GET",
        "/AuthorizationHeaderUnauthenticated/graph-app",
        None,
    )
    .await;
    assert_eq!(status, 200);
    sts.stop().await;
}

/// A non-loopback address of this machine, if it has one.
fn local_non_loopback() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_manifest_binding_all_interfaces_still_refuses_remote_sockets() {
    let sts = start_sts().await;
    // The seed's ASPNETCORE_URLS=http://+:5000 (port 0 here), and no Sidecar__ListenUrl.
    let sc = TestSidecar::direct(
        &sts,
        &[
            ("Sidecar__ListenUrl", None),
            ("ASPNETCORE_URLS", Some("http://+:0")),
        ],
    )
    .await;
    let port = sc.running.addrs[0].port();
    assert!(sc.running.addrs[0].ip().is_unspecified());
    let local = reqwest::get(format!(
        "http://127.0.0.1:{port}/AuthorizationHeaderUnauthenticated/graph-app"
    ))
    .await
    .unwrap();
    assert_eq!(local.status(), 200);
    let Some(ip) = local_non_loopback() else {
        eprintln!(
            "no non-loopback address on this machine; the injected-peer test covers the check"
        );
        return;
    };
    let remote = SocketAddr::new(ip, port);
    // The probe the seed's manifests use: Host: localhost from another address.
    let client = http_client();
    let r = client
        .get(format!(
            "http://{remote}/AuthorizationHeaderUnauthenticated/graph-app"
        ))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client
        .get(format!("http://{remote}/healthz"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_listener() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.sock");
    let sc = TestSidecar::direct(
        &sts,
        &[(
            "Sidecar__ListenUrl",
            Some(&format!("unix:{}", path.display())),
        )],
    )
    .await;
    assert_eq!(sc.running.unix_paths, vec![path.clone()]);
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /AuthorizationHeaderUnauthenticated/graph-app HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"authorizationHeader\":\"Bearer "), "{text}");
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_listener_serves_only_health_and_metrics() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(
        &sts,
        &[("Sidecar__HealthListenUrl", Some("http://127.0.0.1:0"))],
    )
    .await;
    let health = sc.running.health_url().expect("health listener");
    let client = http_client();
    let get = |p: &str| client.get(format!("{health}{p}")).send();
    // H5
    assert_eq!(
        get("/AuthorizationHeaderUnauthenticated/graph-app")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(get("/AuthorizationHeader/x").await.unwrap().status(), 404);
    assert_eq!(get("/Validate").await.unwrap().status(), 404);
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Healthy");
    let r = get("/metrics").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    sts.stop().await;
}
