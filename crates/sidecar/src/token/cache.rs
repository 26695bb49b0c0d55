//! The token cache (docs/sidecar.md §9.5): in memory, keyed by every identity field, bounded with
//! least-recently-used eviction. Expiry math lives here; single flight lives in the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Everything that makes two tokens different.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub authority: Arc<str>,
    pub tenant: String,
    pub client_id: String,
    pub agent: String,
    /// Empty, `tc:<sha256 hex>`, `upn:<lower>` or `oid:<lower>`.
    pub user: String,
    /// De-duplicated, sorted ordinally, space-joined.
    pub scopes: String,
    pub leg: &'static str,
    pub fmi_path: String,
}

/// Scopes as they appear in a key.
pub fn scope_key(scopes: &[String]) -> String {
    let mut s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s.join(" ")
}

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: Arc<str>,
    pub expires_at: i64,
    pub acquired_at: i64,
    pub log_id: Arc<str>,
}

impl CachedToken {
    /// Reused while `now < expires_at − min(300 s, lifetime / 2)`.
    pub fn is_fresh(&self, now: i64) -> bool {
        let lifetime = (self.expires_at - self.acquired_at).max(0);
        now < self.expires_at - 300.min(lifetime / 2)
    }

    /// Good enough to serve during an outage: more than 60 s left.
    pub fn is_servable_stale(&self, now: i64) -> bool {
        now < self.expires_at - 60
    }
}

struct Slot {
    token: CachedToken,
    last_used: u64,
    /// After a stale token was served, no refresh is attempted before this time.
    hold_until: i64,
}

struct Inner {
    map: HashMap<CacheKey, Slot>,
    tick: u64,
}

pub struct TokenCache {
    inner: Mutex<Inner>,
    max: usize,
}

/// What a lookup found.
pub enum Lookup {
    Fresh(CachedToken),
    /// A stale token inside its 30 s hold: serve it without calling the authority.
    Held(CachedToken),
    Miss,
}

impl TokenCache {
    pub fn new(max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
            }),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lookup(&self, key: &CacheKey, now: i64) -> Lookup {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Some(slot) = inner.map.get_mut(key) else {
            return Lookup::Miss;
        };
        slot.last_used = tick;
        if slot.token.is_fresh(now) {
            Lookup::Fresh(slot.token.clone())
        } else if now < slot.hold_until && slot.token.is_servable_stale(now) {
            Lookup::Held(slot.token.clone())
        } else {
            Lookup::Miss
        }
    }

    /// The entry, whatever its age (for serving a stale token after a transient failure).
    pub fn peek(&self, key: &CacheKey) -> Option<CachedToken> {
        self.lock().map.get(key).map(|s| s.token.clone())
    }

    /// Stores a token; returns the number of entries afterwards.
    pub fn insert(&self, key: CacheKey, token: CachedToken) -> usize {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if !inner.map.contains_key(&key)
            && inner.map.len() >= self.max
            && let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            inner.map.remove(&oldest);
        }
        inner.map.insert(
            key,
            Slot {
                token,
                last_used: tick,
                hold_until: i64::MIN,
            },
        );
        inner.map.len()
    }

    pub fn hold(&self, key: &CacheKey, until: i64) {
        if let Some(s) = self.lock().map.get_mut(key) {
            s.hold_until = until;
        }
    }

    pub fn remove(&self, key: &CacheKey) -> usize {
        let mut inner = self.lock();
        inner.map.remove(key);
        inner.map.len()
    }

    /// Keeps the entries whose token `keep` accepts; returns the number dropped.
    pub fn retain(&self, keep: impl Fn(&CachedToken) -> bool) -> usize {
        let mut inner = self.lock();
        let before = inner.map.len();
        inner.map.retain(|_, s| keep(&s.token));
        before - inner.map.len()
    }

    /// Drops expired entries; returns the number left.
    pub fn sweep(&self, now: i64) -> usize {
        let mut inner = self.lock();
        inner.map.retain(|_, s| s.token.expires_at > now);
        inner.map.len()
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> CacheKey {
        CacheKey {
            authority: Arc::from("https://a/"),
            tenant: "t".into(),
            client_id: "c".into(),
            agent: String::new(),
            user: String::new(),
            scopes: n.into(),
            leg: "app",
            fmi_path: String::new(),
        }
    }

    fn tok(exp: i64) -> CachedToken {
        CachedToken {
            token: Arc::from("t"),
            expires_at: exp,
            acquired_at: exp - 3600,
            log_id: Arc::from("t"),
        }
    }

    #[test]
    fn reuse_window_and_lru() {
        let c = TokenCache::new(3);
        c.insert(key("a"), tok(10_000));
        assert!(matches!(
            c.lookup(&key("a"), 10_000 - 301),
            Lookup::Fresh(_)
        ));
        assert!(matches!(c.lookup(&key("a"), 10_000 - 300), Lookup::Miss));
        c.insert(key("b"), tok(10_000));
        c.insert(key("c"), tok(10_000));
        // Touch a, so b is the least recently used.
        c.lookup(&key("a"), 0);
        c.insert(key("d"), tok(10_000));
        assert_eq!(c.len(), 3);
        assert!(c.peek(&key("b")).is_none());
        assert!(c.peek(&key("a")).is_some());
        // A short-lived token is reused for half its lifetime.
        let short = CachedToken {
            token: Arc::from("s"),
            expires_at: 100,
            acquired_at: 0,
            log_id: Arc::from("s"),
        };
        assert!(short.is_fresh(49));
        assert!(!short.is_fresh(50));
        assert_eq!(scope_key(&["b".into(), "a".into(), "b".into()]), "a b");
    }
}
