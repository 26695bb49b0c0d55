//! The trail's HTTP API under `/agentid/v1` (docs/audit.md §4): batch ingest of gateway decision
//! events, the merged audit query, and chains. Routed by the Graph extensions router, so callers
//! are authenticated as for every Graph route.

use crate::graph::caller::Caller;
use crate::graph::odata::GraphError;
use crate::graph::reply::{GResult, Out, ok};
use crate::graph::request::Req;
use agentid_directory::audit::{AuditEvent, AuditQuery};
use agentid_directory::trail::{GatewayEvent, GatewayEventQuery, TrailEvent};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The application permission of Microsoft Graph a gateway needs to ship its events.
pub const WRITE_ROLE: &str = "AuditEvents.Write";

pub(crate) async fn ingest(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if c.delegated() || !c.has(&[], &[WRITE_ROLE]) {
        return Err(GraphError::denied());
    }
    let batch = super::ingest::parse_batch(&req.body, &c.tenant.id.to_string())
        .map_err(|e| GraphError::bad_request(e.to_string()))?;
    let now = chrono::Utc::now().timestamp();
    let gateway = c.client_app_id.to_string();
    let rows: Vec<GatewayEvent> = batch
        .accepted
        .into_iter()
        .map(|mut e| {
            e.received_at = now;
            e.gateway_client_id = gateway.clone();
            e
        })
        .collect();
    let stored = req.sts.store.insert_gateway_events(&rows).await?;
    ok(json!({
        "received": batch.received,
        "stored": stored,
        "duplicates": rows.len() as u64 - stored,
        "rejected": batch.rejected,
    }))
}

pub(crate) async fn chain(req: &Req<'_>, c: &Caller, uti: &str) -> GResult<Out> {
    if !(c.admin() || (!c.delegated() && c.has(&[], &["AuditLog.Read.All"]))) {
        return Err(GraphError::denied());
    }
    if uti.is_empty() || uti.len() > 128 {
        return Err(GraphError::bad_request("The token id is not valid."));
    }
    match agentid_directory::trail::chain(&req.sts.store, &c.tenant.id, uti).await? {
        Some(chain) => ok(serde_json::to_value(chain).map_err(GraphError::internal)?),
        None => Err(GraphError::not_found(uti)),
    }
}

/// Each source's position: the last item a previous page returned from it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    s: Option<(i64, String)>,
    g: Option<(i64, String)>,
}

fn parse_cursor(token: &str) -> GResult<Cursor> {
    let bad = || GraphError::bad_request("$skiptoken is not valid.");
    if token.len() > 512 {
        return Err(bad());
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

const STS_ONLY: [&str; 6] = [
    "clientId",
    "agentId",
    "userId",
    "result",
    "errorCode",
    "category",
];
const KNOWN: [&str; 9] = [
    "agent",
    "user",
    "blueprint",
    "decision",
    "since",
    "until",
    "source",
    "$top",
    "$skiptoken",
];

/// `GET /agentid/v1/auditEvents` (docs/audit.md §4.2): STS events and gateway decisions merged,
/// newest first, paged by a cursor per source.
pub(crate) async fn query(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if !c.read_audit() {
        return Err(GraphError::denied());
    }
    let q = &req.query;
    for k in q.keys() {
        if !KNOWN.contains(&k.as_str()) && !STS_ONLY.contains(&k.as_str()) {
            return Err(GraphError::bad_request(format!(
                "Query parameter '{k}' is not supported."
            )));
        }
    }
    let time = |k: &str| -> GResult<Option<i64>> {
        q.get(k)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|d| d.timestamp())
                    .map_err(|_| GraphError::bad_request(format!("{k} must be an ISO 8601 time.")))
            })
            .transpose()
    };
    let id_param = |k: &str| -> GResult<Option<String>> {
        match q.get(k) {
            Some(v) if v.is_empty() || v.len() > 256 => Err(GraphError::bad_request(format!(
                "{k} must be 1 to 256 characters."
            ))),
            v => Ok(v.cloned()),
        }
    };
    let allowed = match q.get("decision").map(String::as_str) {
        None => None,
        Some("allow") => Some(true),
        Some("deny") => Some(false),
        Some(_) => return Err(GraphError::bad_request("decision must be allow or deny.")),
    };
    let sts_only = STS_ONLY.iter().any(|k| q.contains_key(*k));
    let (want_sts, want_gw) = match q.get("source").map(String::as_str) {
        None | Some("all") => (true, !sts_only),
        Some("sts") => (true, false),
        Some("gateway") if !sts_only => (false, true),
        Some("gateway") => {
            return Err(GraphError::bad_request(
                "clientId, agentId, userId, result, errorCode and category filter STS events only.",
            ));
        }
        Some(_) => {
            return Err(GraphError::bad_request(
                "source must be sts, gateway or all.",
            ));
        }
    };
    let top: i64 = match q.get("$top") {
        None => 100,
        Some(t) => t
            .parse()
            .ok()
            .filter(|n| (1..=999).contains(n))
            .ok_or_else(|| GraphError::bad_request("$top must be 1 to 999."))?,
    };
    let cursor = q
        .get("$skiptoken")
        .map(|t| parse_cursor(t))
        .transpose()?
        .unwrap_or_default();
    let (since, until) = (time("since")?, time("until")?);
    let (agent, user, blueprint) = (
        id_param("agent")?,
        id_param("user")?,
        id_param("blueprint")?,
    );
    let sts_events: Vec<AuditEvent> = if want_sts {
        let error_code = q
            .get("errorCode")
            .map(|e| {
                e.parse()
                    .map_err(|_| GraphError::bad_request("errorCode must be a number."))
            })
            .transpose()?;
        req.sts
            .store
            .audit_events(&AuditQuery {
                tenant_id: Some(c.tenant.id.to_string()),
                since,
                until,
                client_id: id_param("clientId")?,
                agent_id: id_param("agentId")?.or(agent.clone()),
                user: id_param("userId")?.or(user.clone()),
                result: id_param("result")?,
                error_code,
                category: id_param("category")?,
                blueprint_id: blueprint.clone(),
                allowed,
                token_id: None,
                before: cursor.s.clone(),
                limit: top + 1,
            })
            .await?
    } else {
        Vec::new()
    };
    let gw_events: Vec<GatewayEvent> = if want_gw {
        req.sts
            .store
            .gateway_events(&GatewayEventQuery {
                tenant_id: c.tenant.id.to_string(),
                agent,
                user,
                blueprint,
                decision: q.get("decision").cloned(),
                token_id: None,
                since,
                until,
                before: cursor.g.clone(),
                limit: top + 1,
            })
            .await?
    } else {
        Vec::new()
    };
    let more = sts_events.len() as i64 > top || gw_events.len() as i64 > top;
    let (n_sts, n_gw) = (sts_events.len(), gw_events.len());
    let (merged, si, gi) =
        agentid_directory::trail::merge_newest_first(sts_events, gw_events, top as usize);
    let mut next = cursor;
    let mut items = Vec::with_capacity(merged.len());
    for e in merged {
        match e {
            TrailEvent::Sts(e) => {
                next.s = Some((e.time, e.id.clone()));
                let mut v = serde_json::to_value(&e).map_err(GraphError::internal)?;
                v["source"] = json!("sts");
                items.push(v);
            }
            TrailEvent::Gateway(e) => {
                next.g = Some((e.time, e.event_id.clone()));
                items.push(gateway_json(&e));
            }
        }
    }
    let left = si < n_sts || gi < n_gw;
    let mut body = json!({"@odata.context": req.context("auditEvents"), "value": items});
    if more || left {
        let token =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&next).map_err(GraphError::internal)?);
        let mut params: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "$skiptoken")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("$skiptoken".into(), token));
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        body["@odata.nextLink"] = json!(format!("{}/agentid/v1/auditEvents?{qs}", req.base));
    }
    ok(body)
}

fn gateway_json(e: &GatewayEvent) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    // The stored event is JSON the STS validated at ingest: shown as an object, not a string.
    v["event"] = serde_json::from_str(&e.event).unwrap_or(Value::Null);
    v["source"] = json!("gateway");
    v["id"] = json!(e.event_id);
    v
}
