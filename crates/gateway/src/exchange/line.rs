//! An exchange's audit line (docs/gateway.md §11), serialised straight from the exchange and
//! the backend's [`Event`]: the ids, route, request and identity are borrowed where they live
//! instead of copied into an owned event first (≈ 10 strings per request, 20 with a token:
//! docs/performance.md §6.4). The members, their order and their values are the line's format
//! (read back by `GET /audit/events` and the STS's trail): `tests/it/audit_line.rs` pins them.

use super::Exchange;
use crate::audit::{Event, SCHEMA};
use crate::jwt::Verified;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;

/// One event's line: serialise it (`AuditLog::record` does) to get the JSON.
pub struct EventLine<'a> {
    pub(super) ex: &'a Exchange,
    pub(super) event: &'a Event,
}

impl Serialize for EventLine<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ex, e) = (self.ex, self.event);
        let mut id = uuid::Uuid::encode_buffer();
        let mut m = s.serialize_struct("Event", 18)?;
        m.serialize_field("schema", SCHEMA)?;
        m.serialize_field("time", &crate::audit::rfc3339(e.time))?;
        m.serialize_field("eventId", &*e.event_id.simple().encode_lower(&mut id))?;
        m.serialize_field("correlationId", &ex.correlation_id)?;
        m.serialize_field("traceId", &ex.trace.trace_id)?;
        m.serialize_field("kind", e.kind)?;
        m.serialize_field("route", &ex.route.as_ref().map(|r| r.id.as_str()))?;
        m.serialize_field("bind", &ex.bind)?;
        m.serialize_field("listener", &ex.listener)?;
        m.serialize_field("request", &RequestPart(ex))?;
        m.serialize_field("identity", &IdentityPart(ex.verified.as_deref()))?;
        m.serialize_field("mcp", &e.mcp)?;
        m.serialize_field("llm", &e.llm)?;
        m.serialize_field("decision", &e.decision)?;
        m.serialize_field("upstream", &e.upstream)?;
        m.serialize_field("status", &e.status)?;
        m.serialize_field("latencyMs", &e.latency_ms)?;
        m.serialize_field("fields", &e.fields)?;
        m.end()
    }
}

/// `request`: the method, the canonical path (bounded when it was refused) and the client's
/// address.
struct RequestPart<'a>(&'a Exchange);

impl Serialize for RequestPart<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("RequestPart", 3)?;
        m.serialize_field("method", &self.0.request.method)?;
        m.serialize_field("path", &self.0.request.path)?;
        m.serialize_field("sourceAddress", &self.0.source_info.address)?;
        m.end()
    }
}

/// `identity`: from the validated token's claims and the identity derived from them; without a
/// token, unauthenticated with `agentMode` `none` and every other member null.
struct IdentityPart<'a>(Option<&'a Verified>);

impl Serialize for IdentityPart<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let id = v.map(|v| &v.identity);
        let claim = |k: &str| v.and_then(|v| v.claims.get(k));
        let text = |k: &str| claim(k).and_then(Value::as_str);
        let mut m = s.serialize_struct("IdentityPart", 14)?;
        m.serialize_field("authenticated", &v.is_some())?;
        m.serialize_field("issuer", &text("iss"))?;
        m.serialize_field("audience", &claim("aud"))?;
        m.serialize_field("tenant", &text("tid"))?;
        m.serialize_field("tokenType", &id.and_then(|i| i.token_type.as_deref()))?;
        m.serialize_field("tokenId", &v.and_then(|v| v.token_id.as_deref()))?;
        m.serialize_field("clientAppId", &text("azp").or_else(|| text("appid")))?;
        m.serialize_field("agentId", &id.and_then(|i| i.id.as_deref()))?;
        m.serialize_field("blueprint", &id.and_then(|i| i.blueprint.as_deref()))?;
        m.serialize_field("agentMode", id.map_or("none", |i| i.mode.as_str()))?;
        m.serialize_field("userOid", &id.and_then(|i| i.user_oid.as_deref()))?;
        m.serialize_field("userUpn", &id.and_then(|i| i.user_upn.as_deref()))?;
        m.serialize_field("scopes", &text("scp"))?;
        m.serialize_field("roles", &claim("roles"))?;
        m.end()
    }
}
