//! Keeps one issuer's revocation state current (docs/sts.md §17.3). A task per issuer fetches
//! the feed, verifies it ([`super::feed::verify`]) with the issuer's key cache, refuses a
//! version lower than the one held, and publishes the state in an [`ArcSwapOption`] that the
//! request path reads without locking. With a long-poll wait the STS answers as soon as the
//! version passes the one held; otherwise (or when the STS answers at once) the task waits the
//! interval between fetches. The task ends when the last [`FeedHandle`] is dropped.

use super::feed::{self, FeedError, MAX_FEED_BYTES, RevocationState};
use crate::verify::{Document, FetchPolicy, Fetcher, KeyLookup};
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The STS holds a long poll at most this long (docs/sts.md §17.3).
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// How a feed is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSettings {
    /// Between fetches without a long poll, and the least time between two fetches.
    pub interval: Duration,
    /// Long-poll wait asked of the STS (`wait`, at most [`MAX_WAIT`]); zero polls plainly.
    pub wait: Duration,
    /// For one fetch, on top of the wait.
    pub fetch_timeout: Duration,
    /// Clock skew tolerated on the feed's `iat` and `exp`.
    pub skew: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            interval: Duration::from_secs(2),
            wait: Duration::from_secs(20),
            fetch_timeout: Duration::from_secs(5),
            skew: Duration::from_secs(60),
        }
    }
}

/// The feed URL of an issuer: `{issuer}/agentid/v1/revocations` (both issuer forms of a
/// tenant, `{base}/{tid}/` and `{base}/{tid}/v2.0`, have one).
pub fn feed_url(issuer: &str) -> String {
    format!("{}/agentid/v1/revocations", issuer.trim_end_matches('/'))
}

/// What the metrics show of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    pub issuer: String,
    /// The version held; `None` before the first verified feed.
    pub version: Option<i64>,
    /// Since the last verified fetch; `None` before the first.
    pub last_success_age: Option<Duration>,
    pub failures: u64,
}

/// The latest verified state of one issuer's feed.
pub struct FeedHandle {
    issuer: String,
    url: String,
    state: ArcSwapOption<RevocationState>,
    last_success: Mutex<Option<Instant>>,
    started: Instant,
    failures: AtomicU64,
    /// The version held (-1 before the first): subscribers (the sidecar's cache purge) wake on
    /// each change.
    version: watch::Sender<i64>,
    last_error_logged: AtomicI64,
}

impl FeedHandle {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The state held, if any feed has verified yet.
    pub fn current(&self) -> Option<Arc<RevocationState>> {
        self.state.load_full()
    }

    /// Since the last verified fetch (a fetch that returned the same version counts).
    pub fn last_success_age(&self) -> Option<Duration> {
        self.last_success
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// Since the last verified fetch, or since polling started when none has verified yet:
    /// what a route's grace period is compared with.
    pub fn staleness(&self) -> Duration {
        self.last_success_age()
            .unwrap_or_else(|| self.started.elapsed())
    }

    pub fn status(&self) -> FeedStatus {
        FeedStatus {
            issuer: self.issuer.clone(),
            version: self.current().map(|s| s.version),
            last_success_age: self.last_success_age(),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Wakes on every new version (the value is the version, -1 before the first).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.version.subscribe()
    }

    /// Step 4 and publication: keeps `next` unless it is older than the state held.
    fn accept(&self, next: RevocationState) -> Result<(), FeedError> {
        if let Some(have) = self.current()
            && next.version < have.version
        {
            return Err(FeedError::Rollback {
                have: have.version,
                got: next.version,
            });
        }
        let version = next.version;
        self.state.store(Some(Arc::new(next)));
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.version.send_if_modified(|v| {
            let changed = *v != version;
            *v = version;
            changed
        });
        Ok(())
    }

    fn failed(&self, e: &FeedError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        // At most one warning a minute per feed: an STS outage must not flood the log.
        let now = unix_now();
        let last = self.last_error_logged.load(Ordering::Relaxed);
        if now - last >= 60
            && self
                .last_error_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(issuer = %self.issuer, error = %e, "revocation feed refresh failed");
        }
    }

    /// One fetch and verification (exposed for tests and `--validate-only` style checks).
    pub async fn refresh_once<K: KeyLookup + ?Sized>(
        &self,
        keys: &K,
        fetcher: &Fetcher,
        settings: &PollSettings,
        wait: bool,
    ) -> Result<i64, FeedError> {
        let held = self.current().map(|s| s.version);
        let wait_secs = settings.wait.min(MAX_WAIT).as_secs();
        let url = match held {
            Some(v) if wait && wait_secs > 0 => {
                format!("{}?afterVersion={v}&wait={wait_secs}", self.url)
            }
            _ => self.url.clone(),
        };
        let policy = FetchPolicy {
            timeout: settings.fetch_timeout + Duration::from_secs(wait_secs),
            max_bytes: MAX_FEED_BYTES,
            allow_http: true,
            allow_private: true,
            ca_bundle: None,
        };
        let body = fetcher
            .get_bytes(&url, Document::SignedDocument, &policy)
            .await
            .map_err(|e| FeedError::Fetch(e.to_string()))?;
        let raw =
            std::str::from_utf8(&body).map_err(|_| FeedError::Malformed("not UTF-8".into()))?;
        let skew = settings.skew.as_secs() as i64;
        let state = feed::verify(raw, &self.issuer, keys, unix_now(), skew).await?;
        let version = state.version;
        self.accept(state)?;
        Ok(version)
    }
}

/// Starts polling `issuer`'s feed with keys from `keys` (the issuer's key cache, the same one
/// that verifies its tokens). Needs a tokio runtime.
pub fn spawn<K: KeyLookup + 'static>(
    issuer: &str,
    keys: K,
    fetcher: Arc<Fetcher>,
    settings: PollSettings,
) -> Arc<FeedHandle> {
    let handle = Arc::new(FeedHandle {
        issuer: issuer.to_string(),
        url: feed_url(issuer),
        state: ArcSwapOption::empty(),
        last_success: Mutex::new(None),
        started: Instant::now(),
        failures: AtomicU64::new(0),
        version: watch::channel(-1).0,
        last_error_logged: AtomicI64::new(0),
    });
    let weak = Arc::downgrade(&handle);
    tokio::spawn(run(weak, keys, fetcher, settings));
    handle
}

async fn run<K: KeyLookup>(
    handle: Weak<FeedHandle>,
    keys: K,
    fetcher: Arc<Fetcher>,
    settings: PollSettings,
) {
    let interval = settings.interval.max(Duration::from_millis(100));
    loop {
        let started = Instant::now();
        let Some(h) = handle.upgrade() else { return };
        let held = h.current().map(|s| s.version);
        let result = h.refresh_once(&keys, &fetcher, &settings, true).await;
        if let Err(e) = &result {
            h.failed(e);
        }
        drop(h);
        // A new version, or a long poll that waited, needs no pause; an answer that came at
        // once without news (an STS without long poll, or an error) waits out the interval.
        let news = matches!(result, Ok(v) if Some(v) != held);
        let waited = result.is_ok() && started.elapsed() >= interval;
        if !news && !waited {
            let rest = interval.saturating_sub(started.elapsed());
            tokio::time::sleep(rest.max(Duration::from_millis(50))).await;
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
