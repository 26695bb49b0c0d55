//! `agentid gateway bench`: what the gateway costs (gateway.md §14). An MCP `tools/call` and a
//! non-streaming chat completion, each through the gateway (jwtAuth RS256 + one CEL rule) and
//! straight to the same in-process upstream: throughput ratio, added latency p50/p99, and the
//! gateway's resident memory with 1,000 concurrent connections, each with its own MCP session.
//! The gateway runs as a child process (this binary), so its RSS is its own.

use anyhow::Context;
use base64::Engine;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive connections for throughput.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Sequential requests per latency run.
    #[arg(long, default_value_t = 3000)]
    latency_requests: usize,
    /// Connections held open for the memory figure.
    #[arg(long, default_value_t = 1000)]
    memory_connections: usize,
}

const AGENT: &str = "65027832-f56f-4d8e-93aa-a09113ba2d47";
const AUD: &str = "api://ec791040-80f8-4129-bf34-96a0e0672c96";
const ISS: &str = "https://sts.windows.net/5e7d8166-7876-4755-a1a4-b476d4a344f6/";

/// The upstream: a stateful-looking MCP server answering JSON, and a chat-completions server.
async fn upstream() -> anyhow::Result<SocketAddr> {
    async fn mcp(body: axum::body::Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(id) = msg.get("id").cloned() else {
            return axum::http::StatusCode::ACCEPTED.into_response();
        };
        let result = match msg["method"].as_str().unwrap_or("") {
            "initialize" => {
                json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "bench", "version": "1"}})
            }
            "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
            _ => json!({"content": [{"type": "text", "text": msg["params"]["arguments"]["text"]}]}),
        };
        (
            [
                ("content-type", "application/json"),
                ("mcp-session-id", "bench-session"),
            ],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})),
        )
            .into_response()
    }
    async fn chat(body: axum::body::Bytes) -> axum::Json<Value> {
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        axum::Json(
            json!({"id": "c", "object": "chat.completion", "model": req["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}),
        )
    }
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(mcp))
        .route("/v1/chat/completions", axum::routing::post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

struct Signer {
    key: jsonwebtoken::EncodingKey,
    jwks: String,
}

fn signer() -> anyhow::Result<Signer> {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let public = key.to_public_key();
    let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench",
        "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be())}]})
    .to_string();
    let der = key.to_pkcs1_der()?;
    Ok(Signer {
        key: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        jwks,
    })
}

fn token(s: &Signer, aud: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("bench".into());
    let claims = json!({"aud": aud, "iss": ISS, "iat": now, "nbf": now, "exp": now + 3600,
        "appid": AGENT, "idtyp": "user", "scp": "access_as_user", "sub": "bench-user",
        "oid": "0501a526-79e4-46ff-bd07-6605a752287b", "upn": "alice@contoso.test",
        "xms_act_fct": "11 9 3", "xms_sub_fct": "2 3", "uti": "bench"});
    Ok(jsonwebtoken::encode(&header, &claims, &s.key)?)
}

fn config(upstream: SocketAddr, port: u16, admin: u16, jwks: &str) -> String {
    let jwks = jwks.replace('\'', "''");
    format!(
        r#"
config:
  adminAddr: 127.0.0.1:{admin}
  statsAddr: "off"
  readinessAddr: "off"
agentid:
  bindAddress: 127.0.0.1
  audit: {{stdout: false, retain: 1000}}
binds:
- port: {port}
  listeners:
  - routes:
    - matches: [{{path: {{exact: /mcp}}}}]
      backends:
      - mcp:
          targets:
          - name: bench
            mcp: {{host: "http://{upstream}/mcp"}}
      policies:
        jwtAuth:
          mode: strict
          issuer: {ISS}
          audiences: [{AUD}]
          jwks: '{jwks}'
        mcpAuthorization:
          rules:
          - "jwt.appid == '{AGENT}' && '11' in jwt.xms_act_fct.split(' ')"
    - matches: [{{path: {{pathPrefix: /llm}}}}]
      backends:
      - ai:
          name: bench-llm
          hostOverride: "{upstream}"
          provider: {{openAI: {{model: bench-model}}}}
      policies:
        urlRewrite: {{path: {{prefix: ""}}}}
        backendAuth: {{passthrough: {{}}}}
        jwtAuth:
          mode: strict
          issuer: {ISS}
          audiences: [https://cognitiveservices.azure.com]
          jwks: '{jwks}'
        authorization: {{rules: ["jwt.sub != null"]}}
"#
    )
}

/// One keep-alive HTTP/1.1 connection, hand-rolled so the load generator stays small.
struct Conn {
    stream: tokio::net::TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// POSTs JSON; returns status, the mcp-session-id header and the body.
    async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(u16, Option<String>, Vec<u8>)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.write_all(req.as_bytes()).await?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let header_end = loop {
            let n = self.stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..header_end]).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = None;
        let mut session = None;
        let mut chunked = false;
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            if lower.starts_with("mcp-session-id:") {
                session = line.split_once(':').map(|(_, v)| v.trim().to_string());
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = self.buf[header_end..].to_vec();
        if chunked {
            while !body.windows(5).any(|w| w == b"0\r\n\r\n") {
                let n = self.stream.read(&mut chunk).await?;
                anyhow::ensure!(n > 0, "connection closed");
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let want = length.unwrap_or(0);
            while body.len() < want {
                let n = self.stream.read(&mut chunk).await?;
                anyhow::ensure!(n > 0, "connection closed");
                body.extend_from_slice(&chunk[..n]);
            }
        }
        Ok((status, session, body))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Mcp,
    Chat,
}

struct Target {
    addr: SocketAddr,
    mcp_path: &'static str,
    chat_path: &'static str,
}

fn call_body(i: u64) -> String {
    let text = "x".repeat(1000);
    json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}}).to_string()
}

const CHAT: &str =
    r#"{"model":"m","messages":[{"role":"user","content":"hello there, how are you today?"}]}"#;

async fn session(c: &mut Conn, path: &str, auth: &str) -> anyhow::Result<String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}).to_string();
    let (st, sid, body) = c.post(path, &[("authorization", auth)], &init).await?;
    anyhow::ensure!(
        st == 200,
        "initialize answered {st}: {}",
        String::from_utf8_lossy(&body)
    );
    sid.context("no session id")
}

async fn one(
    c: &mut Conn,
    t: &Target,
    kind: Kind,
    auth: &str,
    sid: &str,
    i: u64,
) -> anyhow::Result<()> {
    let (st, _, body) = match kind {
        Kind::Mcp => {
            c.post(
                t.mcp_path,
                &[("authorization", auth), ("mcp-session-id", sid)],
                &call_body(i),
            )
            .await?
        }
        Kind::Chat => {
            c.post(t.chat_path, &[("authorization", auth)], CHAT)
                .await?
        }
    };
    anyhow::ensure!(
        st == 200,
        "answered {st}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

fn auth_for(kind: Kind, mcp: &str, chat: &str) -> String {
    format!(
        "Bearer {}",
        match kind {
            Kind::Mcp => mcp,
            Kind::Chat => chat,
        }
    )
}

async fn latency(t: &Target, kind: Kind, auth: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut c = Conn::open(t.addr).await?;
    let sid = session(&mut c, t.mcp_path, auth).await.unwrap_or_default();
    for i in 0..200 {
        one(&mut c, t, kind, auth, &sid, i).await?;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let start = Instant::now();
        one(&mut c, t, kind, auth, &sid, i).await?;
        out.push(start.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

async fn throughput(
    t: Arc<Target>,
    kind: Kind,
    auth: String,
    conns: usize,
    secs: u64,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (t, auth, done, stop) = (t.clone(), auth.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(t.addr).await?;
            let sid = session(&mut c, t.mcp_path, &auth).await.unwrap_or_default();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                one(&mut c, &t, kind, &auth, &sid, i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(rate)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let up = upstream().await?;
    let s = signer()?;
    let mcp_token = token(&s, AUD)?;
    let chat_token = token(&s, "https://cognitiveservices.azure.com")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(&cfg, config(up, port, admin, &s.jwks))?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["gateway", "-f"])
        .arg(&cfg)
        .env("AGENTID_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let gw_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(gw_addr).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().context("gateway pid")?;
    let idle_rss = rss_kib(pid);
    let direct = Arc::new(Target {
        addr: up,
        mcp_path: "/mcp",
        chat_path: "/v1/chat/completions",
    });
    let via = Arc::new(Target {
        addr: gw_addr,
        mcp_path: "/mcp",
        chat_path: "/llm/v1/chat/completions",
    });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "agentid gateway bench — {} cores ({cpu}); gateway in its own process, upstream and load generator in this one",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("jwtAuth RS256 (inline JWKS) + one CEL rule on each route; keep-alive HTTP/1.1\n");
    let mut report = serde_json::Map::new();
    // Memory first, on a fresh gateway: the runs below would leave their own high-water mark.
    // Memory: N connections, each with its own MCP session, one call each per second.
    let auth = auth_for(Kind::Mcp, &mcp_token, &chat_token);
    let mut conns = Vec::with_capacity(a.memory_connections);
    for _ in 0..a.memory_connections {
        let mut c = Conn::open(gw_addr).await?;
        let sid = session(&mut c, "/mcp", &auth).await?;
        conns.push((c, sid));
    }
    let mut peak = 0;
    for round in 0..5u64 {
        for (c, sid) in conns.iter_mut() {
            one(c, &via, Kind::Mcp, &auth, sid, round).await?;
        }
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "memory: gateway RSS idle {:.1} MiB; with {} open connections and MCP sessions {:.1} MiB (target < 50)",
        idle_rss as f64 / 1024.0,
        a.memory_connections,
        peak as f64 / 1024.0
    );
    report.insert("memory".into(), json!({"idleMiB": idle_rss as f64 / 1024.0, "connections": a.memory_connections, "peakMiB": peak as f64 / 1024.0}));
    for (name, kind) in [
        ("mcp tools/call (1 KiB echo)", Kind::Mcp),
        ("chat completion (non-streaming)", Kind::Chat),
    ] {
        let auth = auth_for(kind, &mcp_token, &chat_token);
        let d = latency(&direct, kind, &auth, a.latency_requests).await?;
        let g = latency(&via, kind, &auth, a.latency_requests).await?;
        let td = throughput(direct.clone(), kind, auth.clone(), a.connections, a.seconds).await?;
        let tg = throughput(via.clone(), kind, auth.clone(), a.connections, a.seconds).await?;
        let added50 = pct(&g, 0.5) - pct(&d, 0.5);
        let added99 = pct(&g, 0.99) - pct(&d, 0.99);
        println!("{name}");
        println!(
            "  latency, 1 connection: direct p50 {:.0} µs p99 {:.0} µs; via gateway p50 {:.0} µs p99 {:.0} µs",
            pct(&d, 0.5),
            pct(&d, 0.99),
            pct(&g, 0.5),
            pct(&g, 0.99)
        );
        println!(
            "  added latency: p50 {added50:.0} µs (target < 300), p99 {added99:.0} µs (target < 2000)"
        );
        println!(
            "  throughput, {} connections: direct {td:.0}/s, via gateway {tg:.0}/s, ratio {:.2} (target ≥ 0.70)\n",
            a.connections,
            tg / td
        );
        report.insert(name.to_string(), json!({"addedP50Us": added50, "addedP99Us": added99, "directRps": td, "gatewayRps": tg, "ratio": tg / td}));
    }

    drop(conns);
    std::fs::write(
        "bench-report.json",
        serde_json::to_string_pretty(&Value::Object(report))?,
    )?;
    println!("\nwrote bench-report.json");
    let _ = child.kill().await;
    Ok(())
}
