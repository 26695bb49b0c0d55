//! The federated token file (docs/sidecar.md §9.4). Kubelet rewrites the projected service-account
//! token at about 80 % of its lifetime; the content is reused while it has more than 5 min to
//! `exp` and was read less than 5 min ago, and read again otherwise. A failed re-read keeps the
//! cached token while it has more than 60 s left.

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;

const REREAD_AFTER: i64 = 300;
const EXP_MARGIN: i64 = 300;
const KEEP_ON_FAILURE: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionFileError {
    #[error("the federated token file {0} cannot be read ({1})")]
    Unreadable(String, String),
    #[error("the federated token file {0} is empty")]
    Empty(String),
}

struct Cached {
    content: Arc<str>,
    exp: Option<i64>,
    read_at: i64,
}

pub struct AssertionFile {
    path: PathBuf,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl AssertionFile {
    pub fn new(path: PathBuf, clock: SharedClock, metrics: Arc<Metrics>) -> Self {
        Self {
            path,
            clock,
            metrics,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The assertion to send; `force` re-reads the file (after the authority rejected it).
    pub async fn get(&self, force: bool) -> Result<Arc<str>, AssertionFileError> {
        // One read in flight: the lock is held across the read.
        let mut cached = self.cached.lock().await;
        let now = self.clock.now();
        if let Some(c) = cached.as_ref()
            && !force
            && c.exp.is_none_or(|exp| now < exp - EXP_MARGIN)
            && now < c.read_at + REREAD_AFTER
        {
            return Ok(c.content.clone());
        }
        let shown = self.path.display().to_string();
        let read = match tokio::fs::read_to_string(&self.path).await {
            Ok(s) => {
                let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
                if t.is_empty() {
                    Err(AssertionFileError::Empty(shown.clone()))
                } else {
                    Ok(t.to_string())
                }
            }
            Err(e) => Err(AssertionFileError::Unreadable(
                shown.clone(),
                e.kind().to_string(),
            )),
        };
        match read {
            Ok(content) => {
                self.metrics.assertion_read("success");
                let exp = agentid_claims::UnverifiedJwt::parse(&content)
                    .ok()
                    .and_then(|j| j.time_claim("exp"));
                let content: Arc<str> = Arc::from(content);
                *cached = Some(Cached {
                    content: content.clone(),
                    exp,
                    read_at: now,
                });
                Ok(content)
            }
            Err(e) => {
                self.metrics.assertion_read("error");
                match cached.as_ref() {
                    Some(c) if !force && c.exp.is_none_or(|exp| exp - now > KEEP_ON_FAILURE) => {
                        tracing::warn!(event = "assertion_file_reread_failed", path = %shown, reason = %e, "keeping the previously read federated token");
                        Ok(c.content.clone())
                    }
                    _ => Err(e),
                }
            }
        }
    }
}
