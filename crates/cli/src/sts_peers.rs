//! The STS bench's peers (docs/performance.md §3): the RS256 signers the machine has — OpenSSL
//! (`openssl speed`, its own process), aws-lc-rs and ring in this process — and `oidc-provider`
//! from npm, installed by scripts/bench-deps.sh into a cache directory outside the clone.

use crate::bench_tools;
use rsa::pkcs8::EncodePrivateKey;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The pinned peer (scripts/bench-peers/package.json).
pub const OIDC_PROVIDER_VERSION: &str = "9.13.3";
/// The token request's content type.
pub const FORM: &str = "application/x-www-form-urlencoded";
const OIDC_PROVIDER_SERVER: &str = include_str!("../../../scripts/bench-peers/oidc-provider.mjs");
const OIDC_PROVIDER_FORM: &str = "grant_type=client_credentials&client_id=bench&client_secret=bench-secret-bench-secret-bench-secret&scope=read";

/// How often `f` runs per second of this thread's CPU time, over `seconds` of wall-clock time.
/// CPU time, like `openssl speed` (which divides by user CPU time unless given `-elapsed`): on a
/// shared machine a wall-clock rate measures the other processes as much as the signer.
/// Wall-clock where the kernel does not account per-thread CPU time.
pub fn per_second(seconds: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        f();
        n += 1;
    }
    let elapsed = match (cpu_start, thread_cpu()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => start.elapsed(),
    };
    n as f64 / elapsed.as_secs_f64()
}

/// This thread's time on a CPU (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// CPU time (user + system) of this whole process so far (`/proc/self/stat`, in the kernel's
/// USER_HZ ticks of 10 ms).
pub fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// One signer's RS256 (2048-bit) rate on one core.
pub struct Signer {
    pub name: String,
    pub rate: f64,
}

/// The machine's RS256 signers, each for `seconds`, one after the other.
pub async fn signers(seconds: u64) -> anyhow::Result<Vec<Signer>> {
    let mut out = Vec::new();
    match bench_tools::find_program("openssl") {
        None => bench_tools::skipped("openssl speed", "Debian: apt install openssl"),
        Some(openssl) => {
            let version = tokio::process::Command::new(&openssl)
                .arg("version")
                .output()
                .await?;
            let version = String::from_utf8_lossy(&version.stdout)
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let speed = tokio::process::Command::new(&openssl)
                .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
                .output()
                .await?;
            match parse_openssl_speed(&String::from_utf8_lossy(&speed.stdout)) {
                Some(rate) => out.push(Signer {
                    name: format!("{version} (openssl speed)"),
                    rate,
                }),
                None => println!("peer skipped: `openssl speed rsa2048` printed no rsa 2048 line"),
            }
        }
    }
    let (aws, ring) = tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, f64)> {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
        let pkcs8 = private.to_pkcs8_der()?;
        // The signing input of a typical token: about 1 KiB of base64url.
        let message = vec![b'e'; 1000];
        let aws = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8.as_bytes())
            .map_err(|e| anyhow::anyhow!("aws-lc-rs key: {e}"))?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; aws.public_modulus_len()];
        let aws_rate = per_second(seconds, || {
            let _ = aws.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                &message,
                &mut sig,
            );
        });
        let ring = jsonwebtoken::EncodingKey::from_rsa_der(
            rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&private)?.as_bytes(),
        );
        let ring_rate = per_second(seconds, || {
            let _ = jsonwebtoken::crypto::sign(&message, &ring, jsonwebtoken::Algorithm::RS256);
        });
        Ok((aws_rate, ring_rate))
    })
    .await??;
    out.push(Signer {
        name: "aws-lc-rs (in process)".into(),
        rate: aws,
    });
    out.push(Signer {
        name: "ring (in process, jsonwebtoken 9)".into(),
        rate: ring,
    });
    Ok(out)
}

/// `rsa 2048 bits 0.000212s 0.000013s 4721.0 78151.1` (OpenSSL 3 may add encrypt/decrypt
/// columns after the two times): the first rate after the times is signatures per second.
fn parse_openssl_speed(out: &str) -> Option<f64> {
    let line = out
        .lines()
        .find(|l| l.starts_with("rsa") && l.contains("2048 bits"))?;
    let (_, rest) = line.split_once("bits")?;
    rest.split_whitespace()
        .find(|t| !t.ends_with('s'))?
        .parse()
        .ok()
}

/// `oidc-provider` serving client_credentials on a loopback port, stopped when dropped.
pub struct OidcProvider {
    _child: tokio::process::Child,
    port: u16,
}

impl OidcProvider {
    /// Starts the pinned peer if node and the package are installed; otherwise prints why not.
    pub async fn start() -> anyhow::Result<Option<OidcProvider>> {
        let Some(node) = bench_tools::find_program("node") else {
            bench_tools::skipped("oidc-provider", "needs node: apt install nodejs npm");
            return Ok(None);
        };
        let dir = peers_dir();
        let installed =
            std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| v["version"].as_str().map(str::to_string));
        if installed.as_deref() != Some(OIDC_PROVIDER_VERSION) {
            bench_tools::skipped(
                &format!("oidc-provider {OIDC_PROVIDER_VERSION}"),
                &format!(
                    "run scripts/bench-deps.sh, which installs it into {}",
                    dir.display()
                ),
            );
            return Ok(None);
        }
        // Next to node_modules, so that `import 'oidc-provider'` resolves.
        let server = dir.join("oidc-provider.mjs");
        std::fs::write(&server, OIDC_PROVIDER_SERVER)?;
        let port = bench_tools::free_port()?;
        let child = tokio::process::Command::new(node)
            .arg(&server)
            .arg(port.to_string())
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        bench_tools::wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(20)).await?;
        Ok(Some(OidcProvider {
            _child: child,
            port,
        }))
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn form(&self) -> &'static str {
        OIDC_PROVIDER_FORM
    }
}

/// Where scripts/bench-deps.sh installs the Node peers: `AGENTID_BENCH_PEERS`, else
/// `~/.cache/agentid/bench-peers`.
fn peers_dir() -> PathBuf {
    std::env::var_os("AGENTID_BENCH_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/agentid/bench-peers")
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn openssl_speed_output_parses() {
        let one = "                  sign    verify    sign/s verify/s\nrsa 2048 bits 0.000215s 0.000013s   4658.5  78517.4\n";
        assert_eq!(super::parse_openssl_speed(one), Some(4658.5));
        let three = "rsa  2048 bits 0.000210s 0.000014s 0.000015s 0.000200s 4761.9 71428.6 66666.7 5000.0\n";
        assert_eq!(super::parse_openssl_speed(three), Some(4761.9));
        assert_eq!(super::parse_openssl_speed("no figures\n"), None);
    }
}
