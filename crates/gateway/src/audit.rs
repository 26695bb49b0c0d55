//! Audit events (docs/gateway.md §11): one JSON event per request and per MCP operation, answering
//! "which agent did this, and who authorized it". Each event is serialised once; the same line goes
//! through a bounded queue to stdout, an optional rotating file and the spool shipped to the STS
//! (docs/audit.md §6), and the newest lines are kept in memory for `GET /audit/events`.

mod file;
pub mod ship;
pub mod spool;

use crate::config::model::AuditSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One serialised event, shared by every sink.
pub type Line = Arc<String>;

/// What the writer thread receives: a line, and whether stdout and the file take it (the spool
/// takes every line: the trail keeps allow events the log filter hides); or a flush request,
/// answered once everything queued before it is written.
enum Queued {
    Line { line: Line, write: bool },
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The `schema` of every event line.
pub const SCHEMA: &str = "agentid.gateway.audit/v1";

/// What a backend adds to its exchange's audit event. The rest of the line — ids, route,
/// request, identity — is read from the exchange while the line is serialised
/// (`exchange::EventLine`), not copied into a dozen owned strings per request
/// (docs/performance.md §6.4).
#[derive(Debug, Clone)]
pub struct Event {
    pub time: chrono::DateTime<chrono::Utc>,
    /// A UUIDv7: event ids sort by time.
    pub event_id: uuid::Uuid,
    pub kind: &'static str,
    pub mcp: Option<McpPart>,
    pub llm: Option<LlmPart>,
    pub decision: DecisionPart,
    pub upstream: Option<UpstreamPart>,
    pub status: u16,
    pub latency_ms: f64,
    pub fields: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct McpPart {
    pub method: String,
    pub session_id: Option<String>,
    pub target: Option<String>,
    pub tool: Option<String>,
    pub exposed_name: Option<String>,
    pub prompt: Option<String>,
    pub resource: Option<String>,
    pub items_returned: Option<usize>,
    pub items_filtered: Option<usize>,
    pub unavailable_targets: Vec<String>,
    pub error: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LlmPart {
    pub provider: String,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub deployment: Option<String>,
    pub streaming: bool,
    pub route_type: &'static str,
    pub usage: Option<Usage>,
    pub time_to_first_token_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
    pub cached_input: Option<u64>,
    pub reasoning: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionPart {
    pub result: &'static str,
    pub stage: &'static str,
    pub rule_level: Option<&'static str>,
    pub rule_kind: Option<&'static str>,
    pub rule_index: Option<usize>,
    pub rule: Option<String>,
    pub reason: String,
}

impl Default for DecisionPart {
    fn default() -> Self {
        DecisionPart {
            result: "allow",
            stage: "none",
            rule_level: None,
            rule_kind: None,
            rule_index: None,
            rule: None,
            reason: "no_rules".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamPart {
    pub target: Option<String>,
    pub status: Option<u16>,
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
    pub credential: &'static str,
}

/// Where events go. Writes never block a request.
pub struct AuditLog {
    ring: Mutex<VecDeque<Line>>,
    retain: usize,
    queue: Option<mpsc::Sender<Queued>>,
    ships: bool,
    dropped: AtomicU64,
    last_drop_warning: Mutex<Option<std::time::Instant>>,
    shipper: Option<ship::Shipper>,
}

impl AuditLog {
    pub fn new(settings: &AuditSettings, clients: &crate::upstream::Clients) -> AuditLog {
        let shipper = settings.ship.as_ref().and_then(|cfg| {
            match ship::Shipper::start(cfg.clone(), clients) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!("audit shipping is off: {e}");
                    None
                }
            }
        });
        let ships = shipper.is_some();
        let queue = if settings.stdout || settings.file.is_some() || ships {
            let (tx, rx) = mpsc::channel::<Queued>(settings.queue_size);
            let sinks = Sinks {
                stdout: settings.stdout,
                file: settings.file.clone().map(file::RotatingFile::new),
                spool: shipper.as_ref().map(|s| s.spool()),
            };
            // A thread of its own: file writes and the spool's fsync never hold a runtime worker.
            let spawned = std::thread::Builder::new()
                .name("agentid-audit".into())
                .spawn(move || write_loop(rx, sinks));
            if let Err(e) = spawned {
                tracing::error!("cannot start the audit writer: {e}");
            }
            Some(tx)
        } else {
            None
        };
        AuditLog {
            ring: Mutex::new(VecDeque::new()),
            retain: settings.retain,
            queue,
            ships,
            dropped: AtomicU64::new(0),
            last_drop_warning: Mutex::new(None),
            shipper,
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The shipper, when `agentid.audit.ship` is configured.
    pub fn shipper(&self) -> Option<&ship::Shipper> {
        self.shipper.as_ref()
    }

    /// Records an event (its whole line, `exchange::EventLine`). `write` is false for allow
    /// events the log filter suppresses (they still go to the in-memory ring and the spool).
    pub fn record(&self, event: &impl Serialize, write: bool) {
        let queued = (write || self.ships) && self.queue.is_some();
        if !queued && self.retain == 0 {
            return;
        }
        // Sized for a typical event (0.8–1.5 KiB) so serialising does not grow it step by step.
        let mut buf = Vec::with_capacity(1536);
        if let Err(e) = serde_json::to_writer(&mut buf, event) {
            tracing::error!("audit event not serializable: {e}");
            return;
        }
        let line: Line = match String::from_utf8(buf) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::error!("audit event not serializable: {e}");
                return;
            }
        };
        if queued && let Some(queue) = &self.queue {
            let item = Queued::Line {
                line: line.clone(),
                write,
            };
            if queue.try_send(item).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let mut last = self
                    .last_drop_warning
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if last.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                    *last = Some(std::time::Instant::now());
                    tracing::warn!("audit queue full: events are being dropped");
                }
            }
        }
        if self.retain > 0 {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() >= self.retain {
                ring.pop_front();
            }
            ring.push_back(line);
        }
    }

    /// Waits (at most `limit`) until every event recorded so far is written to its sinks and,
    /// with shipping, fsynced in the spool: a graceful stop loses nothing (docs/audit.md §6.3).
    pub async fn flush(&self, limit: std::time::Duration) {
        let Some(queue) = &self.queue else { return };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = tokio::time::timeout(limit, queue.send(Queued::Flush(tx))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }

    /// Newest first, filtered: the matching lines as they were written.
    pub fn query(&self, q: &Query) -> (Vec<Line>, bool) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut truncated = false;
        for line in ring.iter().rev() {
            let Ok(view) = serde_json::from_str::<View>(line) else {
                continue;
            };
            if !q.matches(&view) {
                continue;
            }
            if out.len() == q.limit {
                truncated = true;
                break;
            }
            out.push(line.clone());
        }
        (out, truncated)
    }

    /// `{"events": [...], "truncated": bool}` from the lines, without parsing them again.
    pub fn query_json(&self, q: &Query) -> Vec<u8> {
        let (lines, truncated) = self.query(q);
        let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 32);
        out.extend_from_slice(b"{\"events\":[");
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(l.as_bytes());
        }
        out.extend_from_slice(format!("],\"truncated\":{truncated}}}").as_bytes());
        out
    }
}

struct Sinks {
    stdout: bool,
    file: Option<file::RotatingFile>,
    spool: Option<Arc<spool::Spool>>,
}

/// Lines taken from the queue per batch. Each sink takes a batch in one `write` (the spool adds
/// one fsync): the per-event system call and its wake-up were the audit's largest cost
/// (docs/performance.md §6).
const WRITE_BATCH: usize = 512;

/// After a batch smaller than [`WRITE_BATCH`] the writer waits this long before draining again,
/// so that under load events gather into batches instead of waking the writer one by one. Only
/// the writer waits, never a request; the queue (65,536 events by default) holds far more than a
/// pause's worth of events, and `flush` still answers once everything before it is written.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

fn write_loop(mut rx: mpsc::Receiver<Queued>, mut sinks: Sinks) {
    let mut batch: Vec<(Line, bool)> = Vec::with_capacity(WRITE_BATCH);
    let mut flushes = Vec::new();
    // Reused across batches: the lines of one batch, newline-framed, for stdout and the file
    // (the lines the log filter keeps) and for the spool (every line).
    let mut written: Vec<u8> = Vec::new();
    let mut spooled: Vec<u8> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(q) = next.take() {
            match q {
                Queued::Line { line, write } => batch.push((line, write)),
                Queued::Flush(ack) => flushes.push(ack),
            }
            if batch.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let full = batch.len() >= WRITE_BATCH;
        if sinks.stdout {
            written.clear();
            for (line, _) in batch.iter().filter(|(_, w)| *w) {
                written.extend_from_slice(line.as_bytes());
                written.push(b'\n');
            }
            if !written.is_empty() {
                let _ = std::io::stdout().lock().write_all(&written);
            }
        }
        if let Some(f) = sinks.file.as_mut() {
            let lines = batch.iter().filter(|(_, w)| *w).map(|(l, _)| l.as_str());
            if let Err(e) = f.write_lines(lines, &mut written) {
                tracing::error!("audit file write failed: {e}");
            }
        }
        if let Some(spool) = &sinks.spool {
            spooled.clear();
            for (line, _) in &batch {
                spooled.extend_from_slice(line.as_bytes());
                spooled.push(b'\n');
            }
            if let Err(e) = spool.append_framed(&spooled) {
                tracing::error!("audit spool write failed: {e}");
            }
        }
        batch.clear();
        for ack in flushes.drain(..) {
            let _ = ack.send(());
        }
        // Keep the buffers of a burst from staying allocated for the process's life.
        for buf in [&mut written, &mut spooled] {
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
        }
        if !full {
            std::thread::sleep(GATHER);
        }
    }
}

/// The fields of a written event `GET /audit/events` filters on, read back from its line.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct View<'a> {
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    correlation_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    route: Option<String>,
    identity: ViewIdentity,
    mcp: Option<ViewMcp>,
    llm: Option<ViewLlm>,
    decision: ViewDecision,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewIdentity {
    agent_id: Option<String>,
    user_oid: Option<String>,
    user_upn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewMcp {
    tool: Option<String>,
    exposed_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewLlm {
    request_model: Option<String>,
    response_model: Option<String>,
}

#[derive(Deserialize)]
struct ViewDecision {
    result: String,
}

/// `GET /audit/events` filters.
#[derive(Debug, Default)]
pub struct Query {
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub agent: Option<String>,
    pub user: Option<String>,
    pub route: Option<String>,
    pub kind: Option<String>,
    pub decision: Option<String>,
    pub tool: Option<String>,
    pub model: Option<String>,
    pub correlation_id: Option<String>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("bad query parameter {name}: {message}")]
pub struct QueryError {
    pub name: String,
    pub message: String,
}

impl Query {
    pub fn parse(query: &str) -> Result<Query, QueryError> {
        let mut q = Query {
            limit: 100,
            ..Default::default()
        };
        let bad = |name: &str, message: &str| QueryError {
            name: name.into(),
            message: message.into(),
        };
        for (k, v) in form_urlencoded_pairs(query) {
            match k.as_str() {
                "since" => {
                    q.since =
                        Some(time_arg(&v).ok_or_else(|| {
                            bad("since", "expected RFC 3339 or a duration like 15m")
                        })?)
                }
                "until" => {
                    q.until =
                        Some(time_arg(&v).ok_or_else(|| {
                            bad("until", "expected RFC 3339 or a duration like 15m")
                        })?)
                }
                "agent" => q.agent = Some(v),
                "user" => q.user = Some(v),
                "route" => q.route = Some(v),
                "kind" => {
                    if !["http", "llm", "mcp"].contains(&v.as_str()) {
                        return Err(bad("kind", "expected http, llm or mcp"));
                    }
                    q.kind = Some(v)
                }
                "decision" => {
                    if v != "allow" && v != "deny" {
                        return Err(bad("decision", "expected allow or deny"));
                    }
                    q.decision = Some(v)
                }
                "tool" => q.tool = Some(v),
                "model" => q.model = Some(v),
                "correlationId" => q.correlation_id = Some(v),
                "limit" => {
                    let n: usize = v.parse().map_err(|_| bad("limit", "expected 1..1000"))?;
                    if n == 0 || n > 1000 {
                        return Err(bad("limit", "expected 1..1000"));
                    }
                    q.limit = n;
                }
                other => return Err(bad(other, "unknown parameter")),
            }
        }
        Ok(q)
    }

    fn matches(&self, e: &View) -> bool {
        let time = chrono::DateTime::parse_from_rfc3339(&e.time)
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok();
        if let (Some(since), Some(t)) = (self.since, time)
            && t < since
        {
            return false;
        }
        if let (Some(until), Some(t)) = (self.until, time)
            && t > until
        {
            return false;
        }
        if let Some(a) = &self.agent
            && e.identity.agent_id.as_deref() != Some(a.as_str())
        {
            return false;
        }
        if let Some(u) = &self.user {
            let oid = e
                .identity
                .user_oid
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(u));
            let upn = e
                .identity
                .user_upn
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(u));
            if !oid && !upn {
                return false;
            }
        }
        if let Some(r) = &self.route
            && e.route.as_deref() != Some(r.as_str())
        {
            return false;
        }
        if let Some(k) = &self.kind
            && e.kind != k.as_str()
        {
            return false;
        }
        if let Some(d) = &self.decision
            && e.decision.result != *d
        {
            return false;
        }
        if let Some(t) = &self.tool
            && e.mcp.as_ref().and_then(|m| m.tool.as_deref()) != Some(t.as_str())
            && e.mcp.as_ref().and_then(|m| m.exposed_name.as_deref()) != Some(t.as_str())
        {
            return false;
        }
        if let Some(m) = &self.model {
            let llm = e.llm.as_ref();
            let hit = llm.is_some_and(|l| {
                l.request_model.as_deref() == Some(m.as_str())
                    || l.response_model.as_deref() == Some(m.as_str())
            });
            if !hit {
                return false;
            }
        }
        if let Some(c) = &self.correlation_id
            && e.correlation_id != c.as_str()
        {
            return false;
        }
        true
    }
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn time_arg(v: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let d = crate::config::duration::parse(v).ok()?;
    Some(chrono::Utc::now() - chrono::Duration::from_std(d).ok()?)
}

pub fn now_rfc3339() -> String {
    rfc3339(chrono::Utc::now())
}

/// The events' time format: RFC 3339 in UTC with microseconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A new event id: a UUIDv7 (ids sort by time, and the ids made on one thread increase), its
/// random bits from the thread's generator. `Uuid::now_v7` asks the kernel for them (a
/// `getrandom` system call per event, docs/performance.md §6.4).
pub fn new_event_id(time: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
    thread_local! {
        static LAST: std::cell::Cell<u128> = const { std::cell::Cell::new(0) };
    }
    let millis = u64::try_from(time.timestamp_millis()).unwrap_or(0);
    let fresh = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
    LAST.with(|last| {
        let id = if fresh.as_u128() > last.get() {
            fresh
        } else {
            // Within the same millisecond as a larger id: one past it, still a UUIDv7.
            uuid::Builder::from_u128(last.get().wrapping_add(1))
                .with_variant(uuid::Variant::RFC4122)
                .with_version(uuid::Version::SortRand)
                .into_uuid()
        };
        last.set(id.as_u128());
        id
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuid_v7_and_increase_within_a_millisecond() {
        let t = chrono::Utc::now();
        let ids: Vec<uuid::Uuid> = (0..1000).map(|_| new_event_id(t)).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
        }
        for id in &ids {
            assert_eq!(id.get_version(), Some(uuid::Version::SortRand));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, _) = id.get_timestamp().expect("a v7 timestamp").to_unix();
            assert_eq!(i64::try_from(secs).unwrap(), t.timestamp());
        }
    }
}
