//! Issue 10, defect 1: the path a route authorizes is the path its upstream receives.
//!
//! One upstream serves an unauthenticated catch-all route, an unauthenticated `/public` route,
//! a `/files` route whose CEL `authorization` denies `/files/secret…`, a `/v1/public` route
//! that rewrites its prefix to `/public`, an LLM route (`/llm`, prefix rewritten away), an MCP
//! route (`/mcp`, behind `jwtAuth`) and a `/admin` route behind `jwtAuth`. The upstream
//! is a raw socket that records the request line exactly as the gateway wrote it (no HTTP
//! library in between to normalise it), and the client writes its request lines raw too. Every
//! hostile target must either be refused (400/414), stop at the admin route's 401 or the CEL
//! rule's 403, or reach the upstream as exactly the canonical path the route authorized.

use crate::support::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP/1.1 upstream that records each request line's target byte for byte and answers 200.
#[derive(Clone, Default)]
struct RawUpstream {
    targets: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start() -> (SocketAddr, RawUpstream) {
        let rec = RawUpstream::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = rec.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let head = read_head(&mut sock).await;
                    let line = head.lines().next().unwrap_or_default().to_string();
                    let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                    r.targets.lock().unwrap().push(target);
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        (addr, rec)
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.targets.lock().unwrap())
    }
}

async fn read_head(sock: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `GET {target}` as raw bytes; returns the status code.
async fn raw_get(gw: SocketAddr, target: &[u8], host: &str, token: Option<&str>) -> u16 {
    let mut sock = tokio::net::TcpStream::connect(gw).await.unwrap();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(format!(" HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n").as_bytes());
    if let Some(t) = token {
        req.extend_from_slice(format!("authorization: Bearer {t}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    sock.write_all(&req).await.unwrap();
    let head = read_head(&mut sock).await;
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

async fn gateway(upstream: SocketAddr, signer: &Signer) -> Gw {
    let jwks = signer.jwks();
    let (iss, aud) = (ISS, AUD);
    let config = format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - name: admin
      matches: [{{path: {{pathPrefix: /admin}}}}]
      backends: [{{host: "{upstream}"}}]
      policies:
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [{aud}]
          jwks: '{jwks}'
    - name: public
      matches: [{{path: {{pathPrefix: /public}}}}]
      backends: [{{host: "{upstream}"}}]
    - name: files
      matches: [{{path: {{pathPrefix: /files}}}}]
      backends: [{{host: "{upstream}"}}]
      policies:
        authorization:
          rules:
          - deny: "request.path.startsWith('/files/secret')"
          - "true"
    - name: rewritten
      matches: [{{path: {{pathPrefix: /v1/public}}}}]
      backends: [{{host: "{upstream}"}}]
      policies:
        urlRewrite: {{path: {{prefix: /public}}}}
    - name: llm
      matches: [{{path: {{pathPrefix: /llm}}}}]
      backends:
      - ai: {{name: llm, hostOverride: "{upstream}", provider: {{openAI: {{}}}}}}
      policies:
        urlRewrite: {{path: {{prefix: ""}}}}
    - name: mcp
      matches: [{{path: {{exact: /mcp}}}}]
      backends:
      - mcp: {{targets: [{{name: t, mcp: {{host: "http://{upstream}/mcp"}}}}]}}
      policies:
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [{aud}]
          jwks: '{jwks}'
    - name: everything-else
      backends: [{{host: "{upstream}"}}]
"#
    );
    Gw::start(&config, None).await
}

/// What must happen to one request.
#[derive(Debug)]
enum Expect {
    /// Refused by the gateway with this status; the upstream sees nothing.
    Refused(u16),
    /// Forwarded; the upstream receives exactly this target.
    Forwarded(&'static str),
}

#[tokio::test]
async fn hostile_paths_are_refused_or_forwarded_exactly_as_authorized() {
    let (up, rec) = RawUpstream::start().await;
    let signer = Signer::new();
    let gw = gateway(up, &signer).await;
    let addr = gw.running.addr(3000);
    let host = addr.to_string();
    let long = format!("/public/{}", "a".repeat(9000));
    use Expect::*;
    let table: Vec<(&[u8], Expect)> = vec![
        // Dot segments, literal and percent-encoded in any case: refused.
        (b"/public/../admin", Refused(400)),
        (b"/public/../admin/", Refused(400)),
        (b"/public/%2e%2e/admin", Refused(400)),
        (b"/public/%2E%2e/admin", Refused(400)),
        (b"/public/%2E%2E/admin", Refused(400)),
        (b"/public/.%2e/admin", Refused(400)),
        (b"/public/%2e./admin", Refused(400)),
        (b"/./admin", Refused(400)),
        (b"/public/./x", Refused(400)),
        (b"/public/x/..", Refused(400)),
        (b"/files/public/../secret/x", Refused(400)),
        (b"/v1/public/../../admin", Refused(400)),
        // Encoded separators, backslashes, path parameters, NUL and controls: refused.
        (b"/public/..%2fadmin", Refused(400)),
        (b"/public/%2fadmin", Refused(400)),
        (b"/public/%2Fadmin", Refused(400)),
        (b"/public/..%5cadmin", Refused(400)),
        (b"/public\\..\\admin", Refused(400)),
        (b"/public/..;/admin", Refused(400)),
        (b"/admin;x=1", Refused(400)),
        (b"/public/%00", Refused(400)),
        (b"/public/%0d%0aX-Injected:%201", Refused(400)),
        (b"/public/%zz", Refused(400)),
        (long.as_bytes(), Refused(414)),
        // Canonical forms that name the admin route: its jwtAuth answers, not the upstream.
        (b"//admin", Refused(401)),
        (b"/%61dmin", Refused(401)),
        (b"/%61%64%6D%69%6E/x", Refused(401)),
        (b"/admin", Refused(401)),
        // CEL sees the canonical path: an encoded `s` does not pass the deny rule.
        (b"/files/%73ecret/x", Refused(403)),
        (b"/files//secret/x", Refused(403)),
        // Forwarded: exactly the canonical path the route authorized.
        (b"/public/x", Forwarded("/public/x")),
        (b"/public//admin", Forwarded("/public/admin")),
        (b"/public/%78%2d%7E", Forwarded("/public/x-~")),
        (b"/public/%c3%a9", Forwarded("/public/%C3%A9")),
        (b"/public/a%25b", Forwarded("/public/a%25b")),
        (
            b"/public/x?q='1'&r=%2f",
            Forwarded("/public/x?q=%271%27&r=%2f"),
        ),
        (b"/files/ok", Forwarded("/files/ok")),
        (b"/v1/public/x", Forwarded("/public/x")),
        (b"/v1/public", Forwarded("/public")),
        (b"/anything/else", Forwarded("/anything/else")),
        (b"/ADMIN", Forwarded("/ADMIN")),
        // Characters outside RFC 3986 that hyper lets through are percent-encoded, so no
        // parser after the gateway re-encodes them; the ones httparse refuses get its 400.
        (b"/public/{x}", Forwarded("/public/%7Bx%7D")),
        (b"/public/a\"b", Forwarded("/public/a%22b")),
        ("/public/é".as_bytes(), Forwarded("/public/%C3%A9")),
        (b"/public/a|b^c`d", Refused(400)),
        (b"/public/\xff", Refused(400)),
        // The LLM route builds its upstream URL from the rewritten canonical path.
        (b"/llm/../admin", Refused(400)),
        (b"/llm/%2e%2e/admin", Refused(400)),
        (b"/llm/v1/..%2f..%2fadmin", Refused(400)),
        (b"/llm//v1/models", Forwarded("/v1/models")),
        (b"/llm/v1/%6Dodels", Forwarded("/v1/models")),
        (b"/llm/v1/models?x='1'", Forwarded("/v1/models?x=%271%27")),
        // The MCP route matches the canonical path, so its jwtAuth answers; nothing reaches
        // the target.
        (b"/public/../mcp", Refused(400)),
        (b"/mcp/..", Refused(400)),
        (b"/%6Dcp", Refused(401)),
        (b"//mcp", Refused(401)),
    ];
    let mut failures = Vec::new();
    for (target, expect) in &table {
        let status = raw_get(addr, target, &host, None).await;
        let seen = rec.take();
        let shown = String::from_utf8_lossy(target);
        let ok = match expect {
            Refused(code) => status == *code && seen.is_empty(),
            Forwarded(path) => status == 200 && seen == vec![path.to_string()],
        };
        if !ok {
            let seen: Vec<String> = seen.iter().map(|s| s.chars().take(80).collect()).collect();
            failures.push(format!(
                "{shown:.80}: expected {expect:?}, got {status} with upstream seeing {seen:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn absolute_form_targets_route_on_their_own_path_and_host() {
    let (up, rec) = RawUpstream::start().await;
    let signer = Signer::new();
    let gw = gateway(up, &signer).await;
    let addr = gw.running.addr(3000);
    let host = addr.to_string();
    // Another authority than Host: refused, the gateway would route on one, the upstream read
    // the other.
    assert_eq!(raw_get(addr, b"http://x/admin", &host, None).await, 400);
    assert_eq!(raw_get(addr, b"http://x/public/x", &host, None).await, 400);
    // The same authority: the path is canonicalised and authorized like any other.
    let same = |p: &str| format!("http://{host}{p}").into_bytes();
    assert_eq!(raw_get(addr, &same("/admin"), &host, None).await, 401);
    assert_eq!(
        raw_get(addr, &same("/public/../admin"), &host, None).await,
        400
    );
    assert_eq!(raw_get(addr, &same("/%61dmin"), &host, None).await, 401);
    assert!(rec.take().is_empty());
    assert_eq!(raw_get(addr, &same("/public/%78"), &host, None).await, 200);
    assert_eq!(rec.take(), vec!["/public/x".to_string()]);
}

#[tokio::test]
async fn an_authorized_caller_reaches_exactly_the_canonical_admin_path() {
    let (up, rec) = RawUpstream::start().await;
    let signer = Signer::new();
    let gw = gateway(up, &signer).await;
    let addr = gw.running.addr(3000);
    let host = addr.to_string();
    let token = signer.token("s");
    assert_eq!(raw_get(addr, b"/admin/x", &host, Some(&token)).await, 200);
    assert_eq!(
        raw_get(addr, b"//admin/%78", &host, Some(&token)).await,
        200
    );
    assert_eq!(
        raw_get(addr, b"/admin/../public", &host, Some(&token)).await,
        400
    );
    assert_eq!(
        rec.take(),
        vec!["/admin/x".to_string(), "/admin/x".to_string()]
    );
    // The audit events record the canonical path that was authorized.
    let events = gw.audit_until("route=admin", 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["request"]["path"] == json!("/admin/x")),
        "{events:?}"
    );
}

#[test]
fn config_paths_are_canonical_or_refused() {
    let load = |yaml: &str| {
        agentid_gateway::serve::load_offline(
            &agentid_gateway::Source::Inline(yaml.to_string()),
            &[],
        )
        .map_err(|e| e.to_string())
    };
    let route = |matches: &str, policies: &str| {
        format!(
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - matches: [{{path: {matches}}}]\n      backends: [{{host: \"127.0.0.1:9\"}}]\n      policies: {policies}\n"
        )
    };
    let e = load(&route("{exact: /a/../b}", "{}")).unwrap_err();
    assert!(
        e.contains("routes[0].matches[0].path.exact") && e.contains("dot segment"),
        "{e}"
    );
    let e = load(&route("{pathPrefix: '/a%2Fb'}", "{}")).unwrap_err();
    assert!(e.contains("matches[0].path.pathPrefix"), "{e}");
    let e = load(&route(
        "{pathPrefix: /a}",
        "{urlRewrite: {path: {prefix: 'v1'}}}",
    ))
    .unwrap_err();
    assert!(e.contains("urlRewrite.path.prefix"), "{e}");
    let e = load(&route(
        "{pathPrefix: /a}",
        "{urlRewrite: {path: {full: '/x/./y'}}}",
    ))
    .unwrap_err();
    assert!(e.contains("urlRewrite.path.full"), "{e}");
    // Canonical equivalents load, and match what requests normalise to.
    load(&route("{exact: '/%61//b'}", "{}")).unwrap();
}

#[tokio::test]
async fn http2_requests_get_the_same_canonical_path() {
    let (up, rec) = RawUpstream::start().await;
    let signer = Signer::new();
    let gw = gateway(up, &signer).await;
    let addr = gw.running.addr(3000);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut get = |path: &str, host: Option<&str>| {
        let mut req = http::Request::get(format!("http://{addr}{path}"));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let req = req
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let sent = sender.send_request(req);
        async move { sent.await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/public/../admin", None).await, 400);
    assert_eq!(get("/public/%2E%2e/admin", None).await, 400);
    assert_eq!(get("//admin", None).await, 401);
    assert!(rec.take().is_empty());
    // `:authority` and a Host header naming another host.
    assert_eq!(get("/public/x", Some("elsewhere.test")).await, 400);
    assert!(rec.take().is_empty());
    assert_eq!(get("/public/%78", None).await, 200);
    assert_eq!(rec.take(), vec!["/public/x".to_string()]);
}
