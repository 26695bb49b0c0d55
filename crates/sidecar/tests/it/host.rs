//! DNS rebinding (issue 10, defect 6): a web page that rebinds its name to 127.0.0.1 reaches
//! the sidecar from a loopback peer, but its requests still carry the page's name in `Host`.
//! Only `localhost`, loopback addresses, the address a connection arrived on (Kubernetes
//! probes: `Host: <pod IP>:<port>`) and `Sidecar__AllowedHosts` are served — probes included.

use crate::support::*;
use std::net::IpAddr;

/// The names a rebinding page would send: its own DNS name, with or without port.
const REBOUND: [&str; 7] = [
    "evil.example",
    "evil.example:5000",
    "localhost.evil.example",
    "127.0.0.1.nip.io",
    "127.0.0.1.evil.example:5000",
    "sidecar.internal.evil.example",
    "[::1].evil.example",
];

async fn get_with_host(url: &str, host: &str) -> (u16, String) {
    let r = http_client()
        .get(url)
        .header("host", host)
        .send()
        .await
        .expect("sidecar answers");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebound_host_names_are_refused_on_every_route() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(
        &sts,
        &[
            ("Sidecar__HealthListenUrl", Some("http://127.0.0.1:0")),
            ("Sidecar__AllowedHosts__0", Some("sidecar.internal")),
        ],
    )
    .await;
    let main = sc.url.clone();
    let health = sc.running.health_url().expect("health listener");
    let port = sc.running.addrs[0].port();
    for host in REBOUND {
        for url in [
            format!("{main}/AuthorizationHeaderUnauthenticated/graph-app"),
            format!("{main}/Validate"),
            format!("{main}/healthz"),
            format!("{main}/metrics"),
            format!("{health}/healthz"),
            format!("{health}/metrics"),
        ] {
            let (status, body) = get_with_host(&url, host).await;
            assert_eq!(status, 421, "{host} {url}: {body}");
            assert!(body.contains("Misdirected Request"), "{body}");
        }
    }
    // What a local agent sends, and the configured name, are served.
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("[::1]:{port}"),
        "sidecar.internal".to_string(),
        format!("SIDECAR.internal:{port}"),
    ] {
        let (status, body) = get_with_host(
            &format!("{main}/AuthorizationHeaderUnauthenticated/graph-app"),
            &host,
        )
        .await;
        assert_eq!(status, 200, "{host}: {body}");
        let (status, _) = get_with_host(&format!("{health}/healthz"), &host).await;
        assert_eq!(status, 200, "{host}");
    }
    // Refusals are counted like every other request.
    assert!(
        sc.metric("agentid_sidecar_requests_total{route=\"misdirected\",status=\"421\"}")
            .await
            >= (REBOUND.len() * 6) as f64
    );
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
async fn kubelet_probe_with_pod_ip_host_is_served() {
    let sts = start_sts().await;
    // deploy/agent.yaml: the health listener on all interfaces, probed at the pod IP.
    let sc = TestSidecar::direct(
        &sts,
        &[("Sidecar__HealthListenUrl", Some("http://0.0.0.0:0"))],
    )
    .await;
    let port = sc.running.health_addrs[0].port();
    let Some(ip) = local_non_loopback() else {
        eprintln!("no non-loopback address on this machine; the unit tests cover the rule");
        return;
    };
    let pod = std::net::SocketAddr::new(ip, port);
    // The kubelet: connects to the pod IP and names it in Host.
    let (status, body) = get_with_host(&format!("http://{pod}/healthz"), &pod.to_string()).await;
    assert_eq!((status, body.as_str()), (200, "Healthy"));
    // Another address in Host on the same connection is not the pod's own.
    let (status, _) = get_with_host(&format!("http://{pod}/healthz"), "10.255.255.254:5001").await;
    assert_eq!(status, 421);
    let (status, _) = get_with_host(&format!("http://{pod}/healthz"), "evil.example").await;
    assert_eq!(status, 421);
    sts.stop().await;
}

#[test]
fn a_wildcard_allow_list_is_refused() {
    let env: Vec<(String, String)> = [
        ("AzureAd__TenantId", "5e7d8166-7876-4755-a1a4-b476d4a344f6"),
        ("AzureAd__ClientId", "85075aa5-1d73-42de-812a-95348218e4b2"),
        ("AzureAd__ClientCredentials__0__SourceType", "ClientSecret"),
        ("AzureAd__ClientCredentials__0__ClientSecret", "x"),
        ("Sidecar__AllowedHosts__0", "*"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let e = agentid_sidecar::config::load(&agentid_sidecar::ConfigSources::from_vars(&env))
        .unwrap_err()
        .to_string();
    assert!(e.contains("Sidecar__AllowedHosts__0"), "{e}");
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| {
            if k == "Sidecar__AllowedHosts__0" {
                (k, "http://sidecar.internal:5000".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    let e = agentid_sidecar::config::load(&agentid_sidecar::ConfigSources::from_vars(&env))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a host name"), "{e}");
}
