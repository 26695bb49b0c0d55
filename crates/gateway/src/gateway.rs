//! The running gateway's shared state: the active config snapshot (swapped atomically on
//! reload), JWKS caches, upstream clients, MCP sessions, the token-exchange cache, audit and
//! metrics.

use crate::audit::{AuditLog, Event};
use crate::config::model::Snapshot;
use crate::exchange::Exchange;
use crate::jwt::JwksRegistry;
use crate::mcp::session::Sessions;
use crate::metrics::Metrics;
use crate::obo::{ExchangeEnv, OboCache};
use crate::rules::{EvalContext, LlmInfo, McpInfo};
use crate::upstream::Clients;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

pub struct Gateway {
    current: ArcSwap<Snapshot>,
    pub jwks: Arc<JwksRegistry>,
    pub audit: AuditLog,
    pub metrics: Metrics,
    pub clients: Clients,
    pub sessions: Sessions,
    pub obo: OboCache,
    pub ready: AtomicBool,
    pub reload: Mutex<ReloadStatus>,
    /// Revocation-feed pollers (docs/gateway.md §19).
    pub revocations: Arc<crate::revocation::Feeds>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub ok: bool,
    pub error: Option<String>,
    pub time: Option<String>,
    pub restart_required: bool,
}

impl Gateway {
    pub fn new(
        snapshot: Snapshot,
        jwks: Arc<JwksRegistry>,
        extra_roots: Vec<PathBuf>,
        serving_threads: usize,
    ) -> Arc<Gateway> {
        let revocations = Arc::new(crate::revocation::Feeds::new(jwks.fetcher()));
        revocations.sync(&snapshot);
        let metrics = Metrics::new(&snapshot.removed_metrics, jwks.clone(), revocations.clone());
        let clients = Clients::new(extra_roots, &snapshot.settings, serving_threads);
        let audit = AuditLog::new(&snapshot.settings.audit, &clients);
        Arc::new(Gateway {
            current: ArcSwap::from_pointee(snapshot),
            jwks,
            audit,
            metrics,
            clients,
            sessions: Sessions::default(),
            obo: OboCache::new(),
            revocations,
            ready: AtomicBool::new(false),
            reload: Mutex::new(ReloadStatus {
                ok: true,
                time: Some(crate::audit::now_rfc3339()),
                ..Default::default()
            }),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn swap(&self, snapshot: Snapshot) {
        self.revocations.sync(&snapshot);
        self.current.store(Arc::new(snapshot));
    }

    /// What a token exchange runs on, with the current snapshot's time limit.
    pub fn exchange_env(&self) -> ExchangeEnv<'_> {
        ExchangeEnv {
            clients: &self.clients,
            metrics: &self.metrics,
            timeout: self.snapshot().settings.timeouts.token_exchange,
        }
    }

    /// Finishes an exchange: fills log fields, writes the audit event, counts the request.
    /// Only the pipeline calls it (`pipeline::write_audit`).
    pub fn record(
        &self,
        ex: &Exchange,
        mut event: Event,
        llm: Option<&LlmInfo>,
        mcp: Option<&McpInfo>,
    ) {
        let snap = self.snapshot();
        let ctx = EvalContext {
            request: &ex.request,
            source: &ex.source_info,
            jwt: ex.claims(),
            identity: ex.identity(),
            mcp,
            response_code: Some(event.status),
            llm,
            backend: None,
        };
        for (name, expr) in &snap.log.add {
            if let Ok(v) = expr.eval(&ctx)
                && !v.is_null()
            {
                event.fields.insert(name.clone(), v);
            }
        }
        for name in &snap.log.remove {
            event.fields.remove(name);
        }
        let allowed = event.decision.result == "allow" && event.status < 500;
        let write = if allowed {
            match &snap.log.filter {
                Some(f) => matches!(f.eval(&ctx), Ok(serde_json::Value::Bool(true))),
                None => true,
            }
        } else {
            true
        };
        let seconds = ex.start.elapsed().as_secs_f64();
        let upstream_s = event
            .upstream
            .as_ref()
            .and_then(|u| u.duration_ms)
            .unwrap_or(0.0)
            / 1000.0;
        let route = ex.route.as_ref().map_or("", |r| r.id.as_str());
        if snap.metric_fields.is_empty() {
            // The common case: handles looked up without building label sets.
            let labels = crate::metrics::RequestLabels {
                bind: ex.bind,
                route,
                kind: event.kind,
                decision: event.decision.result,
                status: event.status,
            };
            self.metrics
                .count_request(labels, seconds, (seconds - upstream_s).max(0.0));
        } else {
            let mut labels = vec![
                ("bind".to_string(), ex.bind.to_string()),
                ("route".to_string(), route.to_string()),
                ("kind".to_string(), event.kind.to_string()),
                ("decision".to_string(), event.decision.result.to_string()),
                ("status".to_string(), event.status.to_string()),
            ];
            for (name, expr) in &snap.metric_fields {
                let value = match expr.eval(&ctx) {
                    Ok(serde_json::Value::String(s)) => s,
                    Ok(serde_json::Value::Null) | Err(_) => String::new(),
                    Ok(other) => other.to_string(),
                };
                labels.push((name.clone(), value));
            }
            self.metrics.requests.get_or_create(&labels).inc();
            let short = vec![
                ("route".to_string(), route.to_string()),
                ("kind".to_string(), event.kind.to_string()),
            ];
            self.metrics
                .request_duration
                .get_or_create(&short)
                .observe(seconds);
            self.metrics
                .overhead
                .get_or_create(&short)
                .observe((seconds - upstream_s).max(0.0));
        }
        if let Some(u) = &event.upstream
            && let Some(ms) = u.duration_ms
        {
            self.metrics.observe_upstream(
                route,
                u.target.as_deref().unwrap_or_default(),
                ms / 1000.0,
            );
        }
        event.latency_ms = seconds * 1000.0;
        self.audit.record(&ex.line(&event), write);
    }

    pub fn user_label(&self, ex: &Exchange) -> String {
        use crate::config::model::UserLabel;
        match self.snapshot().settings.user_label {
            UserLabel::Oid => ex.identity().user_oid.clone().unwrap_or_default(),
            UserLabel::Upn => ex.identity().user_upn.clone().unwrap_or_default(),
            UserLabel::None => String::new(),
        }
    }
}
