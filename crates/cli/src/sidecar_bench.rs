//! `agentid sidecar bench`: what the common call costs. It starts an STS in-process (HTTPS,
//! SQLite in a temporary directory, the demo tenant) as the authority, runs the sidecar as a
//! separate process (`agentid sidecar`, so its memory is its own), pre-warms the cache with one
//! request, then measures cached `/AuthorizationHeader` (agent on-behalf-of, inbound JWT
//! validation included) and `/AuthorizationHeaderUnauthenticated` latency as seen by a client
//! on loopback: sequential on one keep-alive connection, then concurrent connections. It
//! reports throughput, start-up time, and resident memory idle, under load, and with a full
//! token cache.

use crate::examples::DEMO_TENANT;
use agentid_directory::tenant_file::TenantFile;
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Sequential requests on one connection (per route).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Concurrent connections for the second phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests per connection in the concurrent phase.
    #[arg(long, default_value_t = 10_000)]
    per_connection: usize,
    /// Entries for the full-cache memory figure (0 skips it).
    #[arg(long, default_value_t = 4096)]
    cache_entries: usize,
    /// Short runs (2,000 sequential, 500 per connection, 256 cache entries), for CI and
    /// scripts/bench.
    #[arg(long)]
    quick: bool,
    /// Write the results into this JSON report (its `sidecar` section).
    #[arg(long)]
    report: Option<std::path::PathBuf>,
}

/// A minimal HTTP/1.1 keep-alive client: the measured latency is the sidecar's, not a client
/// library's.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` and returns (status, body).
    fn roundtrip(&mut self, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        self.stream.write_all(request)?;
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?;
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .context("status line")?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let total = end + 4 + len;
                while self.buf.len() < total {
                    let n = self.stream.read(&mut chunk)?;
                    if n == 0 {
                        bail!("connection closed");
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return Ok((status, self.buf[end + 4..total].to_vec()));
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn get(path: &str, bearer: Option<&str>) -> Vec<u8> {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").into_bytes()
}

fn rss_kib(pid: u32) -> u64 {
    crate::bench::rss_kib(&pid.to_string())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    crate::bench::percentile(sorted, p).as_secs_f64() * 1e6
}

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sequential requests on one connection; returns sorted latencies.
fn sequential(addr: SocketAddr, request: &[u8], n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut conn = Conn::open(addr)?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let (status, body) = conn.roundtrip(request)?;
        lat.push(t0.elapsed());
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
    }
    lat.sort();
    Ok(lat)
}

/// `connections` threads × `per` requests; returns (sorted latencies, wall time, peak RSS).
fn concurrent(
    addr: SocketAddr,
    request: &[u8],
    connections: usize,
    per: usize,
    pid: u32,
) -> anyhow::Result<(Vec<Duration>, Duration, u64)> {
    let request = Arc::new(request.to_vec());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let start = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut conn = Conn::open(addr)?;
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let t0 = Instant::now();
                    let (status, _) = conn.roundtrip(&request)?;
                    lat.push(t0.elapsed());
                    if status != 200 {
                        bail!("HTTP {status}");
                    }
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(connections * per);
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??,
        );
    }
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    all.sort();
    Ok((all, wall, peak))
}

pub async fn run(mut a: BenchArgs) -> anyhow::Result<()> {
    if a.quick {
        a.requests = a.requests.min(2000);
        a.per_connection = a.per_connection.min(500);
        a.cache_entries = a.cache_entries.min(256);
    }
    let dir = tempfile::tempdir()?;
    let mut s = agentid_sts::Settings::new(dir.path(), "127.0.0.1:0".parse()?);
    s.access_lifetime = agentid_sts::settings::AccessLifetime::Fixed(3600);
    let file = TenantFile::parse(DEMO_TENANT, Path::new("."))?;
    let running = agentid_sts::start(s, &[file]).await?;
    let tenant = running.reports[0].tenant_id.to_string();
    let ca_pem = running.ca_pem.clone().context("STS has a CA")?;
    let ca_file = dir.path().join("sts-ca.pem");
    std::fs::write(&ca_file, &ca_pem)?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .build()?;
    let token_url = format!("{}/{tenant}/oauth2/v2.0/token", running.base);
    let scope = format!("api://{BP}/access_as_user openid profile offline_access");
    let user = crate::bench::post(
        &client,
        &token_url,
        &[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", &scope),
        ],
    )
    .await?;
    let tc = user["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut refresh = user["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // The sidecar, as a pod would run it: environment variables only.
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let child = Command::new(exe)
        .args([
            "sidecar",
            "--listen",
            &format!("http://{addr}"),
            "--health-listen",
            "off",
        ])
        .env_clear()
        .envs([
            ("AzureAd__Instance", format!("{}/", running.base)),
            ("AzureAd__TenantId", tenant.clone()),
            ("AzureAd__ClientId", BP.to_string()),
            (
                "AzureAd__ClientCredentials__0__SourceType",
                "ClientSecret".into(),
            ),
            (
                "AzureAd__ClientCredentials__0__ClientSecret",
                BP_SECRET.into(),
            ),
            (
                "DownstreamApis__graph__Scopes__0",
                "https://graph.microsoft.com/.default".into(),
            ),
            (
                "DownstreamApis__graph-app__Scopes__0",
                "https://graph.microsoft.com/.default".into(),
            ),
            ("DownstreamApis__graph-app__RequestAppToken", "true".into()),
            ("Sidecar__AllowedAgentIdentities__0", AGENT.into()),
            ("Sidecar__ExtraCaBundlePath", ca_file.display().to_string()),
            (
                "Sidecar__TokenCache__MaxEntries",
                a.cache_entries.max(16).to_string(),
            ),
            ("Logging__LogLevel__Default", "Warning".into()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let _guard = Sidecar(child);
    let health = get("/healthz", None);
    let startup = loop {
        if let Ok(mut c) = Conn::open(addr)
            && let Ok((200, _)) = c.roundtrip(&health)
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the sidecar did not answer /healthz within 10 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    tokio::time::sleep(Duration::from_secs(if a.quick { 1 } else { 5 })).await;
    let idle_rss = rss_kib(pid);

    let authn = get(
        &format!(
            "/AuthorizationHeader/graph?optionsOverride.RequestAppToken=false&AgentIdentity={AGENT}"
        ),
        Some(&tc),
    );
    let unauth = get(
        &format!("/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"),
        None,
    );
    // Pre-warm: one request each fills the cache (T1 → agent OBO, T1 → T2).
    let (seq_auth, seq_unauth, conc) = tokio::task::spawn_blocking({
        let (authn, unauth, n, c, per) = (
            authn.clone(),
            unauth.clone(),
            a.requests,
            a.concurrency,
            a.per_connection,
        );
        move || -> anyhow::Result<_> {
            sequential(addr, &authn, 1)?;
            sequential(addr, &unauth, 1)?;
            let seq_auth = sequential(addr, &authn, n)?;
            let seq_unauth = sequential(addr, &unauth, n)?;
            let conc = concurrent(addr, &authn, c, per, pid)?;
            Ok((seq_auth, seq_unauth, conc))
        }
    })
    .await??;
    let (conc_lat, wall, peak_rss) = conc;
    let throughput = conc_lat.len() as f64 / wall.as_secs_f64();

    // A full cache: one agent on-behalf-of token per distinct user token.
    let mut full_rss = None;
    if a.cache_entries > 0 {
        let mut tokens = Vec::with_capacity(a.cache_entries);
        for _ in 0..a.cache_entries.saturating_sub(3) {
            let r = crate::bench::post(
                &client,
                &token_url,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", GRAPH_CLI),
                    ("refresh_token", &refresh),
                    ("scope", &scope),
                ],
            )
            .await?;
            refresh = r["refresh_token"].as_str().unwrap_or_default().to_string();
            tokens.push(r["access_token"].as_str().unwrap_or_default().to_string());
        }
        let path = format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}");
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut conn = Conn::open(addr)?;
            for t in &tokens {
                let (status, body) = conn.roundtrip(&get(&path, Some(t)))?;
                if status != 200 {
                    bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
                }
            }
            Ok(())
        })
        .await??;
        full_rss = Some(rss_kib(pid));
    }
    running.shutdown();

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "agentid sidecar benchmark ({cores} cores shared by client, sidecar and STS; loopback; cache pre-warmed)"
    );
    println!(
        "startup to /healthz = 200:                 {:>8.1} ms",
        startup.as_secs_f64() * 1000.0
    );
    let line = |name: &str, l: &[Duration]| {
        println!(
            "{name:<43} p50 {:>6.0} µs   p99 {:>6.0} µs   ({} requests)",
            pct(l, 0.5),
            pct(l, 0.99),
            l.len()
        )
    };
    line("cached /AuthorizationHeader, 1 connection:", &seq_auth);
    line("cached /AuthorizationHeaderUnauthenticated:", &seq_unauth);
    line(
        &format!("cached /AuthorizationHeader, {} conns:", a.concurrency),
        &conc_lat,
    );
    println!(
        "throughput, {} connections:                {throughput:>8.0} requests/s",
        a.concurrency
    );
    println!(
        "resident memory (sidecar process): idle {:.1} MiB, peak under load {:.1} MiB{}",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        full_rss
            .map(|r| format!(
                ", with {} cached tokens {:.1} MiB",
                a.cache_entries,
                r as f64 / 1024.0
            ))
            .unwrap_or_default()
    );
    if let Some(path) = &a.report {
        let mib = |k: u64| k as f64 / 1024.0;
        // No peer runs the sidecar's contract; the rows hold its own figures against targets.
        let rows = vec![
            crate::bench_tools::row(
                "sidecar: cached /AuthorizationHeader p50 µs (lower is better)",
                "µs",
                pct(&seq_auth, 0.5),
                "target (docs/sidecar.md §15)",
                Some(200.0),
            ),
            crate::bench_tools::row(
                "sidecar: cached /AuthorizationHeader p99 µs (lower is better)",
                "µs",
                pct(&seq_auth, 0.99),
                "target (docs/sidecar.md §15)",
                Some(1000.0),
            ),
            crate::bench_tools::row(
                "sidecar: idle RSS MiB (lower is better)",
                "MiB",
                mib(idle_rss),
                "target (docs/sidecar.md §15)",
                Some(20.0),
            ),
        ];
        crate::bench_tools::write_report(
            path,
            "sidecar",
            serde_json::json!({
                "conditions": crate::bench_tools::conditions(),
                "settings": {"requests": a.requests, "connections": a.concurrency,
                    "perConnection": a.per_connection, "cacheEntries": a.cache_entries, "quick": a.quick},
                "rows": rows,
                "startupMs": startup.as_secs_f64() * 1000.0,
                "authorizationHeaderUs": {"p50": pct(&seq_auth, 0.5), "p99": pct(&seq_auth, 0.99)},
                "unauthenticatedUs": {"p50": pct(&seq_unauth, 0.5), "p99": pct(&seq_unauth, 0.99)},
                "concurrentUs": {"p50": pct(&conc_lat, 0.5), "p99": pct(&conc_lat, 0.99)},
                "requestsPerSecond": throughput,
                "rssMiB": {"idle": mib(idle_rss), "peak": mib(peak_rss), "fullCache": full_rss.map(mib)},
            }),
        )?;
    }
    Ok(())
}
