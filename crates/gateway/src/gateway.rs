//! The running gateway's shared state: the active config snapshot (swapped atomically on
//! reload), JWKS caches, upstream clients, MCP sessions, the token-exchange cache, audit and
//! metrics.

use crate::audit::{AuditLog, Event};
use crate::config::model::{Snapshot, TlsPolicy};
use crate::exchange::Exchange;
use crate::jwt::JwksRegistry;
use crate::metrics::Metrics;
use crate::rules::{EvalContext, LlmInfo, McpInfo};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Gateway {
    current: ArcSwap<Snapshot>,
    pub jwks: Arc<JwksRegistry>,
    pub audit: AuditLog,
    pub metrics: Metrics,
    pub clients: Clients,
    pub sessions: crate::mcp::Sessions,
    pub obo: crate::obo::OboCache,
    pub ready: AtomicBool,
    pub reload: Mutex<ReloadStatus>,
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
    ) -> Arc<Gateway> {
        let audit = AuditLog::new(&snapshot.settings.audit);
        let metrics = Metrics::new(&snapshot.removed_metrics);
        let clients = Clients::new(extra_roots, &snapshot);
        Arc::new(Gateway {
            current: ArcSwap::from_pointee(snapshot),
            jwks,
            audit,
            metrics,
            clients,
            sessions: crate::mcp::Sessions::default(),
            obo: crate::obo::OboCache::new(),
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
        self.current.store(Arc::new(snapshot));
    }

    /// Finishes an exchange: fills log fields, writes the audit event, counts the request.
    pub fn record(&self, ex: &Exchange, event: Event, llm: Option<&LlmInfo>) {
        self.record_with(ex, event, llm, None);
    }

    pub fn record_with(
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
            identity: &ex.identity,
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
        let route = event.route.clone().unwrap_or_default();
        let mut labels = vec![
            ("bind".to_string(), event.bind.to_string()),
            ("route".to_string(), route.clone()),
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
        let seconds = ex.start.elapsed().as_secs_f64();
        let short = vec![
            ("route".to_string(), route),
            ("kind".to_string(), event.kind.to_string()),
        ];
        self.metrics
            .request_duration
            .get_or_create(&short)
            .observe(seconds);
        let upstream_s = event
            .upstream
            .as_ref()
            .and_then(|u| u.duration_ms)
            .unwrap_or(0.0)
            / 1000.0;
        self.metrics
            .overhead
            .get_or_create(&short)
            .observe((seconds - upstream_s).max(0.0));
        if let Some(u) = &event.upstream
            && let Some(ms) = u.duration_ms
        {
            self.metrics
                .upstream_duration
                .get_or_create(&vec![
                    ("route".to_string(), event.route.clone().unwrap_or_default()),
                    ("backend".to_string(), u.target.clone().unwrap_or_default()),
                ])
                .observe(ms / 1000.0);
        }
        event.latency_ms = seconds * 1000.0;
        self.audit.record(event, write);
    }

    pub fn user_label(&self, ex: &Exchange) -> String {
        use crate::config::model::UserLabel;
        match self.snapshot().settings.user_label {
            UserLabel::Oid => ex.identity.user_oid.clone().unwrap_or_default(),
            UserLabel::Upn => ex.identity.user_upn.clone().unwrap_or_default(),
            UserLabel::None => String::new(),
        }
    }
}

/// Upstream HTTP clients, one per TLS policy (each has its own pool).
pub struct Clients {
    extra_roots: Vec<PathBuf>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_size: Option<usize>,
    by_policy: Mutex<HashMap<Option<TlsPolicy>, reqwest::Client>>,
}

impl Clients {
    fn new(extra_roots: Vec<PathBuf>, snap: &Snapshot) -> Clients {
        Clients {
            extra_roots,
            connect_timeout: snap.settings.connect_timeout,
            pool_idle_timeout: snap.settings.pool_idle_timeout,
            pool_max_size: snap.settings.pool_max_size,
            by_policy: Mutex::new(HashMap::new()),
        }
    }

    pub fn extra_roots(&self) -> &[PathBuf] {
        &self.extra_roots
    }

    pub fn get(&self, policy: Option<&TlsPolicy>) -> Result<reqwest::Client, String> {
        let key = policy.cloned();
        let mut map = self.by_policy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let tls =
            crate::tls::client_config(policy, &self.extra_roots).map_err(|e| e.to_string())?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .tcp_keepalive(Duration::from_secs(180))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(max) = self.pool_max_size {
            builder = builder.pool_max_idle_per_host(max);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        map.insert(key, client.clone());
        Ok(client)
    }
}
