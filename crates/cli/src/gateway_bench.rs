//! `agentid gateway bench`: what the gateway costs next to a plain reverse proxy
//! (docs/performance.md §2). In the same run and against the same in-process upstream: the
//! upstream directly, nginx (Debian's, when installed) as a plain `proxy_pass` with upstream
//! keep-alive and two workers, and the gateway (this binary, a child process). wrk, in its own
//! process, drives four cases — no policy, jwtAuth, jwtAuth with the seed's CEL rule and audit,
//! and an MCP `tools/call` through a two-target (multiplexed) MCP route — alternating the three
//! targets round by round so the machine's noise falls on all of them. Then the resident memory
//! of the gateway (and of nginx) with 1,000 and 10,000 open connections, each gateway connection
//! with its own MCP session.

use crate::bench_tools::{self, WrkRun};
use anyhow::Context;
use base64::Engine;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds per case; each round runs direct, nginx and the gateway once (median reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent keep-alive connections for throughput.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per latency run (one connection).
    #[arg(long, default_value_t = 3)]
    latency_seconds: u64,
    /// Open connections for the memory figures (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
    memory_connections: Vec<usize>,
    /// Short runs (1 round, 2 s, 1 s latency), for CI and scripts/bench.
    #[arg(long)]
    quick: bool,
    /// Write the results into this JSON report (its `gateway` section).
    #[arg(long)]
    report: Option<PathBuf>,
}

const AGENT: &str = "65027832-f56f-4d8e-93aa-a09113ba2d47";
const AUD: &str = "api://ec791040-80f8-4129-bf34-96a0e0672c96";
const ISS: &str = "https://sts.windows.net/5e7d8166-7876-4755-a1a4-b476d4a344f6/";
/// The seed configuration's rule (crates/gateway/tests/fixtures/seed-agentgateway.yaml).
const SEED_RULE: &str =
    "jwt.appid == '65027832-f56f-4d8e-93aa-a09113ba2d47' && '11' in jwt.xms_act_fct.split(' ')";

/// The upstream: a stateful-looking MCP server on `/mcp`, a chat completion on every other path.
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
        .fallback(axum::routing::post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// A fresh RS256 key: the token the cases present, and the inline JWKS the gateway trusts.
fn token_and_jwks() -> anyhow::Result<(String, String)> {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let public = key.to_public_key();
    let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench",
        "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be())}]})
    .to_string();
    let der = key.to_pkcs1_der()?;
    let encoding = jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes());
    let now = chrono::Utc::now().timestamp();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("bench".into());
    let claims = json!({"aud": AUD, "iss": ISS, "iat": now, "nbf": now, "exp": now + 3600,
        "appid": AGENT, "idtyp": "user", "scp": "access_as_user", "sub": "bench-user",
        "oid": "0501a526-79e4-46ff-bd07-6605a752287b", "upn": "alice@contoso.test",
        "xms_act_fct": "11 9 3", "xms_sub_fct": "2 3", "uti": "bench"});
    Ok((jsonwebtoken::encode(&header, &claims, &encoding)?, jwks))
}

fn gateway_config(upstream: SocketAddr, port: u16, admin: u16, jwks: &str, dir: &Path) -> String {
    let jwks = jwks.replace('\'', "''");
    let jwt =
        format!("jwtAuth: {{mode: strict, issuer: '{ISS}', audiences: ['{AUD}'], jwks: '{jwks}'}}");
    let audit = dir.join("audit.jsonl");
    format!(
        r#"
config:
  adminAddr: 127.0.0.1:{admin}
  statsAddr: "off"
  readinessAddr: "off"
agentid:
  bindAddress: 127.0.0.1
  audit: {{stdout: false, retain: 1000, file: {{path: '{audit}', maxSizeBytes: 67108864, maxFiles: 1}}}}
  limits: {{maxConnections: 30000, maxMcpSessions: 30000, maxMcpSessionsPerPrincipal: 30000}}
binds:
- port: {port}
  listeners:
  - routes:
    - name: mcp
      matches: [{{path: {{exact: /mcp}}}}]
      backends:
      - mcp:
          targets:
          - {{name: bench, mcp: {{host: "http://{upstream}/mcp"}}}}
          - {{name: second, mcp: {{host: "http://{upstream}/mcp"}}}}
      policies:
        {jwt}
        mcpAuthorization: {{rules: ["{SEED_RULE}"]}}
    - name: plain
      matches: [{{path: {{pathPrefix: /plain}}}}]
      backends: [{{host: "{upstream}"}}]
    - name: jwt
      matches: [{{path: {{pathPrefix: /jwt}}}}]
      backends: [{{host: "{upstream}"}}]
      policies:
        {jwt}
    - name: rule
      matches: [{{path: {{pathPrefix: /rule}}}}]
      backends: [{{host: "{upstream}"}}]
      policies:
        {jwt}
        authorization: {{rules: ["{SEED_RULE}"]}}
"#,
        audit = audit.display()
    )
}

/// nginx as a plain reverse proxy: two workers, upstream keep-alive, no access log, everything
/// (pid, logs, temp files) inside `dir`.
fn nginx_config(upstream: SocketAddr, port: u16, dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
worker_rlimit_nofile 30000;
events {{ worker_connections 15000; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  upstream bench {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"#
    )
}

/// nginx's master process: stopped with SIGTERM, so that it stops its workers (a SIGKILL would
/// leave them running).
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

/// One keep-alive HTTP/1.1 connection for set-up and the memory figure (wrk does the load).
struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }

    /// POSTs JSON; returns the status and the `mcp-session-id` header. Reads the whole answer
    /// (content-length bodies only: both upstream and gateway answer JSON).
    async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(u16, Option<String>)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.write_all(req.as_bytes()).await?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            let n = self.stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..header_end]).to_string();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
        let mut length = 0;
        let mut session = None;
        for line in head.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("mcp-session-id") {
                session = Some(v.trim().to_string());
            }
        }
        let mut have = self.buf.len() - header_end;
        while have < length {
            let n = self.stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed");
            have += n;
        }
        Ok((status.unwrap_or(0), session))
    }

    /// `initialize` on the MCP route: the new session's id.
    async fn mcp_session(&mut self, auth: &str) -> anyhow::Result<String> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}).to_string();
        let (status, sid) = self.post("/mcp", &[("authorization", auth)], &init).await?;
        anyhow::ensure!(status == 200, "initialize answered {status}");
        sid.context("no session id")
    }
}

fn call_body() -> String {
    let text = "x".repeat(1000);
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "bench_echo", "arguments": {"text": text}}}).to_string()
}

const CHAT: &str =
    r#"{"model":"m","messages":[{"role":"user","content":"hello there, how are you today?"}]}"#;

/// A case: the gateway route's path, the same request's path for direct and nginx, the body,
/// whether it carries the token, and whether it needs MCP sessions.
struct Case {
    name: &'static str,
    gateway_path: &'static str,
    peer_path: &'static str,
    body: String,
    token: bool,
    mcp: bool,
}

fn cases() -> Vec<Case> {
    let http = |name, gateway_path, token| Case {
        name,
        gateway_path,
        peer_path: "/v1/chat/completions",
        body: CHAT.into(),
        token,
        mcp: false,
    };
    vec![
        http("no policy", "/plain/v1/chat/completions", false),
        http("jwtAuth", "/jwt/v1/chat/completions", true),
        http(
            "jwtAuth + seed CEL rule + audit",
            "/rule/v1/chat/completions",
            true,
        ),
        Case {
            name: "MCP tools/call, 2 targets",
            gateway_path: "/mcp",
            peer_path: "/mcp",
            body: call_body(),
            token: true,
            mcp: true,
        },
    ]
}

/// Who answers: the upstream itself, nginx, or the gateway.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Direct,
    Nginx,
    Gateway,
}

struct Targets {
    upstream: SocketAddr,
    nginx: Option<SocketAddr>,
    gateway: SocketAddr,
}

/// The same case through one target: throughput with `connections`, then latency with one.
struct Measured {
    throughput: f64,
    latency: WrkRun,
}

pub async fn run(mut a: BenchArgs) -> anyhow::Result<()> {
    if a.quick {
        a.rounds = 1;
        a.seconds = a.seconds.min(2);
        a.latency_seconds = 1;
    }
    let wrk = bench_tools::find_program("wrk")
        .context("the load generator wrk is not installed (Debian: apt install wrk)")?;
    let nofile = bench_tools::raise_nofile(65_536);
    let dir = tempfile::tempdir()?;
    let up = upstream().await?;
    let (token, jwks) = token_and_jwks()?;
    let auth = format!("Bearer {token}");
    let port = bench_tools::free_port()?;
    let admin = bench_tools::free_port()?;
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(&cfg, gateway_config(up, port, admin, &jwks, dir.path()))?;
    let mut gateway = tokio::process::Command::new(std::env::current_exe()?)
        .args(["gateway", "-f"])
        .arg(&cfg)
        .env("AGENTID_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let gw_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    bench_tools::wait_listening(gw_addr, Duration::from_secs(20)).await?;
    let gw_pid = gateway.id().context("gateway pid")?;
    let mut nginx = None;
    let mut nginx_addr = None;
    let mut nginx_version = String::from("skipped");
    match bench_tools::find_program("nginx") {
        None => bench_tools::skipped("nginx", "Debian: apt install nginx"),
        Some(bin) => {
            let port = bench_tools::free_port()?;
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, nginx_config(up, port, dir.path()))?;
            let v = std::process::Command::new(&bin).arg("-v").output()?;
            nginx_version = String::from_utf8_lossy(&v.stderr)
                .split_once("nginx/")
                .map_or("", |(_, v)| v.trim())
                .to_string();
            let child = std::process::Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("nginx-error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let child = Nginx(child);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            bench_tools::wait_listening(addr, Duration::from_secs(10)).await?;
            nginx = Some(child);
            nginx_addr = Some(addr);
        }
    }
    let targets = Targets {
        upstream: up,
        nginx: nginx_addr,
        gateway: gw_addr,
    };
    let cores = bench_tools::conditions();
    println!(
        "agentid gateway bench — {} cores ({}), load average {}; wrk in its own process, {} connections, {} s × {} round(s) per target, latency on 1 connection for {} s",
        cores["cores"],
        cores["cpu"].as_str().unwrap_or(""),
        cores["loadAverage1m"],
        a.connections,
        a.seconds,
        a.rounds,
        a.latency_seconds
    );
    println!(
        "gateway: jwtAuth RS256 with an inline JWKS; every request audited (memory ring and a file); nginx {}: plain proxy_pass, upstream keepalive, 2 workers\n",
        nginx_version
    );

    // Memory first, on a fresh gateway: the load below would leave its own high-water mark.
    let memory = memory_figures(
        &a.memory_connections,
        nofile,
        &targets,
        &auth,
        gw_pid,
        nginx.as_ref(),
    )
    .await?;

    // One MCP session per wrk thread: a session belongs to its caller, as in production.
    let threads = 2;
    let mut sessions = Vec::new();
    for _ in 0..threads {
        sessions.push(Conn::open(gw_addr).await?.mcp_session(&auth).await?);
    }
    let mut rows = Vec::new();
    let mut details = Vec::new();
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>8} {:>8} {:>13} {:>13}",
        "case",
        "direct/s",
        "nginx/s",
        "agentid/s",
        "÷nginx",
        "÷direct",
        "+p50 µs ngx/ag",
        "+p99 µs ngx/ag"
    );
    for case in cases() {
        let mut runs: Vec<(Via, Measured)> = Vec::new();
        for _ in 0..a.rounds {
            for via in [Via::Direct, Via::Nginx, Via::Gateway] {
                let Some(addr) = (match via {
                    Via::Direct => Some(targets.upstream),
                    Via::Nginx => targets.nginx,
                    Via::Gateway => Some(targets.gateway),
                }) else {
                    continue;
                };
                let (path, sids) = if via == Via::Gateway {
                    (
                        case.gateway_path,
                        if case.mcp { sessions.clone() } else { vec![] },
                    )
                } else {
                    (
                        case.peer_path,
                        if case.mcp {
                            vec!["bench-session".to_string()]
                        } else {
                            vec![]
                        },
                    )
                };
                let headers: Vec<(&str, &str)> = if case.token {
                    vec![("Authorization", auth.as_str())]
                } else {
                    vec![]
                };
                let script = dir.path().join("case.lua");
                std::fs::write(
                    &script,
                    bench_tools::post_script("application/json", &case.body, &headers, &sids),
                )?;
                let url = format!("http://{addr}{path}");
                let t = bench_tools::wrk(&wrk, &url, &script, threads, a.connections, a.seconds)
                    .await?;
                let l = bench_tools::wrk(&wrk, &url, &script, 1, 1, a.latency_seconds).await?;
                runs.push((
                    via,
                    Measured {
                        throughput: t.rps,
                        latency: l,
                    },
                ));
            }
        }
        let of = |via: Via| -> Option<(f64, f64, f64)> {
            let m: Vec<&Measured> = runs
                .iter()
                .filter(|(v, _)| *v == via)
                .map(|(_, m)| m)
                .collect();
            (!m.is_empty()).then(|| {
                (
                    bench_tools::median(m.iter().map(|m| m.throughput).collect()),
                    bench_tools::median(m.iter().map(|m| m.latency.p50_us).collect()),
                    bench_tools::median(m.iter().map(|m| m.latency.p99_us).collect()),
                )
            })
        };
        let d = of(Via::Direct).context("direct runs")?;
        let g = of(Via::Gateway).context("gateway runs")?;
        let n = of(Via::Nginx);
        let fmt =
            |v: Option<f64>, prec: usize| v.map_or("–".to_string(), |v| format!("{v:.prec$}"));
        println!(
            "{:<34} {:>10.0} {:>10} {:>10.0} {:>8} {:>8.2} {:>13} {:>13}",
            case.name,
            d.0,
            fmt(n.map(|n| n.0), 0),
            g.0,
            fmt(n.map(|n| g.0 / n.0), 2),
            g.0 / d.0,
            format!("{}/{:.0}", fmt(n.map(|n| n.1 - d.1), 0), g.1 - d.1),
            format!("{}/{:.0}", fmt(n.map(|n| n.2 - d.2), 0), g.2 - d.2),
        );
        rows.push(bench_tools::row(
            &format!("gateway: {}", case.name),
            "req/s",
            g.0,
            "nginx",
            n.map(|n| n.0),
        ));
        details.push(json!({
            "case": case.name,
            "directRps": d.0, "nginxRps": n.map(|n| n.0), "gatewayRps": g.0,
            "ratioToNginx": n.map(|n| g.0 / n.0), "ratioToDirect": g.0 / d.0,
            "latencyUs": {
                "direct": {"p50": d.1, "p99": d.2},
                "nginx": n.map(|n| json!({"p50": n.1, "p99": n.2})),
                "gateway": {"p50": g.1, "p99": g.2},
            },
            "addedUs": {
                "nginx": n.map(|n| json!({"p50": n.1 - d.1, "p99": n.2 - d.2})),
                "gateway": {"p50": g.1 - d.1, "p99": g.2 - d.2},
            },
        }));
    }
    println!(
        "(÷nginx, ÷direct: agentid's throughput over theirs; +p50/+p99: latency added to direct, 1 connection)"
    );
    for m in &memory {
        rows.push(bench_tools::row(
            &format!(
                "gateway: RSS MiB at {} connections (lower is better)",
                m["connections"]
            ),
            "MiB",
            m["gatewayMiB"].as_f64().unwrap_or(0.0),
            "nginx",
            m["nginxMiB"].as_f64(),
        ));
    }
    if let Some(path) = &a.report {
        bench_tools::write_report(
            path,
            "gateway",
            json!({
                "conditions": cores,
                "settings": {"connections": a.connections, "seconds": a.seconds, "rounds": a.rounds,
                    "latencySeconds": a.latency_seconds, "quick": a.quick, "loadGenerator": "wrk"},
                "rows": rows, "cases": details, "memory": memory,
            }),
        )?;
    }
    drop(nginx);
    let _ = gateway.kill().await;
    Ok(())
}

/// Resident memory with N open connections: each to the gateway with its own MCP session and
/// one `tools/call`; each to nginx with one proxied request. Connections are closed between
/// sizes.
async fn memory_figures(
    sizes: &[usize],
    nofile: u64,
    t: &Targets,
    auth: &str,
    gw_pid: u32,
    nginx: Option<&Nginx>,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let idle = bench_tools::rss_kib(gw_pid);
    println!("memory: gateway idle {:.1} MiB", idle as f64 / 1024.0);
    let call = call_body();
    for &n in sizes {
        // This process holds the client sockets (and the upstream's few), the gateway its own:
        // keep clear of the descriptor limit both share.
        if n as u64 + 1000 > nofile {
            println!("memory at {n} connections skipped: open-file limit {nofile} is too low");
            continue;
        }
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = Conn::open(t.gateway).await?;
            let sid = c.mcp_session(auth).await?;
            let (st, _) = c
                .post(
                    "/mcp",
                    &[("authorization", auth), ("mcp-session-id", &sid)],
                    &call,
                )
                .await?;
            anyhow::ensure!(st == 200, "tools/call answered {st}");
            conns.push(c);
        }
        let gateway = bench_tools::rss_kib(gw_pid);
        drop(conns);
        let mut nginx_kib = None;
        if let (Some(addr), Some(child)) = (t.nginx, nginx) {
            let pid = child.0.id();
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                let mut c = Conn::open(addr).await?;
                let (st, _) = c.post("/v1/chat/completions", &[], CHAT).await?;
                anyhow::ensure!(st == 200, "nginx answered {st}");
                conns.push(c);
            }
            nginx_kib = Some(bench_tools::tree_rss_kib(pid));
        }
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "memory at {n} open connections: gateway {:.1} MiB (each with an MCP session; target < 50 at 1,000), nginx {}",
            mib(gateway),
            nginx_kib.map_or("–".into(), |k| format!(
                "{:.1} MiB (master + workers)",
                mib(k)
            ))
        );
        out.push(
            json!({"connections": n, "gatewayIdleMiB": mib(idle), "gatewayMiB": mib(gateway),
            "nginxMiB": nginx_kib.map(mib)}),
        );
        // Let the gateway notice the closed connections before the next size.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!();
    Ok(out)
}
