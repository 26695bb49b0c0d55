//! One request's context as it moves through the pipeline: correlation id, trace context, the
//! route, the validated identity, the decision so far — and the audit event it becomes.

mod line;

pub use line::EventLine;

use crate::audit::{DecisionPart, Event};
use crate::config::model::Route;
use crate::identity::Identity;
use crate::jwt::Verified;
use crate::rules::{Decision, RequestInfo, RuleKind, SourceInfo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
    pub sampled: bool,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Continues a valid inbound `traceparent`, else starts a new trace.
    pub fn from_headers(headers: &http::HeaderMap) -> TraceContext {
        let parsed = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let tracestate = headers
            .get("tracestate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match parsed {
            Some((trace_id, sampled)) => TraceContext {
                trace_id,
                span_id: random_hex(8),
                sampled,
                tracestate,
            },
            None => TraceContext {
                trace_id: random_hex(16),
                span_id: random_hex(8),
                sampled: false,
                tracestate: None,
            },
        }
    }

    /// The `traceparent` sent upstream: this gateway span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

fn parse_traceparent(v: &str) -> Option<(String, bool)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
        return None;
    }
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if !hex(parts[1], 32) || !hex(parts[2], 16) || !hex(parts[3], 2) {
        return None;
    }
    if parts[1].bytes().all(|b| b == b'0') || parts[2].bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(parts[3], 16).ok()?;
    Some((parts[1].to_string(), flags & 1 == 1))
}

pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // One allocation: this runs twice per request (trace and span ids).
    let mut buf = [0u8; 32];
    let buf = &mut buf[..bytes.min(32)];
    rand::thread_rng().fill_bytes(buf);
    let mut out = String::with_capacity(buf.len() * 2);
    for b in buf.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// The first valid `x-correlation-id` / `x-request-id`, else a new UUIDv4.
pub fn correlation_id(headers: &http::HeaderMap) -> String {
    for name in ["x-correlation-id", "x-request-id"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok())
            && !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return v.to_string();
        }
    }
    // A UUIDv4 from the thread's generator: `Uuid::new_v4` asks the kernel for its bytes (a
    // `getrandom` system call per request, docs/performance.md §6.4).
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

#[derive(Clone)]
pub struct Exchange {
    pub start: Instant,
    pub correlation_id: String,
    pub trace: TraceContext,
    pub bind: u16,
    pub listener: Option<String>,
    pub route: Option<Arc<Route>>,
    pub source: SocketAddr,
    pub request: RequestInfo,
    pub source_info: SourceInfo,
    /// The validated token, with the identity derived from its claims.
    pub verified: Option<Arc<Verified>>,
    pub decision: DecisionPart,
}

impl Exchange {
    /// The validated token's identity, [`Identity::none`] without one (read in place: no copy
    /// per request).
    pub fn identity(&self) -> &Identity {
        static NONE: std::sync::LazyLock<Identity> = std::sync::LazyLock::new(Identity::none);
        self.verified.as_ref().map_or(&NONE, |v| &v.identity)
    }

    pub fn claims(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.verified.as_ref().map(|v| &v.claims)
    }

    pub fn record_decision(&mut self, stage: &'static str, d: &Decision) {
        self.decision = decision_part(stage, d);
    }

    pub fn route_id(&self) -> String {
        self.route
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default()
    }

    /// The audit event for this exchange as it stands: what is not the exchange's own (the
    /// decision so far is copied: a refusal rewrites it in the event).
    pub fn event(&self, kind: &'static str, status: u16) -> Event {
        let time = chrono::Utc::now();
        Event {
            time,
            event_id: crate::audit::new_event_id(time),
            kind,
            mcp: None,
            llm: None,
            decision: self.decision.clone(),
            upstream: None,
            status,
            latency_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            fields: serde_json::Map::new(),
        }
    }

    /// The whole audit line of `event`, this exchange's parts read in place.
    pub fn line<'a>(&'a self, event: &'a Event) -> EventLine<'a> {
        EventLine { ex: self, event }
    }
}

pub fn decision_part(stage: &'static str, d: &Decision) -> DecisionPart {
    DecisionPart {
        result: if d.allow { "allow" } else { "deny" },
        stage,
        rule_level: d.rule_index.map(|_| match d.level {
            crate::rules::Level::Route => "route",
            crate::rules::Level::Backend => "backend",
        }),
        rule_kind: d.rule_kind.map(|k| match k {
            RuleKind::Allow => "allow",
            RuleKind::Deny => "deny",
            RuleKind::Require => "require",
        }),
        rule_index: d.rule_index,
        rule: d.rule.clone(),
        reason: d.reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::correlation_id;

    #[test]
    fn a_request_without_a_correlation_id_gets_a_new_uuid_v4() {
        let id = correlation_id(&http::HeaderMap::new());
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id, parsed.hyphenated().to_string());
        assert_ne!(id, correlation_id(&http::HeaderMap::new()));
    }
}
