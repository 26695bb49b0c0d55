//! One client session (docs/gateway.md §9.2–§9.3): who owns it, the protocol version it
//! negotiated, one upstream session per target, and the list snapshots its cursors page through.

use super::sessions::{Principal, SessionTable, Tracked};
use crate::exchange::Exchange;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Protocol versions offered, newest first (the first is the default).
pub(super) const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The gateway's sessions, capped in all and per principal (`sessions`).
pub type Sessions = SessionTable<Session>;

/// (list kind, filtered items, taken at).
pub(super) type ListSnapshot = (String, Arc<Vec<Value>>, Instant);

pub struct Session {
    pub(super) principal: Principal,
    pub(super) route: String,
    pub(super) version: String,
    pub(super) targets: Vec<TargetSession>,
    pub(super) last_used: Mutex<Instant>,
    /// Filtered list snapshots for cursors: id → (kind, items, created).
    pub(super) lists: Mutex<HashMap<String, ListSnapshot>>,
}

impl Tracked for Session {
    fn principal(&self) -> &Principal {
        &self.principal
    }
    fn idle_for(&self) -> Duration {
        // A poisoned clock counts as idle for ever: the session expires.
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX)
    }
}

pub(super) struct TargetSession {
    pub(super) name: String,
    pub(super) state: Mutex<TargetState>,
    pub(super) next_id: AtomicU64,
}

#[derive(Clone, Default)]
pub(super) struct TargetState {
    pub(super) ready: bool,
    pub(super) upstream_session: Option<String>,
    pub(super) version: Option<String>,
    pub(super) capabilities: Value,
    pub(super) instructions: Option<String>,
    pub(super) failure: Option<String>,
    pub(super) attempted: Option<Instant>,
}

/// The principal a request speaks for (`sessions::Principal`).
pub(super) fn principal(ex: &Exchange) -> Principal {
    let c = ex.claims();
    let s = |k: &str| {
        c.and_then(|c| c.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let actor = if s("azp").is_empty() {
        s("appid")
    } else {
        s("azp")
    };
    Principal {
        issuer: s("iss"),
        subject: s("sub"),
        actor,
    }
}
