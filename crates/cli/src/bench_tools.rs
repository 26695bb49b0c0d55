//! What the three bench commands share (docs/performance.md §1): finding a peer's program, the
//! load generator (wrk, in its own process, driven by a Lua script), process memory, the file
//! descriptor limit, the machine's conditions, and the one JSON report they all write into.

use anyhow::Context;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A program on `PATH` (or in the sbin directories, where Debian puts nginx).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The line a bench prints for a peer it cannot run.
pub fn skipped(peer: &str, package: &str) {
    println!("peer skipped: {peer} is not installed ({package})");
}

/// Raises the open-file limit to `want` (the hard limit too when allowed, as root; else the soft
/// limit up to the hard one); returns the limit now in force. Children (the gateway, nginx, wrk)
/// inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let (soft, hard) = (
        now.current.unwrap_or(u64::MAX),
        now.maximum.unwrap_or(u64::MAX),
    );
    if soft >= want {
        return soft;
    }
    let both = Rlimit {
        current: Some(want),
        maximum: Some(hard.max(want)),
    };
    if setrlimit(Resource::Nofile, both).is_ok() {
        return want;
    }
    let soft_only = Rlimit {
        current: Some(want.min(hard)),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, soft_only) {
        Ok(()) => want.min(hard),
        Err(_) => soft,
    }
}

/// Resident memory of one process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of a process and its direct children (nginx: master and workers), KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    rss_kib(pid)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(rss_kib)
            .sum::<u64>()
}

/// Cores, CPU model and load average: the conditions every figure was taken under.
pub fn conditions() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "loadAverage1m": load,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// One row of the report's table: a case, agentid's figure, the peer's, and their ratio
/// agentid ÷ peer (figures are rates, so above 1 means agentid does more).
pub fn row(case: &str, unit: &str, agentid: f64, peer: &str, peer_value: Option<f64>) -> Value {
    let ratio = peer_value.filter(|p| *p > 0.0).map(|p| agentid / p);
    json!({"case": case, "unit": unit, "agentid": agentid, "peer": peer, "peerValue": peer_value, "ratio": ratio})
}

/// Writes `section` into the JSON report at `path`, keeping the other benches' sections.
pub fn write_report(path: &Path, name: &str, section: Value) -> anyhow::Result<()> {
    let mut report = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .filter(|v| v.get("schema").and_then(Value::as_str) == Some(SCHEMA))
        .unwrap_or_else(|| json!({"schema": SCHEMA}));
    report[name] = section;
    std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote the {name} section of {}", path.display());
    Ok(())
}

const SCHEMA: &str = "agentid.bench/v1";

/// The median of a few runs (each run already averages thousands of requests).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

// ---- wrk -----------------------------------------------------------------------------------

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// A wrk script: a POST of `body` every request, with `headers`; each wrk thread carries the
/// next of `sessions` as `Mcp-Session-Id` (none when empty).
pub fn post_script(
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
    sessions: &[String],
) -> String {
    let mut s = String::from("wrk.method = \"POST\"\n");
    s.push_str(&format!("wrk.body = [==[{body}]==]\n"));
    s.push_str(&format!(
        "wrk.headers[\"Content-Type\"] = \"{content_type}\"\n"
    ));
    s.push_str("wrk.headers[\"Accept\"] = \"application/json, text/event-stream\"\n");
    for (k, v) in headers {
        s.push_str(&format!("wrk.headers[\"{k}\"] = [==[{v}]==]\n"));
    }
    if !sessions.is_empty() {
        let list: Vec<String> = sessions.iter().map(|s| format!("\"{s}\"")).collect();
        s.push_str(&format!(
            "local sessions = {{{}}}\nlocal n = 0\n\
             function setup(thread) n = n + 1; thread:set(\"sid\", sessions[(n - 1) % #sessions + 1]) end\n\
             function init(args) wrk.headers[\"Mcp-Session-Id\"] = sid end\n",
            list.join(", ")
        ));
    }
    s
}

/// Runs wrk for `seconds` with `connections` over `threads` threads; fails when any answer
/// was not 2xx/3xx or a socket error occurred (a fast error is not a fast proxy).
pub async fn wrk(
    wrk: &Path,
    url: &str,
    script: &Path,
    threads: usize,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<WrkRun> {
    let out = tokio::process::Command::new(wrk)
        .arg(format!("-t{}", threads.min(connections).max(1)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text).with_context(|| format!("{url}: {text}"))
}

fn parse_wrk(text: &str) -> anyhow::Result<WrkRun> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = wrk_duration_us(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = wrk_duration_us(v.trim());
        } else if line.starts_with("Non-2xx or 3xx responses:")
            || line.starts_with("Socket errors:")
        {
            anyhow::bail!("errors during the run: {line}");
        }
    }
    Ok(WrkRun {
        rps: rps.context("no Requests/sec")?,
        p50_us: p50.context("no 50% latency")?,
        p99_us: p99.context("no 99% latency")?,
    })
}

/// `123.45us`, `1.20ms`, `2.00s`, `1.00m` → µs.
fn wrk_duration_us(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 6e7,
        _ => return None,
    })
}

/// Polls until something accepts on `addr` (a child process starting), up to `within`.
pub async fn wait_listening(addr: std::net::SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A free loopback port (bound and released; the child binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_parses() {
        let out = "Running 2s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n  Latency Distribution\n     50%  412.00us\n     75%    1.02ms\n     90%    2.00ms\n     99%    3.50ms\n  1234 requests in 2.00s, 1.00MB read\nRequests/sec:  16929.20\nTransfer/sec:      1.00MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.rps, 16929.20);
        assert_eq!(r.p50_us, 412.0);
        assert_eq!(r.p99_us, 3500.0);
        assert!(parse_wrk(&format!("{out}  Non-2xx or 3xx responses: 5\n")).is_err());
    }
}
