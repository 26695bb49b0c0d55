//! The one key cache: signing keys from a JWKS URL, OIDC discovery, a file or an inline
//! document, kept fresh by a [`RefreshPolicy`]:
//!
//! - keys older than `max_age` are fetched again, by a background task (`background: true`,
//!   started when the cache is created inside a tokio runtime and stopped when the last handle
//!   is dropped) or on the next lookup;
//! - a `kid` the current set lacks triggers one refetch at most every `unknown_kid_floor`;
//! - while no keys could ever be loaded, lookups retry at most every `retry_floor`;
//! - fetches are single-flight: concurrent lookups wait for one fetch, which runs in its own
//!   task so that a caller giving up never cancels it for the others;
//! - a failed refresh keeps the last good set.
//!
//! Sizes are capped by the [`FetchPolicy`] (documents) and [`super::key::MAX_KEYS`] (keys);
//! the number of caches keyed by request data is capped by [`KeyCaches`].

use super::fetch::{Document, FetchError, FetchPolicy, Fetcher};
use super::key::{KeySet, KeySetError};
use super::verifier::{KeyLookup, KeyMatch, VerifyError};
use arc_swap::ArcSwapOption;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL.
    Url(String),
    /// OpenID Connect discovery: the metadata document's `jwks_uri`.
    Discovery(Discovery),
    /// A JWKS file, read at creation and by [`KeyCache::reload`].
    File(PathBuf),
    /// The JWKS document itself.
    Inline(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The metadata document (`…/.well-known/openid-configuration`).
    pub metadata_url: String,
    /// The document's `issuer` must be exactly this.
    pub expected_issuer: Option<String>,
    /// A second metadata document whose `issuer` is also vouched for (Entra publishes its v1
    /// issuer in `{tenant}/.well-known/openid-configuration`); optional: failures are ignored.
    pub more_issuers_from: Option<String>,
    /// Replaces `{tenantid}` in discovered issuers (Entra's multi-tenant documents).
    pub tenant: Option<String>,
}

impl Discovery {
    /// Discovery of `issuer` at `{issuer}/.well-known/openid-configuration`, which must name
    /// that issuer.
    pub fn of_issuer(issuer: &str) -> Discovery {
        Discovery {
            metadata_url: format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            expected_issuer: Some(issuer.to_string()),
            more_issuers_from: None,
            tenant: None,
        }
    }
}

/// How keys are kept fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPolicy {
    pub max_age: Duration,
    pub unknown_kid_floor: Duration,
    pub retry_floor: Duration,
    /// Refresh in a background task every `max_age` (instead of on lookup).
    pub background: bool,
    /// Keys without `kid` are skipped (tokens must then name their key).
    pub require_kid: bool,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            max_age: Duration::from_secs(3600),
            unknown_kid_floor: Duration::from_secs(30),
            retry_floor: Duration::from_secs(5),
            background: false,
            require_kid: false,
        }
    }
}

/// What caused a fetch (the gateway's `jwks_refreshes_total{trigger}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Interval,
    UnknownKid,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Startup, Trigger::Interval, Trigger::UnknownKid];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Interval => "interval",
            Trigger::UnknownKid => "unknown_kid",
        }
    }
}

/// Fetch counts of one cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCount {
    pub trigger: &'static str,
    /// `ok` | `error`.
    pub result: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("fetching {url} failed: {error}")]
    Fetch { url: String, error: FetchError },
    #[error("{path} cannot be read: {error}")]
    File { path: String, error: String },
    #[error("the key set from {name} is invalid: {error}")]
    KeySet { name: String, error: KeySetError },
    #[error("the discovery document of '{expected}' names issuer '{found}'")]
    IssuerMismatch { expected: String, found: String },
    #[error("the discovery document {0} has no jwks_uri")]
    NoJwksUri(String),
}

struct Inner {
    source: KeySource,
    policy: RefreshPolicy,
    fetch_policy: FetchPolicy,
    fetcher: Arc<Fetcher>,
    keys: ArcSwapOption<KeySet>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Completed fetch attempts: lets a waiter see that someone else fetched meanwhile.
    generation: AtomicU64,
    state: Mutex<State>,
    /// [trigger][ok=0 / error=1]
    refreshes: [[AtomicU64; 2]; 3],
}

#[derive(Default)]
struct State {
    last_started: Option<Instant>,
    loaded_at: Option<Instant>,
    /// The key set URL last used (discovery's `jwks_uri`), for error messages.
    jwks_url: Option<String>,
    last_error: Option<String>,
}

/// A handle on one key source's cache. Clones share the cache.
#[derive(Clone)]
pub struct KeyCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("source", &self.name())
            .field("keys", &self.key_count())
            .finish()
    }
}

impl KeyCache {
    /// A cache of `source`. File and inline sources are read now (an error is returned);
    /// URL and discovery sources are fetched in the background (policy `background`, inside a
    /// tokio runtime) or on the first lookup.
    pub fn new(
        source: KeySource,
        policy: RefreshPolicy,
        fetch_policy: FetchPolicy,
        fetcher: Arc<Fetcher>,
    ) -> Result<KeyCache, SourceError> {
        let is_static = matches!(source, KeySource::File(_) | KeySource::Inline(_));
        let cache = KeyCache::build(source, policy, fetch_policy, fetcher);
        if is_static {
            cache.reload()?;
        }
        Ok(cache)
    }

    /// A cache of keys fetched from `url` (never fails: nothing is read yet).
    pub fn url(
        url: &str,
        policy: RefreshPolicy,
        fetch_policy: FetchPolicy,
        fetcher: Arc<Fetcher>,
    ) -> KeyCache {
        KeyCache::build(
            KeySource::Url(url.to_string()),
            policy,
            fetch_policy,
            fetcher,
        )
    }

    /// A cache of keys found by OpenID Connect discovery (never fails: nothing is read yet).
    pub fn discovery(
        discovery: Discovery,
        policy: RefreshPolicy,
        fetch_policy: FetchPolicy,
        fetcher: Arc<Fetcher>,
    ) -> KeyCache {
        KeyCache::build(
            KeySource::Discovery(discovery),
            policy,
            fetch_policy,
            fetcher,
        )
    }

    fn build(
        source: KeySource,
        policy: RefreshPolicy,
        fetch_policy: FetchPolicy,
        fetcher: Arc<Fetcher>,
    ) -> KeyCache {
        let cache = KeyCache {
            inner: Arc::new(Inner {
                source,
                policy,
                fetch_policy,
                fetcher,
                keys: ArcSwapOption::empty(),
                fetch_lock: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                refreshes: Default::default(),
            }),
        };
        let remote = matches!(
            cache.inner.source,
            KeySource::Url(_) | KeySource::Discovery(_)
        );
        if remote
            && cache.inner.policy.background
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(refresh_loop(
                Arc::downgrade(&cache.inner),
                cache.inner.policy.max_age,
            ));
        }
        cache
    }

    /// A cache holding `keys` (a stored key set); never fetches.
    pub fn fixed(keys: KeySet) -> KeyCache {
        let cache = KeyCache::build(
            KeySource::Inline(String::new()),
            RefreshPolicy::default(),
            FetchPolicy::default(),
            Fetcher::guarded(),
        );
        cache.inner.keys.store(Some(Arc::new(keys)));
        cache.state().loaded_at = Some(Instant::now());
        cache
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state()
    }

    /// The source as logs and metrics name it: the URL, the file path, or `inline`.
    pub fn name(&self) -> String {
        self.inner.name()
    }

    pub fn source(&self) -> &KeySource {
        &self.inner.source
    }

    /// Usable keys in the current set (0 when never loaded).
    pub fn key_count(&self) -> usize {
        self.inner
            .keys
            .load()
            .as_ref()
            .map(|s| s.len())
            .unwrap_or(0)
    }

    /// Whether the current set holds `kid` (no fetch).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.inner
            .keys
            .load()
            .as_ref()
            .is_some_and(|s| s.contains(kid))
    }

    pub fn refresh_counts(&self) -> Vec<RefreshCount> {
        let mut out = Vec::new();
        for t in Trigger::ALL {
            for (i, result) in ["ok", "error"].into_iter().enumerate() {
                out.push(RefreshCount {
                    trigger: t.as_str(),
                    result,
                    count: self.inner.refreshes[t as usize][i].load(Ordering::Relaxed),
                });
            }
        }
        out
    }

    /// Re-reads a file source (or re-parses an inline one); on error the previous keys stay.
    /// URL and discovery sources are fetched now.
    pub fn reload(&self) -> Result<(), SourceError> {
        let (bytes, name) = match &self.inner.source {
            KeySource::File(path) => (
                std::fs::read(path).map_err(|e| SourceError::File {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })?,
                path.display().to_string(),
            ),
            KeySource::Inline(doc) => (doc.as_bytes().to_vec(), "inline jwks".to_string()),
            KeySource::Url(_) | KeySource::Discovery(_) => return Ok(()),
        };
        if bytes.len() > self.inner.fetch_policy.max_bytes.max(1 << 20) {
            return Err(SourceError::KeySet {
                name,
                error: KeySetError::TooManyKeys,
            });
        }
        let set = KeySet::parse(&bytes, &name, self.inner.policy.require_kid)
            .map_err(|error| SourceError::KeySet { name, error })?;
        self.inner.keys.store(Some(Arc::new(set)));
        self.state().loaded_at = Some(Instant::now());
        Ok(())
    }

    /// Fetches now (startup), unless a fetch already ran; errors are logged and kept.
    pub async fn prefetch(&self) {
        let seen = self.inner.generation.load(Ordering::Acquire);
        if seen == 0 {
            Inner::refresh(self.inner.clone(), Trigger::Startup, seen, None).await;
        }
    }

    /// Keys for `kid` (every key when `None`), fetching as the policy allows.
    pub async fn keys(&self, kid: Option<&str>) -> Result<KeyMatch, VerifyError> {
        let inner = &self.inner;
        let current = inner.keys.load_full();
        let stale = !inner.policy.background
            && !matches!(inner.source, KeySource::File(_) | KeySource::Inline(_))
            && inner
                .state()
                .loaded_at
                .is_none_or(|t| t.elapsed() >= inner.policy.max_age);
        let known = current
            .as_ref()
            .is_some_and(|s| kid.is_none_or(|k| s.contains(k)));
        let fetchable = matches!(inner.source, KeySource::Url(_) | KeySource::Discovery(_));
        if fetchable && (stale || !known) {
            let (trigger, floor) = match (&current, stale) {
                (None, _) if !inner.policy.background => {
                    (Trigger::Startup, inner.policy.retry_floor)
                }
                (None, _) => (Trigger::UnknownKid, inner.policy.retry_floor),
                (Some(_), true) => (Trigger::Interval, inner.policy.retry_floor),
                (Some(_), false) => (Trigger::UnknownKid, inner.policy.unknown_kid_floor),
            };
            let seen = inner.generation.load(Ordering::Acquire);
            let in_flight = inner.fetch_lock.try_lock().is_err();
            if in_flight || inner.floor_passed(floor) {
                let task = Inner::refresh(inner.clone(), trigger, seen, Some(floor));
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        let _ =
                            tokio::time::timeout(inner.fetch_policy.timeout, rt.spawn(task)).await;
                    }
                    Err(_) => task.await,
                }
            }
        }
        match inner.keys.load_full() {
            None => {
                let state = inner.state();
                Err(VerifyError::KeysUnavailable {
                    source_url: state.jwks_url.clone().unwrap_or_else(|| inner.name()),
                    reason: state
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not loaded yet".into()),
                })
            }
            Some(set) => Ok(KeyMatch {
                keys: set.candidates(kid),
                issuers: set.issuers.clone(),
            }),
        }
    }

    /// The URL keys are (or would be) fetched from: discovery's `jwks_uri` once known.
    pub fn jwks_url(&self) -> String {
        self.state()
            .jwks_url
            .clone()
            .unwrap_or_else(|| self.inner.name())
    }
}

impl KeyLookup for KeyCache {
    async fn lookup(&self, kid: Option<&str>) -> Result<KeyMatch, VerifyError> {
        self.keys(kid).await
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name(&self) -> String {
        match &self.source {
            KeySource::Url(u) => u.clone(),
            KeySource::Discovery(d) => d.metadata_url.clone(),
            KeySource::File(p) => p.display().to_string(),
            KeySource::Inline(_) => "inline".into(),
        }
    }

    fn floor_passed(&self, floor: Duration) -> bool {
        self.state()
            .last_started
            .is_none_or(|t| t.elapsed() >= floor)
    }

    /// Fetches unless another fetch completed since `seen` (single flight) or, with a floor,
    /// one started less than `floor` ago.
    async fn refresh(self: Arc<Self>, trigger: Trigger, seen: u64, floor: Option<Duration>) {
        let _guard = self.fetch_lock.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        if let Some(floor) = floor
            && !self.floor_passed(floor)
        {
            return;
        }
        self.state().last_started = Some(Instant::now());
        let result = self.fetch().await;
        let ok = match result {
            Ok(set) => {
                tracing::info!(jwks = %self.name(), trigger = trigger.as_str(), keys = set.len(), "signing keys loaded");
                self.keys.store(Some(Arc::new(set)));
                let mut s = self.state();
                s.loaded_at = Some(Instant::now());
                s.last_error = None;
                0
            }
            Err(e) => {
                tracing::warn!(jwks = %self.name(), trigger = trigger.as_str(), error = %e, "signing keys could not be fetched; the last good set stays");
                self.state().last_error = Some(e.to_string());
                1
            }
        };
        self.refreshes[trigger as usize][ok].fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    async fn fetch(&self) -> Result<KeySet, SourceError> {
        let fetch_err = |url: &str, error| SourceError::Fetch {
            url: url.to_string(),
            error,
        };
        let (jwks_url, issuers) = match &self.source {
            KeySource::Url(u) => (u.clone(), Vec::new()),
            KeySource::Discovery(d) => {
                let doc = self
                    .fetcher
                    .get_json(&d.metadata_url, &self.fetch_policy)
                    .await
                    .map_err(|e| fetch_err(&d.metadata_url, e))?;
                let issuer = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
                if let Some(expected) = &d.expected_issuer
                    && issuer != expected
                {
                    return Err(SourceError::IssuerMismatch {
                        expected: expected.clone(),
                        found: issuer.chars().take(200).collect(),
                    });
                }
                let jwks_uri = doc
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| SourceError::NoJwksUri(d.metadata_url.clone()))?
                    .to_string();
                self.state().jwks_url = Some(jwks_uri.clone());
                let placeholder = |i: &str| match &d.tenant {
                    Some(t) => i.replace("{tenantid}", t),
                    None => i.to_string(),
                };
                let mut issuers = Vec::new();
                if !issuer.is_empty() {
                    issuers.push(placeholder(issuer));
                }
                if let Some(more) = &d.more_issuers_from
                    && let Ok(doc) = self.fetcher.get_json(more, &self.fetch_policy).await
                    && let Some(i) = doc.get("issuer").and_then(|v| v.as_str())
                {
                    issuers.push(placeholder(i));
                }
                (jwks_uri, issuers)
            }
            KeySource::File(_) | KeySource::Inline(_) => {
                return Err(SourceError::File {
                    path: self.name(),
                    error: "static sources are read, not fetched".into(),
                });
            }
        };
        let body = self
            .fetcher
            .get_bytes(&jwks_url, Document::KeySet, &self.fetch_policy)
            .await
            .map_err(|e| fetch_err(&jwks_url, e))?;
        let mut set =
            KeySet::parse(&body, &jwks_url, self.policy.require_kid).map_err(|error| {
                SourceError::KeySet {
                    name: jwks_url.clone(),
                    error,
                }
            })?;
        set.issuers = issuers;
        Ok(set)
    }
}

/// Background: the startup fetch, then one every `interval` while a handle exists.
async fn refresh_loop(inner: Weak<Inner>, interval: Duration) {
    let mut trigger = Trigger::Startup;
    loop {
        let Some(c) = inner.upgrade() else { return };
        let seen = c.generation.load(Ordering::Acquire);
        c.refresh(trigger, seen, None).await;
        trigger = Trigger::Interval;
        tokio::time::sleep(interval).await;
    }
}

/// Key caches keyed by something a request chose (the STS's federated issuers): at most
/// `max_entries`, each dropped after `idle` without use.
pub struct KeyCaches {
    caches: moka::future::Cache<String, KeyCache>,
}

impl KeyCaches {
    pub fn new(max_entries: u64, idle: Duration) -> KeyCaches {
        KeyCaches {
            caches: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// The cache under `key`, made by `make` when absent (or when `make`'s source differs from
    /// the cached one: a changed trust setting replaces the cache).
    pub async fn get(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<KeyCache, SourceError>,
        same: impl Fn(&KeyCache) -> bool,
    ) -> Result<KeyCache, SourceError> {
        if let Some(c) = self.caches.get(key).await
            && same(&c)
        {
            return Ok(c);
        }
        let c = make()?;
        self.caches.insert(key.to_string(), c.clone()).await;
        Ok(c)
    }

    pub fn len(&self) -> u64 {
        self.caches.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies pending evictions (tests read [`Self::len`] after it).
    pub async fn sync(&self) {
        self.caches.run_pending_tasks().await;
    }
}

/// A handle that does not keep a cache alive (its background refresh stops when the last
/// [`KeyCache`] is dropped).
#[derive(Clone)]
pub struct WeakKeyCache(Weak<Inner>);

impl WeakKeyCache {
    pub fn upgrade(&self) -> Option<KeyCache> {
        self.0.upgrade().map(|inner| KeyCache { inner })
    }

    pub fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl KeyCache {
    pub fn downgrade(&self) -> WeakKeyCache {
        WeakKeyCache(Arc::downgrade(&self.inner))
    }

    /// The fetch policy this cache was made with (to tell whether a trust setting changed).
    pub fn fetch_policy(&self) -> &FetchPolicy {
        &self.inner.fetch_policy
    }
}
