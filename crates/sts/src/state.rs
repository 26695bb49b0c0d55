//! The STS's shared state and the facts derived from its base URL.

use crate::context::RequestContext;
use crate::federation::Federation;
use crate::keys::KeyRing;
use crate::settings::Settings;
use agentid_directory::Store;
use agentid_directory::audit::AuditEvent;
use agentid_directory::model::Tenant;
use agentid_directory::password_gate::PasswordGate;
use std::sync::Arc;
use uuid::Uuid;

pub struct StsState {
    pub store: Store,
    /// The token path's cached directory reads (docs/performance.md §3.1).
    pub hot: agentid_directory::hot::HotReads,
    pub settings: Settings,
    pub keys: KeyRing,
    /// Every Argon2 check and hash of request input goes through this bound.
    pub passwords: PasswordGate,
    pub federation: Federation,
    /// `{base}`: public base URL without a trailing slash.
    pub base: String,
    /// Begun on shutdown: `/readyz` reports draining (docs/architecture.md §7).
    pub drain: agentid_listener::Drain,
    /// Long polls of the revocation feed (docs/sts.md §17.3).
    pub revocations: crate::revocation::watch::Watchers,
    /// MCP clients' metadata documents, by URL (docs/sts.md §16.4).
    pub client_documents: crate::mcp::client_metadata::ClientDocuments,
}

pub type Sts = Arc<StsState>;

impl StsState {
    pub fn issuer_v1(&self, tid: &Uuid) -> String {
        format!("{}/{tid}/", self.base)
    }

    pub fn issuer_v2(&self, tid: &Uuid) -> String {
        format!("{}/{tid}/v2.0", self.base)
    }

    /// True for the v1 or v2 issuer of any tenant of this installation.
    pub fn is_own_issuer(&self, iss: &str) -> bool {
        let Some(rest) = iss
            .strip_prefix(&self.base)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        // `get`, not `split_at`: the issuer comes from a token and may split a character.
        let (Some(tid), Some(suffix)) = (rest.get(..36), rest.get(36..)) else {
            return false;
        };
        agentid_claims::guid::parse(tid).is_some() && (suffix == "/" || suffix == "/v2.0")
    }

    /// Whether `aud` names this tenant's token endpoint (private_key_jwt audience rule).
    pub fn is_token_endpoint(&self, aud: &str, tenant: &Tenant) -> bool {
        let Ok(u) = url::Url::parse(aud) else {
            return false;
        };
        let Ok(base) = url::Url::parse(&self.base) else {
            return false;
        };
        if u.scheme() != base.scheme()
            || u.host_str().map(str::to_ascii_lowercase)
                != base.host_str().map(str::to_ascii_lowercase)
            || u.port_or_known_default() != base.port_or_known_default()
        {
            return false;
        }
        let path = u.path().trim_end_matches('/');
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let Some((seg, endpoint)) = rest.split_once('/') else {
            return false;
        };
        let tenant_ok = agentid_claims::guid::parse(seg) == Some(tenant.id)
            || tenant.domains.iter().any(|d| d.eq_ignore_ascii_case(seg));
        tenant_ok && (endpoint == "oauth2/v2.0/token" || endpoint == "oauth2/token")
    }

    pub fn audit_event(&self, ctx: &RequestContext, endpoint: &str) -> AuditEvent {
        AuditEvent {
            // Time-ordered ids keep events of the same second in order.
            id: Uuid::now_v7().to_string(),
            time: ctx.now,
            replica: self.settings.replica.clone(),
            endpoint: endpoint.into(),
            result: "refused".into(),
            source_ip: ctx.source_ip.clone(),
            user_agent: ctx.user_agent.clone(),
            correlation_id: Some(ctx.correlation_id.to_string()),
            trace_id: Some(ctx.trace_id.to_string()),
            ..Default::default()
        }
    }
}

/// Every audit event is also one JSON line on the `audit` log target; serialised only when
/// that target is on (the benchmark and `agentid up` turn it off, docs/performance.md §3.4).
pub fn log_audit(event: &AuditEvent) {
    if !tracing::enabled!(target: "audit", tracing::Level::INFO) {
        return;
    }
    if let Ok(line) = serde_json::to_string(event) {
        tracing::info!(target: "audit", "{line}");
    }
}
