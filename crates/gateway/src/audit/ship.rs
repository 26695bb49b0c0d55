//! Shipping audit events to the STS (docs/audit.md §6): batches read from the spool are posted to
//! `POST /agentid/v1/auditEvents` with the gateway's own app token; the spool's committed position
//! moves only after the STS answered 200, so every event arrives at least once and the STS's
//! dedup by eventId makes it exactly once in its store.

use super::spool::{Batch, Spool};
use crate::config::model::{ShipSettings, TlsPolicy};
use crate::upstream::{Clients, error_chain};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes of events in one request at most (the STS's body limit is 2 MiB).
const MAX_BATCH_BYTES: usize = 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("spool directory {dir}: {source}")]
    Spool { dir: String, source: std::io::Error },
    #[error("HTTP client: {0}")]
    Client(String),
}

/// The running shipper; dropping it stops the task (what is not committed stays in the spool).
pub struct Shipper {
    spool: Arc<Spool>,
    shipped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shipper {
    pub fn start(cfg: ShipSettings, clients: &Clients) -> Result<Shipper, ShipError> {
        let spool = Arc::new(
            Spool::open(&cfg.spool_dir, cfg.max_spool_bytes).map_err(|e| ShipError::Spool {
                dir: cfg.spool_dir.display().to_string(),
                source: e,
            })?,
        );
        let policy = cfg.root.clone().map(|r| TlsPolicy {
            root: Some(r),
            hostname: None,
            cert: None,
            key: None,
            insecure: false,
            insecure_host: false,
        });
        let client = clients.get(policy.as_ref()).map_err(ShipError::Client)?;
        let shipped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(cfg, client, spool.clone(), shipped.clone()));
        Ok(Shipper {
            spool,
            shipped,
            task,
        })
    }

    pub fn spool(&self) -> Arc<Spool> {
        self.spool.clone()
    }

    /// Events the STS has acknowledged since start.
    pub fn shipped(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed)
    }
}

enum Failure {
    /// The STS refused the batch as malformed: retrying cannot help.
    Poison(String),
    Retry(String),
}

struct Token {
    value: String,
    refresh_at: Instant,
}

async fn run(
    cfg: ShipSettings,
    client: reqwest::Client,
    spool: Arc<Spool>,
    shipped: Arc<AtomicU64>,
) {
    let mut token: Option<Token> = None;
    let mut backoff = Duration::from_secs(1);
    let mut last_warning: Option<Instant> = None;
    loop {
        let sp = spool.clone();
        let max = cfg.batch_size;
        let batch = match tokio::task::spawn_blocking(move || sp.read(max, MAX_BATCH_BYTES)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!("audit spool read failed: {e}");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(_) => return,
        };
        if batch.lines.is_empty() {
            tokio::time::sleep(cfg.flush_interval).await;
            continue;
        }
        let n = batch.lines.len();
        let full = n >= cfg.batch_size;
        match post(&cfg, &client, &mut token, &batch).await {
            Ok(()) => {
                if commit(&spool, &batch).await {
                    shipped.fetch_add(n as u64, Ordering::Relaxed);
                }
                backoff = Duration::from_secs(1);
                if !full {
                    tokio::time::sleep(cfg.flush_interval).await;
                }
            }
            Err(Failure::Poison(why)) => {
                tracing::error!(
                    events = n,
                    "the STS refused an audit batch, skipping it: {why}"
                );
                commit(&spool, &batch).await;
            }
            Err(Failure::Retry(why)) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        pending = n,
                        "audit shipping to the STS failed, retrying: {why}"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn commit(spool: &Arc<Spool>, batch: &Batch) -> bool {
    let sp = spool.clone();
    let end = batch.end;
    match tokio::task::spawn_blocking(move || sp.commit(end)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            // The batch will be sent again; the STS stores it once.
            tracing::error!("audit spool commit failed: {e}");
            false
        }
        Err(_) => false,
    }
}

/// `{"events": [line, …]}` from the spooled lines as they are; a damaged line is dropped.
fn body(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 16);
    out.extend_from_slice(b"{\"events\":[");
    let mut first = true;
    for l in lines {
        if serde_json::from_str::<serde::de::IgnoredAny>(l).is_err() {
            tracing::warn!("audit spool: a damaged event was dropped");
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(l.as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
}

async fn post(
    cfg: &ShipSettings,
    client: &reqwest::Client,
    token: &mut Option<Token>,
    batch: &Batch,
) -> Result<(), Failure> {
    let bearer = match token.as_ref().filter(|t| t.refresh_at > Instant::now()) {
        Some(t) => t.value.clone(),
        None => {
            let t = app_token(cfg, client).await?;
            let v = t.value.clone();
            *token = Some(t);
            v
        }
    };
    let resp = client
        .post(&cfg.url)
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .body(body(&batch.lines))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| Failure::Retry(format!("STS unreachable: {}", error_chain(&e))))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        *token = None;
    }
    let text = resp.text().await.unwrap_or_default();
    let text: String = text.chars().take(300).collect();
    if status == reqwest::StatusCode::BAD_REQUEST
        || status == reqwest::StatusCode::PAYLOAD_TOO_LARGE
    {
        return Err(Failure::Poison(format!("{status}: {text}")));
    }
    Err(Failure::Retry(format!("STS answered {status}: {text}")))
}

/// The gateway's own app token (client credentials), refreshed a minute before it expires.
async fn app_token(cfg: &ShipSettings, client: &reqwest::Client) -> Result<Token, Failure> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", &*cfg.client_secret.0),
        ("scope", cfg.scope.as_str()),
    ];
    let resp = client
        .post(&cfg.token_endpoint)
        .form(&form)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| Failure::Retry(format!("token endpoint unreachable: {}", error_chain(&e))))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let err = body
            .get("error_description")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let err: String = err.chars().take(300).collect();
        // A refused credential is a configuration problem: keep the events and keep retrying.
        return Err(Failure::Retry(format!(
            "token endpoint answered {status}: {err}"
        )));
    }
    let value = body
        .get("access_token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Failure::Retry("token response has no access_token".into()))?
        .to_string();
    let expires_in = body
        .get("expires_in")
        .and_then(|v| v.as_u64())
        .unwrap_or(300);
    Ok(Token {
        value,
        refresh_at: Instant::now() + Duration::from_secs(expires_in.saturating_sub(60).max(10)),
    })
}
