//! The gateway's MCP session table, bounded twice: at most `maxMcpSessions` sessions in all and
//! at most `maxMcpSessionsPerPrincipal` per principal, so one caller cannot take every session
//! the gateway will hold. The per-principal counts live beside the sessions and change under the
//! same lock, so concurrent `initialize` requests cannot both slip under a cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who owns a session: the token's issuer, subject and actor (`azp`, else `appid`). Callers
/// without a token share the empty principal, so anonymous sessions have one cap between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    pub actor: String,
}

/// What the table needs to know about a session.
pub trait Tracked {
    fn principal(&self) -> &Principal;
    /// How long since the session was last used.
    fn idle_for(&self) -> Duration;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub total: usize,
    pub per_principal: usize,
}

/// Why a new session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionLimitError {
    #[error("this caller already holds {limit} MCP sessions, the most allowed per caller")]
    Principal { limit: usize },
    #[error("the gateway holds {limit} MCP sessions, the most it allows")]
    Gateway { limit: usize },
}

impl SessionLimitError {
    /// 429 for one caller over its share (it can end sessions), 503 for the gateway as a whole.
    pub fn status(&self) -> http::StatusCode {
        match self {
            SessionLimitError::Principal { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            SessionLimitError::Gateway { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The audit event's `decision.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionLimitError::Principal { .. } => "session_limit_principal",
            SessionLimitError::Gateway { .. } => "session_limit_gateway",
        }
    }

    pub fn limit(&self) -> usize {
        match self {
            SessionLimitError::Principal { limit } | SessionLimitError::Gateway { limit } => *limit,
        }
    }
}

pub struct SessionTable<S> {
    inner: Mutex<Inner<S>>,
}

struct Inner<S> {
    sessions: HashMap<String, Arc<S>>,
    per_principal: HashMap<Principal, usize>,
}

impl<S> Default for SessionTable<S> {
    fn default() -> Self {
        SessionTable {
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                per_principal: HashMap::new(),
            }),
        }
    }
}

impl<S> Inner<S> {
    fn check(&self, principal: &Principal, limits: SessionLimits) -> Result<(), SessionLimitError> {
        if self.per_principal.get(principal).copied().unwrap_or(0) >= limits.per_principal {
            return Err(SessionLimitError::Principal {
                limit: limits.per_principal,
            });
        }
        if self.sessions.len() >= limits.total {
            return Err(SessionLimitError::Gateway {
                limit: limits.total,
            });
        }
        Ok(())
    }

    fn forget(&mut self, principal: &Principal) {
        if let Some(n) = self.per_principal.get_mut(principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_principal.remove(principal);
            }
        }
    }
}

impl<S: Tracked> SessionTable<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<S>> {
        self.lock().sessions.get(id).cloned()
    }

    /// Whether a session for `principal` would be admitted now (checked again on insert).
    pub fn admits(
        &self,
        principal: &Principal,
        limits: SessionLimits,
    ) -> Result<(), SessionLimitError> {
        self.lock().check(principal, limits)
    }

    /// Adds a session unless a cap is reached.
    pub fn insert(
        &self,
        id: String,
        session: Arc<S>,
        limits: SessionLimits,
    ) -> Result<(), SessionLimitError> {
        let mut inner = self.lock();
        inner.check(session.principal(), limits)?;
        *inner
            .per_principal
            .entry(session.principal().clone())
            .or_default() += 1;
        if let Some(replaced) = inner.sessions.insert(id, session) {
            inner.forget(replaced.principal());
        }
        Ok(())
    }

    pub fn remove(&self, id: &str) -> Option<Arc<S>> {
        let mut inner = self.lock();
        let removed = inner.sessions.remove(id)?;
        inner.forget(removed.principal());
        Some(removed)
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions `principal` holds.
    pub fn count_for(&self, principal: &Principal) -> usize {
        self.lock()
            .per_principal
            .get(principal)
            .copied()
            .unwrap_or(0)
    }

    /// Drops sessions idle longer than `ttl`.
    pub fn expire(&self, ttl: Duration) {
        let mut inner = self.lock();
        let expired: Vec<String> = inner
            .sessions
            .iter()
            .filter(|(_, s)| s.idle_for() >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(s) = inner.sessions.remove(&id) {
                inner.forget(s.principal());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S(Principal, Duration);
    impl Tracked for S {
        fn principal(&self) -> &Principal {
            &self.0
        }
        fn idle_for(&self) -> Duration {
            self.1
        }
    }

    fn who(sub: &str) -> Principal {
        Principal {
            issuer: "iss".into(),
            subject: sub.into(),
            actor: "app".into(),
        }
    }

    #[test]
    fn caps_per_principal_and_in_all() {
        let limits = SessionLimits {
            total: 3,
            per_principal: 2,
        };
        let t = SessionTable::default();
        let s = |p: &str| Arc::new(S(who(p), Duration::ZERO));
        t.insert("a1".into(), s("a"), limits).unwrap();
        t.insert("a2".into(), s("a"), limits).unwrap();
        assert_eq!(
            t.insert("a3".into(), s("a"), limits),
            Err(SessionLimitError::Principal { limit: 2 })
        );
        t.insert("b1".into(), s("b"), limits).unwrap();
        assert_eq!(
            t.insert("c1".into(), s("c"), limits),
            Err(SessionLimitError::Gateway { limit: 3 })
        );
        t.remove("a1");
        assert_eq!(t.count_for(&who("a")), 1);
        t.insert("a3".into(), s("a"), limits).unwrap();
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn expiry_releases_the_principal_share() {
        let limits = SessionLimits {
            total: 10,
            per_principal: 1,
        };
        let t = SessionTable::default();
        t.insert(
            "old".into(),
            Arc::new(S(who("a"), Duration::from_secs(600))),
            limits,
        )
        .unwrap();
        t.expire(Duration::from_secs(60));
        assert!(t.is_empty());
        assert_eq!(t.count_for(&who("a")), 0);
        t.insert("new".into(), Arc::new(S(who("a"), Duration::ZERO)), limits)
            .unwrap();
    }
}
