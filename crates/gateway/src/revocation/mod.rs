//! The kill switch at the gateway (docs/gateway.md §19): one revocation-feed poller per issuer
//! (the shared `agentid_claims::revocation` client, verifying with the issuer's key cache that
//! `jwtAuth` already holds), and the check after JWT validation that refuses a token whose
//! agent, blueprint, user session or `uti` is revoked.
//!
//! When an issuer's feed has not been refreshed for the route's grace period, the route's
//! failure mode decides: `closed` refuses every token of that issuer (503), `open` accepts
//! them but still refuses what the last state held revokes.

pub mod metrics;

use crate::config::model::{FailureMode, Route, Settings, Snapshot};
use crate::jwt::Verified;
use agentid_claims::revocation::{self, FeedHandle, FeedStatus, Revoked};
use agentid_claims::verify::Fetcher;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a request was refused by the revocation check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationRefusal {
    #[error("token revoked")]
    Revoked(Revoked),
    /// The feed is older than the route's grace period and the route fails closed.
    #[error("the issuer's revocation feed is unavailable")]
    Unavailable,
}

impl RevocationRefusal {
    /// The audit decision reason and the JSON error's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            RevocationRefusal::Revoked(r) => r.reason(),
            RevocationRefusal::Unavailable => "revocation_unavailable",
        }
    }
}

struct Poller {
    /// The key source the poller verifies with (a reload that changes it restarts the poller).
    keys: String,
    handle: Arc<FeedHandle>,
}

/// The running pollers, by issuer. Read on every request without a lock.
pub struct Feeds {
    fetcher: Arc<Fetcher>,
    by_issuer: ArcSwap<HashMap<String, Arc<FeedHandle>>>,
    pollers: Mutex<HashMap<String, Poller>>,
}

impl Feeds {
    pub fn new(fetcher: Arc<Fetcher>) -> Feeds {
        Feeds {
            fetcher,
            by_issuer: ArcSwap::from_pointee(HashMap::new()),
            pollers: Mutex::new(HashMap::new()),
        }
    }

    /// Polls the feed of every issuer the snapshot checks, and stops the others. Outside a
    /// tokio runtime (`--validate-only`) nothing starts.
    pub fn sync(&self, snap: &Snapshot) {
        let Some(r) = &snap.settings.revocation else {
            self.by_issuer.store(Arc::new(HashMap::new()));
            self.lock().clear();
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut wanted = HashMap::new();
        let jwts = snap
            .binds
            .iter()
            .flat_map(|b| &b.listeners)
            .flat_map(|l| &l.routes)
            .filter_map(|route| route.policies.jwt.as_ref());
        for jwt in jwts {
            for (issuer, keys) in jwt.provider_keys() {
                let covered = r
                    .issuers
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|i| i == issuer));
                if covered {
                    wanted
                        .entry(issuer.to_string())
                        .or_insert_with(|| keys.clone());
                }
            }
        }
        let mut pollers = self.lock();
        pollers.retain(|issuer, p| wanted.get(issuer).is_some_and(|k| k.name() == p.keys));
        for (issuer, keys) in wanted {
            if pollers.contains_key(&issuer) {
                continue;
            }
            let name = keys.name();
            let handle = revocation::spawn(&issuer, keys, self.fetcher.clone(), r.poll.clone());
            pollers.insert(issuer, Poller { keys: name, handle });
        }
        let map = pollers
            .iter()
            .map(|(i, p)| (i.clone(), p.handle.clone()))
            .collect();
        self.by_issuer.store(Arc::new(map));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Poller>> {
        self.pollers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, issuer: &str) -> Option<Arc<FeedHandle>> {
        self.by_issuer.load().get(issuer).cloned()
    }

    /// Feed version and freshness per issuer, for the metrics.
    pub fn statuses(&self) -> Vec<FeedStatus> {
        let mut out: Vec<FeedStatus> = self.by_issuer.load().values().map(|h| h.status()).collect();
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        out
    }

    /// The check after JWT validation (docs/gateway.md §19.2).
    pub fn check(
        &self,
        settings: &Settings,
        route: &Route,
        v: &Verified,
    ) -> Result<(), RevocationRefusal> {
        let Some(r) = &settings.revocation else {
            return Ok(());
        };
        let covered = r
            .issuers
            .as_ref()
            .is_none_or(|list| list.iter().any(|i| i == &v.issuer));
        if !covered {
            return Ok(());
        }
        let policy = r.routes.get(&route.id).copied().unwrap_or(r.default);
        let feed = self.get(&v.issuer);
        let state = feed.as_ref().and_then(|f| f.current());
        if let Some(state) = &state
            && let Some(why) = state.check(&v.claims)
        {
            return Err(RevocationRefusal::Revoked(why));
        }
        let fresh = feed.as_ref().is_some_and(|f| f.staleness() <= policy.grace);
        if !fresh && policy.mode == FailureMode::Closed {
            return Err(RevocationRefusal::Unavailable);
        }
        Ok(())
    }
}
