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
    /// One of [`VERSIONS`].
    pub(super) version: &'static str,
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

/// What the gateway keeps of a target's session between requests: only what later requests
/// read (its `initialize` answer's capabilities and instructions are merged into the client's
/// answer and not kept; docs/performance.md §6.2). Cloned per upstream request: keep it small.
#[derive(Clone, Default)]
pub(super) struct TargetState {
    pub(super) ready: bool,
    pub(super) upstream_session: Option<Box<str>>,
    /// One of [`VERSIONS`].
    pub(super) version: Option<&'static str>,
    /// Which lists the target offers (its `tools`, `prompts`, `resources` capabilities).
    pub(super) offers: Offers,
    pub(super) failure: Option<String>,
    pub(super) attempted: Option<Instant>,
}

/// The list capabilities a target announced.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(super) struct Offers {
    pub(super) tools: bool,
    pub(super) prompts: bool,
    pub(super) resources: bool,
}

impl Offers {
    pub(super) fn from_capabilities(caps: &Value) -> Offers {
        Offers {
            tools: caps.get("tools").is_some(),
            prompts: caps.get("prompts").is_some(),
            resources: caps.get("resources").is_some(),
        }
    }
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
