//! Parsing an ingest batch at the edge (docs/audit.md §4.1): the body into typed, bounded gateway
//! events of the caller's tenant. Nothing here touches the database.

use agentid_directory::trail::GatewayEvent;
use serde::Deserialize;
use serde_json::Value;

/// Events in one batch at most.
pub const MAX_BATCH: usize = 1000;
/// One event's JSON at most.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    #[error("The body must be a JSON object {{\"events\": [...]}}: {0}.")]
    Body(String),
    #[error("A batch holds at most {MAX_BATCH} events.")]
    TooMany,
    #[error("Event {index}: {why}.")]
    Event { index: usize, why: String },
}

/// A batch after parsing: the events to store and how many were refused for naming another tenant.
#[derive(Debug)]
pub struct Batch {
    pub received: usize,
    pub accepted: Vec<GatewayEvent>,
    pub rejected: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    events: Vec<Value>,
}

/// The fields of a gateway event (docs/gateway.md §11.1) the trail indexes; the rest is kept as sent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    event_id: String,
    time: String,
    kind: String,
    route: Option<String>,
    #[serde(default)]
    request: Option<RequestPart>,
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(default)]
    mcp: Option<Mcp>,
    decision: Decision,
    #[serde(default)]
    upstream: Option<Upstream>,
    status: Option<u16>,
}

#[derive(Deserialize)]
struct RequestPart {
    method: Option<String>,
    path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Identity {
    tenant: Option<String>,
    token_id: Option<String>,
    client_app_id: Option<String>,
    agent_id: Option<String>,
    blueprint: Option<String>,
    user_oid: Option<String>,
    user_upn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mcp {
    tool: Option<String>,
    exposed_name: Option<String>,
}

#[derive(Deserialize)]
struct Decision {
    result: String,
    stage: Option<String>,
    rule: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Upstream {
    status: Option<u16>,
}

/// Indexed text columns hold at most this many characters; the full text stays in the event.
const MAX_FIELD: usize = 1024;

fn cut(s: Option<String>) -> Option<String> {
    s.map(|s| match s.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => s[..i].to_string(),
        None => s,
    })
}

fn valid_event_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn parse_batch(body: &[u8], tenant: &str) -> Result<Batch, IngestError> {
    let b: Body = serde_json::from_slice(body).map_err(|e| IngestError::Body(e.to_string()))?;
    if b.events.len() > MAX_BATCH {
        return Err(IngestError::TooMany);
    }
    let received = b.events.len();
    let mut accepted = Vec::with_capacity(received);
    let mut rejected = 0;
    for (index, raw) in b.events.into_iter().enumerate() {
        let bad = |why: &str| IngestError::Event {
            index,
            why: why.to_string(),
        };
        let text = serde_json::to_string(&raw).map_err(|e| bad(&e.to_string()))?;
        if text.len() > MAX_EVENT_BYTES {
            return Err(bad("larger than 64 KiB"));
        }
        let e: Incoming = serde_json::from_value(raw).map_err(|e| bad(&e.to_string()))?;
        if !valid_event_id(&e.event_id) {
            return Err(bad(
                "eventId must be 1 to 64 characters of A-Z, a-z, 0-9, - and _",
            ));
        }
        let time = chrono::DateTime::parse_from_rfc3339(&e.time)
            .map_err(|_| bad("time must be an RFC 3339 time"))?
            .timestamp();
        if !["http", "llm", "mcp"].contains(&e.kind.as_str()) {
            return Err(bad("kind must be http, llm or mcp"));
        }
        if e.decision.result != "allow" && e.decision.result != "deny" {
            return Err(bad("decision.result must be allow or deny"));
        }
        let id = e.identity.unwrap_or_default();
        // A gateway writes only into its own tenant's trail.
        if id
            .tenant
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case(tenant))
        {
            rejected += 1;
            continue;
        }
        let (method, path) = e
            .request
            .map(|r| (r.method, r.path))
            .unwrap_or((None, None));
        let tool = e.mcp.and_then(|m| m.tool.or(m.exposed_name));
        accepted.push(GatewayEvent {
            tenant_id: tenant.to_string(),
            event_id: e.event_id,
            time,
            received_at: 0,
            gateway_client_id: String::new(),
            kind: e.kind,
            route: cut(e.route),
            token_id: cut(id.token_id),
            client_app_id: cut(id.client_app_id),
            agent_id: cut(id.agent_id),
            blueprint_id: cut(id.blueprint),
            user_id: cut(id.user_oid),
            user_upn: cut(id.user_upn),
            decision: e.decision.result,
            stage: cut(e.decision.stage),
            reason: cut(e.decision.reason),
            rule: cut(e.decision.rule),
            tool: cut(tool),
            method: cut(method),
            path: cut(path),
            status: e.status.map(i64::from),
            upstream_status: e.upstream.and_then(|u| u.status).map(i64::from),
            event: text,
        });
    }
    Ok(Batch {
        received,
        accepted,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = "5e7d8166-7876-4755-a1a4-b476d4a344f6";

    fn ev() -> Value {
        json!({"schema": "agentid.gateway.audit/v1", "time": "2026-03-02T10:15:04.123456Z",
            "eventId": "0192abc", "kind": "mcp", "route": "mcp",
            "request": {"method": "POST", "path": "/mcp", "sourceAddress": "127.0.0.1"},
            "identity": {"authenticated": true, "tenant": T, "tokenId": "uti1", "agentId": "a",
                "blueprint": "b", "userOid": "u", "userUpn": "x@y", "agentMode": "onBehalfOfUser"},
            "mcp": {"method": "tools/call", "tool": "whoami"},
            "decision": {"result": "allow", "stage": "mcpAuthorization", "rule": "true", "reason": "rule_matched"},
            "upstream": {"status": 200, "credential": "passthrough"}, "status": 200, "latencyMs": 1.0})
    }

    fn body(events: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "events": events })).unwrap()
    }

    #[test]
    fn a_gateway_event_parses_into_its_columns() {
        let b = parse_batch(&body(vec![ev()]), T).unwrap();
        assert_eq!((b.received, b.rejected), (1, 0));
        let e = &b.accepted[0];
        assert_eq!(e.token_id.as_deref(), Some("uti1"));
        assert_eq!(e.tool.as_deref(), Some("whoami"));
        assert_eq!(e.upstream_status, Some(200));
        assert_eq!(e.time, 1772446504);
        assert!(e.event.contains("\"latencyMs\""), "kept as sent");
    }

    #[test]
    fn another_tenants_event_is_rejected_not_stored() {
        let mut other = ev();
        other["identity"]["tenant"] = json!("00000000-0000-0000-0000-000000000001");
        let b = parse_batch(&body(vec![ev(), other]), T).unwrap();
        assert_eq!((b.received, b.accepted.len(), b.rejected), (2, 1, 1));
    }

    #[test]
    fn hostile_batches_are_refused() {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut e = ev();
            f(&mut e);
            body(vec![e])
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not json", b"{".to_vec()),
            ("array", b"[]".to_vec()),
            ("unknown key", br#"{"events": [], "x": 1}"#.to_vec()),
            ("events not array", br#"{"events": {}}"#.to_vec()),
            ("too many", body(vec![json!({}); MAX_BATCH + 1])),
            (
                "no eventId",
                with(&|e| {
                    e.as_object_mut().unwrap().remove("eventId");
                }),
            ),
            (
                "bad eventId",
                with(&|e| e["eventId"] = json!("a b<script>")),
            ),
            (
                "long eventId",
                with(&|e| e["eventId"] = json!("a".repeat(65))),
            ),
            ("bad time", with(&|e| e["time"] = json!("yesterday"))),
            ("bad kind", with(&|e| e["kind"] = json!("ftp"))),
            (
                "bad decision",
                with(&|e| e["decision"]["result"] = json!("maybe")),
            ),
            (
                "decision missing",
                with(&|e| {
                    e.as_object_mut().unwrap().remove("decision");
                }),
            ),
            ("status not number", with(&|e| e["status"] = json!("200"))),
            (
                "huge event",
                with(&|e| e["fields"] = json!({"x": "y".repeat(70_000)})),
            ),
            ("event not object", body(vec![json!("x")])),
        ];
        for (name, b) in cases {
            assert!(parse_batch(&b, T).is_err(), "{name} accepted");
        }
    }

    #[test]
    fn long_fields_are_cut_for_the_index() {
        let mut e = ev();
        e["route"] = json!("r".repeat(5000));
        let b = parse_batch(&body(vec![e]), T).unwrap();
        assert_eq!(b.accepted[0].route.as_ref().unwrap().len(), MAX_FIELD);
    }
}
