//! Issue 10, defect 8: an MCP target behind `backendTLS` is called over TLS, whichever level
//! sets it (route, backend, target), and never in plaintext.
//!
//! The MCP servers here stand in for the guide's `learn.microsoft.com:443` and `mcp.exa.ai:443`:
//! real rustls servers with certificates from a test CA, on 127.0.0.1. Each one looks at the
//! first byte of every connection before anything else: a TLS handshake starts with 0x16, so a
//! plaintext request is counted (and answered with nothing) instead of being served.

use crate::support::*;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agentid MCP TLS test CA");
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        TestCa { cert, key, dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// An MCP server behind TLS that counts completed handshakes and plaintext attempts.
struct TlsMcp {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    plaintext: Arc<AtomicUsize>,
    rec: Recorder,
}

impl TlsMcp {
    async fn start(
        ca: &TestCa,
        cert_names: &[&str],
        name: &'static str,
        tools: &'static [&'static str],
    ) -> TlsMcp {
        let (router, rec) = mcp_router(name, tools);
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(cert_names));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let plaintext = Arc::new(AtomicUsize::new(0));
        let (h, p) = (handshakes.clone(), plaintext.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, router, h, p) =
                    (acceptor.clone(), router.clone(), h.clone(), p.clone());
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    match tcp.peek(&mut first).await {
                        Ok(1) if first[0] == 0x16 => {}
                        Ok(1) => {
                            // A plaintext request: counted, never served.
                            p.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        _ => return,
                    }
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    h.fetch_add(1, Ordering::SeqCst);
                    let svc = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        TlsMcp {
            addr,
            handshakes,
            plaintext,
            rec,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn assert_tls_only(&self) {
        assert!(
            self.handshakes.load(Ordering::SeqCst) > 0,
            "no TLS handshake reached the server"
        );
        assert_eq!(
            self.plaintext.load(Ordering::SeqCst),
            0,
            "a plaintext request reached the TLS port"
        );
        assert!(!self.rec.all().is_empty(), "the MCP server served nothing");
    }
}

const INIT: &str = r#"{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}"#;

/// Initializes a session and lists tools; returns the tool names.
async fn tool_names(gw: &Gw) -> Vec<String> {
    let (st, sid, body) = gw
        .mcp(3000, None, None, serde_json::from_str(INIT).unwrap())
        .await;
    assert_eq!(st, 200, "{body}");
    let sid = sid.expect("session id");
    let (st, _, body) = gw
        .mcp(
            3000,
            None,
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let mut names: Vec<String> = body["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Both targets' tools are listed through the gateway, and each server saw TLS only.
async fn both_listed_over_tls(gw: &Gw, ms: &TlsMcp, exa: &TlsMcp) {
    assert_eq!(
        tool_names(gw).await,
        ["exa-ai_web_search_exa", "microsoft_docs_search"]
    );
    ms.assert_tls_only();
    exa.assert_tls_only();
}

/// The guide's MCP route (seed-agentgateway.yaml): two `{host, port, path}` targets and
/// `backendTLS` where `tls_at` puts it.
fn guide_route(ms: u16, exa: u16, route_tls: &str, backend_tls: &str, target_tls: &str) -> String {
    format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - matches:
      - path:
          exact: /mcp
      backends:
      - mcp:
          targets:
          - name: microsoft
            mcp:
              host: "localhost"
              port: {ms}
              path: "/mcp"
            {target_tls}
          - name: exa-ai
            mcp:
              host: "localhost"
              port: {exa}
              path: "/mcp"
            {target_tls}
        {backend_tls}
      policies:
        cors:
          allowOrigins: ["*"]
          allowHeaders: ["*"]
          allowMethods: ["*"]
        {route_tls}
        requestHeaderModifier:
          remove: [x-forwarded-for, x-forwarded-host, x-forwarded-proto]
"#
    )
}

#[tokio::test]
async fn the_guides_route_level_backend_tls_reaches_tls_targets_with_the_ca_file() {
    let ca = TestCa::new();
    let ms = TlsMcp::start(&ca, &["localhost"], "microsoft", &["docs_search"]).await;
    let exa = TlsMcp::start(&ca, &["localhost"], "exa-ai", &["web_search_exa"]).await;
    let config = guide_route(ms.port(), exa.port(), "backendTLS: {}", "", "");
    let gw = Gw::start(&config, Some(ca.file())).await;
    both_listed_over_tls(&gw, &ms, &exa).await;
}

#[tokio::test]
async fn backend_tls_applies_from_the_route_the_backend_or_the_target() {
    let ca = TestCa::new();
    let root = format!("backendTLS: {{root: \"{}\"}}", ca.file().display());
    let nested = format!("policies: {{{root}}}");
    for (route_tls, backend_tls, target_tls) in [
        (root.as_str(), "", ""),
        ("", nested.as_str(), ""),
        ("", "", nested.as_str()),
    ] {
        let ms = TlsMcp::start(&ca, &["localhost"], "microsoft", &["docs_search"]).await;
        let exa = TlsMcp::start(&ca, &["localhost"], "exa-ai", &["web_search_exa"]).await;
        let config = guide_route(ms.port(), exa.port(), route_tls, backend_tls, target_tls);
        // No --ca-file: only backendTLS.root makes the test CA trusted.
        let gw = Gw::start(&config, None).await;
        both_listed_over_tls(&gw, &ms, &exa).await;
    }
}

#[tokio::test]
async fn backend_tls_hostname_is_the_name_the_certificate_must_carry() {
    let ca = TestCa::new();
    // The guide's public names, served on 127.0.0.1: the certificate carries only mcp.exa.ai.
    let exa = TlsMcp::start(&ca, &["mcp.exa.ai"], "exa-ai", &["web_search_exa"]).await;
    let ms = TlsMcp::start(&ca, &["learn.microsoft.com"], "microsoft", &["docs_search"]).await;
    let config = guide_route(
        ms.port(),
        exa.port(),
        "",
        "",
        "policies: {backendTLS: {hostname: TARGET_NAME}}",
    );
    // Each target names its own certificate's host.
    let config = config
        .replacen("TARGET_NAME", "learn.microsoft.com", 1)
        .replacen("TARGET_NAME", "mcp.exa.ai", 1);
    let gw = Gw::start(&config, Some(ca.file())).await;
    both_listed_over_tls(&gw, &ms, &exa).await;
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_target_and_never_falls_back_to_plaintext() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let ms = TlsMcp::start(&other, &["localhost"], "microsoft", &["docs_search"]).await;
    let exa = TlsMcp::start(&ca, &["localhost"], "exa-ai", &["web_search_exa"]).await;
    let config = guide_route(ms.port(), exa.port(), "backendTLS: {}", "", "");
    let gw = Gw::start(&config, Some(ca.file())).await;
    // The untrusted target is left out; the other still serves.
    assert_eq!(tool_names(&gw).await, ["exa-ai_web_search_exa"]);
    assert_eq!(ms.plaintext.load(Ordering::SeqCst), 0);
    assert!(ms.rec.all().is_empty(), "an untrusted server was served");
    exa.assert_tls_only();
}

#[tokio::test]
async fn without_backend_tls_a_host_port_target_is_plain_http_even_on_443_style_names() {
    // The detector works: a target with no backendTLS anywhere is called in plaintext, which the
    // TLS server counts. (The old code guessed TLS for `.com` hosts on 443; nothing is guessed.)
    let ca = TestCa::new();
    let ms = TlsMcp::start(&ca, &["localhost"], "microsoft", &["docs_search"]).await;
    let (plain, _) = mock_mcp("exa-ai", &["web_search_exa"]).await;
    let config = guide_route(ms.port(), plain.port(), "", "", "");
    let gw = Gw::start(&config, None).await;
    assert_eq!(tool_names(&gw).await, ["exa-ai_web_search_exa"]);
    assert!(ms.plaintext.load(Ordering::SeqCst) > 0);
    assert_eq!(ms.handshakes.load(Ordering::SeqCst), 0);
}

#[test]
fn the_seed_mcp_targets_compile_to_tls() {
    let seed = include_str!("../fixtures/seed-agentgateway.yaml");
    let snap = agentid_gateway::serve::load_offline(
        &agentid_gateway::Source::Inline(seed.to_string()),
        &[],
    )
    .expect("the seed loads");
    let route = &snap.binds[0].listeners[0].routes[1];
    let agentid_gateway::config::model::BackendKind::Mcp(mcp) = &route.backends[0].kind else {
        panic!("the seed's second route is MCP");
    };
    for target in &mcp.targets {
        let agentid_gateway::config::model::TargetTransport::Http(endpoint) = &target.transport
        else {
            panic!("streamable HTTP target");
        };
        assert_eq!(endpoint.url.scheme(), "https", "{}", target.name);
        assert!(endpoint.tls.is_some(), "{}", target.name);
    }
}
