//! `agentid sts bench`: how close the STS gets to its only unavoidable cost, the RS256
//! signature, and to its peer (docs/performance.md §3). It starts an STS in-process (HTTPS,
//! SQLite in a temporary directory, the demo tenant), measures one core's signing rate with the
//! STS's own signer next to the best RS256 signer on the machine (`openssl speed` and aws-lc-rs,
//! measured in the run), drives client_credentials with wrk (in its own process) and the same
//! against `oidc-provider` from npm when installed (scripts/bench-deps.sh), alternating, and
//! times the T1→T2 and on-behalf-of flows.

use crate::bench_tools;
use crate::examples::DEMO_TENANT;
use crate::sts_peers;
use agentid_directory::tenant_file::TenantFile;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds of client_credentials load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Samples for the latency figures.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Use PostgreSQL instead of SQLite (a database URL; it must be empty or an agentid database).
    #[arg(long)]
    database: Option<String>,
    /// Short runs (2 s of load, 1 s per signer, 50 samples), for CI and scripts/bench.
    #[arg(long)]
    quick: bool,
    /// Write the results into this JSON report (its `sts` section).
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Instead: peak resident memory while this many wrong passwords (one per user, from
    /// distinct client addresses, so no lockout cuts the work short) arrive at once.
    #[arg(long, value_name = "N")]
    password_burst: Option<usize>,
}

/// Resident memory of a process (`self` or a pid), KiB, from /proc.
pub(crate) fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The `p` quantile of sorted samples.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    percentile(sorted, p).as_secs_f64() * 1000.0
}

/// POSTs a form and fails on a non-2xx answer (token requests).
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> anyhow::Result<serde_json::Value> {
    let r = client.post(url).form(form).send().await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "token request failed: {body}");
    Ok(body)
}

pub async fn run(mut a: BenchArgs) -> anyhow::Result<()> {
    if let Some(n) = a.password_burst {
        return password_burst(n, a.database.as_deref()).await;
    }
    if a.quick {
        a.duration = a.duration.min(2);
        a.samples = a.samples.min(50);
    }
    let rounds = if a.quick { 1 } else { 3 };
    let sign_seconds = if a.quick { 1 } else { 3 };
    let dir = tempfile::tempdir()?;
    let mut s = agentid_sts::Settings::new(dir.path(), "127.0.0.1:0".parse()?);
    s.access_lifetime = agentid_sts::settings::AccessLifetime::Fixed(3600);
    if let Some(db) = &a.database {
        s.storage_url = db.clone();
        let key = agentid_directory::secrets::MasterKey::generate();
        agentid_directory::secrets::write_private_file(
            &s.master_key_file,
            key.to_base64().as_bytes(),
        )?;
    }
    let file = TenantFile::parse(DEMO_TENANT, Path::new("."))?;
    let running = agentid_sts::start(s, &[file]).await?;
    let tenant = running.reports[0].tenant_id;
    let url = format!("{}/{tenant}/oauth2/v2.0/token", running.base);
    let ca = reqwest::Certificate::from_pem(
        running
            .ca_pem
            .as_deref()
            .context("STS has a CA")?
            .as_bytes(),
    )?;
    let mk_client = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca.clone())
            .http1_only()
            .pool_max_idle_per_host(1)
            .build()
    };
    let conditions = bench_tools::conditions();
    let cores = conditions["cores"].as_u64().unwrap_or(1) as f64;
    let idle_rss = rss_kib("self");

    // 1. One core's RS256 signing rate: the STS's own signer (its key, a real token's claims,
    // JSON and base64 included) next to the best signers on the machine.
    let key = running
        .state
        .keys
        .signer(&tenant, chrono::Utc::now().timestamp())
        .await?;
    let sample = post(
        &mk_client()?,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await?;
    let claims =
        agentid_claims::UnverifiedJwt::parse(sample["access_token"].as_str().unwrap_or_default())?
            .claims;
    let own_rate = tokio::task::spawn_blocking(move || {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        sts_peers::per_second(sign_seconds, || {
            let _ = key.sign(&header, &claims);
        })
    })
    .await?;
    let signers = sts_peers::signers(sign_seconds).await?;
    let best = signers
        .iter()
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
        .map(|s| (s.name.clone(), s.rate))
        .unwrap_or(("the STS's signer".into(), own_rate));

    // 2. client_credentials throughput over keep-alive HTTPS, and the peer over HTTP, with the
    // same wrk, alternating.
    let form = format!(
        "grant_type=client_credentials&client_id={BP}&client_secret={BP_SECRET}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
    );
    let wrk = bench_tools::find_program("wrk");
    let peer = match &wrk {
        Some(_) => sts_peers::OidcProvider::start().await?,
        None => None,
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut load_generator = "wrk";
    // Resident memory sampled while the load runs.
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (sampling, peak) = (sampling.clone(), peak.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib("self"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let script = dir.path().join("token.lua");
    let peer_script = dir.path().join("peer-token.lua");
    std::fs::write(
        &script,
        bench_tools::post_script(sts_peers::FORM, &form, &[], &[]),
    )?;
    if let (Some(wrk), Some(p)) = (&wrk, &peer) {
        std::fs::write(
            &peer_script,
            bench_tools::post_script(sts_peers::FORM, p.form(), &[], &[]),
        )?;
        // Node compiles its hot paths as they run: one second of warm-up, not measured.
        bench_tools::wrk(wrk, &p.token_url(), &peer_script, 2, a.concurrency, 1).await?;
    }
    // The STS's CPU seconds per token (this process is the STS; wrk and the peer are not in
    // it): tokens per CPU second, unlike tokens/s, do not depend on what else the machine runs.
    let mut per_cpu = Vec::new();
    for _ in 0..rounds {
        match &wrk {
            Some(wrk) => {
                let cpu0 = sts_peers::process_cpu();
                let run =
                    bench_tools::wrk(wrk, &url, &script, 2, a.concurrency, a.duration).await?;
                if let (Some(c0), Some(c1)) = (cpu0, sts_peers::process_cpu())
                    && c1 > c0
                {
                    per_cpu.push(run.rps * a.duration as f64 / (c1 - c0).as_secs_f64());
                }
                ours.push(run.rps);
                if let Some(p) = &peer {
                    let run = bench_tools::wrk(
                        wrk,
                        &p.token_url(),
                        &peer_script,
                        2,
                        a.concurrency,
                        a.duration,
                    )
                    .await?;
                    theirs.push(run.rps);
                }
            }
            None => {
                load_generator = "in-process reqwest clients (wrk is not installed)";
                ours.push(in_process_load(&mk_client, &url, &a).await?);
            }
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let peak_rss = peak.load(Ordering::Relaxed);
    drop(peer);
    let throughput = bench_tools::median(ours);
    let tokens_per_cpu = (!per_cpu.is_empty()).then(|| bench_tools::median(per_cpu));
    let peer_rate = (!theirs.is_empty()).then(|| bench_tools::median(theirs));

    // 3. Latencies: T1→T2 (both legs) and OBO, one request at a time.
    let client = mk_client()?;
    let mut t1t2 = Vec::with_capacity(a.samples);
    for _ in 0..a.samples {
        let t0 = Instant::now();
        let t1 = post(
            &client,
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", BP),
                ("client_secret", BP_SECRET),
                ("scope", "api://AzureADTokenExchange/.default"),
                ("fmi_path", AGENT),
            ],
        )
        .await?;
        let t1 = t1["access_token"].as_str().unwrap_or_default().to_string();
        post(
            &client,
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", AGENT),
                ("scope", "https://graph.microsoft.com/.default"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &t1),
            ],
        )
        .await?;
        t1t2.push(t0.elapsed());
    }
    let scope = format!("api://{BP}/access_as_user openid profile");
    let tc = post(
        &client,
        &url,
        &[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", &scope),
        ],
    )
    .await?;
    let tc = tc["access_token"].as_str().unwrap_or_default().to_string();
    let t1 = post(
        &client,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", AGENT),
        ],
    )
    .await?;
    let t1 = t1["access_token"].as_str().unwrap_or_default().to_string();
    let mut obo = Vec::with_capacity(a.samples);
    for _ in 0..a.samples {
        let t0 = Instant::now();
        post(
            &client,
            &url,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("client_id", AGENT),
                ("requested_token_use", "on_behalf_of"),
                ("assertion", &tc),
                (
                    "scope",
                    "https://graph.microsoft.com/.default openid profile",
                ),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &t1),
            ],
        )
        .await?;
        obo.push(t0.elapsed());
    }
    t1t2.sort();
    obo.sort();
    running.shutdown();

    let ratio = throughput / (best.1 * cores);
    let backend = if a.database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "agentid STS benchmark ({cores} cores ({}), load average {}; {backend} backend; load: {load_generator}, {} connections, {} s × {rounds} round(s), alternating with the peer)",
        conditions["cpu"].as_str().unwrap_or(""),
        conditions["loadAverage1m"],
        a.concurrency,
        a.duration
    );
    println!("RS256 signing rate, 1 core:");
    for s in &signers {
        println!("  {:<36} {:>8.0} signatures/s", s.name, s.rate);
    }
    println!(
        "  {:<36} {own_rate:>8.0} signatures/s ({:.2} of the best, {})",
        "agentid STS signer (JSON + sign)",
        own_rate / best.1,
        best.0
    );
    println!("client_credentials throughput:");
    println!(
        "  {:<36} {throughput:>8.0} tokens/s",
        "agentid STS (HTTPS, audited)"
    );
    match peer_rate {
        Some(p) => println!(
            "  {:<36} {p:>8.0} tokens/s (agentid ÷ oidc-provider {:.2}, target ≥ 1.5)",
            format!(
                "oidc-provider {} (HTTP, memory)",
                sts_peers::OIDC_PROVIDER_VERSION
            ),
            throughput / p
        ),
        None if wrk.is_some() => {}
        None => bench_tools::skipped("oidc-provider", "needs wrk: apt install wrk"),
    }
    println!(
        "  ratio throughput / (best signer × cores): {ratio:.2} (target ≥ 0.50 on SQLite, ≥ 0.40 on PostgreSQL)"
    );
    if let Some(t) = tokens_per_cpu {
        println!(
            "  tokens per CPU second of the STS process: {t:.0} ({:.2} of the best signer's signatures per CPU second)",
            t / best.1
        );
    }
    println!(
        "T1→T2 latency (two requests):           p50 {:.2} ms  p99 {:.2} ms (target p99 < 5)",
        pct(&t1t2, 0.5),
        pct(&t1t2, 0.99)
    );
    println!(
        "on-behalf-of latency:                   p50 {:.2} ms  p99 {:.2} ms",
        pct(&obo, 0.5),
        pct(&obo, 0.99)
    );
    println!(
        "resident memory: idle {:.1} MiB, peak under load {:.1} MiB (whole process{})",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        if wrk.is_some() {
            ""
        } else {
            ", load generator included"
        }
    );
    if let Some(path) = &a.report {
        let rows = vec![
            bench_tools::row(
                &format!("sts: client_credentials tokens/s ({backend})"),
                "tokens/s",
                throughput,
                &format!("oidc-provider {}", sts_peers::OIDC_PROVIDER_VERSION),
                peer_rate,
            ),
            bench_tools::row(
                &format!("sts: client_credentials tokens/s ({backend}) vs best signer × cores"),
                "tokens/s",
                throughput,
                &format!("{} × {cores}", best.0),
                Some(best.1 * cores),
            ),
            bench_tools::row(
                "sts: RS256 signatures/s, 1 core",
                "signatures/s",
                own_rate,
                &best.0,
                Some(best.1),
            ),
        ];
        bench_tools::write_report(
            path,
            "sts",
            serde_json::json!({
                "conditions": conditions,
                "settings": {"backend": backend, "connections": a.concurrency, "seconds": a.duration,
                    "rounds": rounds, "quick": a.quick, "loadGenerator": load_generator},
                "rows": rows,
                "signers": signers.iter().map(|s| serde_json::json!({"name": s.name, "perCore": s.rate})).collect::<Vec<_>>(),
                "ownSignerPerCore": own_rate,
                "tokensPerSecond": throughput,
                "peerTokensPerSecond": peer_rate,
                "ratioToBestSignerTimesCores": ratio,
                "tokensPerCpuSecond": tokens_per_cpu,
                "t1t2Ms": {"p50": pct(&t1t2, 0.5), "p99": pct(&t1t2, 0.99)},
                "oboMs": {"p50": pct(&obo, 0.5), "p99": pct(&obo, 0.99)},
            }),
        )?;
    }
    Ok(())
}

/// The fallback load when wrk is missing: concurrent reqwest clients in this process.
async fn in_process_load<F>(mk_client: &F, url: &str, a: &BenchArgs) -> anyhow::Result<f64>
where
    F: Fn() -> reqwest::Result<reqwest::Client>,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, url, done, stop) = (mk_client()?, url.to_string(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", BP),
                    ("client_secret", BP_SECRET),
                    ("scope", "https://graph.microsoft.com/.default"),
                ];
                if post(&client, &url, &form).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    let rate = (done.load(Ordering::Relaxed) - start_count) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok(rate)
}

// ---- peak memory under a burst of wrong passwords (issue 10, defect 3) -----------------------

/// Peak resident memory (VmHWM) of this process, KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `n` users with passwords, added to the demo tenant, and `n` wrong-password requests sent at
/// once — each for its own user from its own address (through a trusted proxy), so neither
/// lockout shortens the work: every request costs one Argon2 check. Reports the peak resident
/// memory of the process (STS and load generator together) above its level before the burst.
async fn password_burst(n: usize, database: Option<&str>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut s = agentid_sts::Settings::new(dir.path(), "127.0.0.1:0".parse()?);
    s.trusted_proxies = vec!["127.0.0.1/32".parse()?];
    if let Some(db) = database {
        s.storage_url = db.to_string();
        let key = agentid_directory::secrets::MasterKey::generate();
        agentid_directory::secrets::write_private_file(
            &s.master_key_file,
            key.to_base64().as_bytes(),
        )?;
    }
    let password_checks = s.password_checks;
    let users: String = (0..n)
        .map(|i| {
            format!(
                "  - name: burst{i}\n    upn: burst{i}@contoso.test\n    password: burst-password-{i}\n"
            )
        })
        .collect();
    let yaml = DEMO_TENANT.replacen("users:\n", &format!("users:\n{users}"), 1);
    let file = TenantFile::parse(&yaml, Path::new("."))?;
    let running = agentid_sts::start(s, &[file]).await?;
    let tenant = running.reports[0].tenant_id;
    let url = format!("{}/{tenant}/oauth2/v2.0/token", running.base);
    let ca = reqwest::Certificate::from_pem(
        running
            .ca_pem
            .as_deref()
            .context("STS has a CA")?
            .as_bytes(),
    )?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .http1_only()
        .build()?;
    // Warm up connections and the allocator with one request, then measure from here.
    let _ = client
        .post(&url)
        .form(&[("grant_type", "password"), ("client_id", GRAPH_CLI)])
        .send()
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib("self");
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampled_peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), sampled_peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib("self"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let user = format!("burst{i}@contoso.test");
                let address = format!("198.18.{}.{}", i / 250, i % 250 + 1);
                client
                    .post(&url)
                    .header("x-forwarded-for", address)
                    .form(&[
                        ("grant_type", "password"),
                        ("client_id", GRAPH_CLI),
                        ("username", user.as_str()),
                        ("password", "wrong-password"),
                        ("scope", "https://graph.microsoft.com/User.Read"),
                    ])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap_or(0)).or_default() += 1;
    }
    let elapsed = start.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let peak = if hwm_reset {
        peak_rss_kib().max(sampled_peak.load(Ordering::Relaxed))
    } else {
        sampled_peak.load(Ordering::Relaxed)
    };
    running.shutdown();
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "agentid STS password burst: {n} concurrent wrong passwords ({} backend)",
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "password checks at once: {} (queue {}, wait {} ms)",
        password_checks.max_concurrent,
        password_checks.max_waiting,
        password_checks.max_wait.as_millis()
    );
    println!(
        "resident memory: before {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB (whole process, load generator included{})",
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        if hwm_reset {
            ""
        } else {
            "; sampled every 2 ms"
        }
    );
    println!(
        "answers: {} in {:.2} s",
        statuses
            .iter()
            .map(|(s, c)| format!("{c}× {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        elapsed.as_secs_f64()
    );
    Ok(())
}
