//! Prometheus metrics (docs/gateway.md §12.1), served on `statsAddr` at `/metrics`: families the
//! request path updates, and a collector that reads the JWKS caches' figures at each scrape.

use crate::jwt::JwksRegistry;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

pub type Labels = Vec<(String, String)>;

/// Cached handle sets before the cache is emptied.
const MAX_HANDLES: usize = 4096;

/// One request's label set's handles (clones share the family's metric).
#[derive(Clone)]
struct RequestHandles {
    requests: Counter,
    duration: Histogram,
    overhead: Histogram,
}

impl RequestHandles {
    fn observe(&self, seconds: f64, overhead: f64) {
        self.requests.inc();
        self.duration.observe(seconds);
        self.overhead.observe(overhead);
    }
}

/// The labels of `requests` (without the config's `metricFields`).
#[derive(Debug, Clone, Copy)]
pub struct RequestLabels<'a> {
    pub bind: u16,
    pub route: &'a str,
    pub kind: &'static str,
    pub decision: &'static str,
    pub status: u16,
}

/// (bind, status, kind, decision) → per-route handles.
type HandleKey = (u16, u16, &'static str, &'static str);

/// Per key, each route's handles.
type RouteHandles = Vec<(String, RequestHandles)>;

#[derive(Default)]
struct HandleCache {
    map: std::sync::RwLock<std::collections::HashMap<HandleKey, RouteHandles>>,
    /// (route, backend) → `upstream_duration` handle.
    upstream: std::sync::RwLock<Vec<(String, String, Histogram)>>,
}

const BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels, Counter>,
    pub request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub upstream_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub overhead: Family<Labels, Histogram, fn() -> Histogram>,
    pub auth_failures: Family<Labels, Counter>,
    pub mcp_requests: Family<Labels, Counter>,
    pub mcp_sessions: Family<Labels, Gauge>,
    pub mcp_target_up: Family<Labels, Gauge>,
    pub llm_tokens: Family<Labels, Counter>,
    pub llm_requests: Family<Labels, Counter>,
    pub llm_ttft: Family<Labels, Histogram, fn() -> Histogram>,
    pub token_exchanges: Family<Labels, Counter>,
    pub config_reloads: Family<Labels, Counter>,
    pub connections: Family<Labels, Gauge>,
    pub audit_dropped: Counter,
    pub panics: Counter,
    handles: HandleCache,
}

impl Metrics {
    /// `removed`: names the config drops (`removedMetrics`); the JWKS figures are always kept.
    pub fn new(
        removed: &[String],
        jwks: Arc<JwksRegistry>,
        revocations: Arc<crate::revocation::Feeds>,
    ) -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(histogram),
            upstream_duration: Family::new_with_constructor(histogram),
            overhead: Family::new_with_constructor(histogram),
            auth_failures: Family::default(),
            mcp_requests: Family::default(),
            mcp_sessions: Family::default(),
            mcp_target_up: Family::default(),
            llm_tokens: Family::default(),
            llm_requests: Family::default(),
            llm_ttft: Family::new_with_constructor(histogram),
            token_exchanges: Family::default(),
            config_reloads: Family::default(),
            connections: Family::default(),
            audit_dropped: Counter::default(),
            panics: Counter::default(),
            handles: HandleCache::default(),
            registry: Registry::default(),
        };
        let keep = |name: &str| {
            !removed
                .iter()
                .any(|r| r == name || r == &format!("agentid_gateway_{name}"))
        };
        macro_rules! reg {
            ($name:expr, $help:expr, $metric:expr) => {
                if keep($name) {
                    registry.register(concat!("agentid_gateway_", $name), $help, $metric.clone());
                }
            };
        }
        reg!("requests", "Requests handled", m.requests);
        reg!(
            "request_duration_seconds",
            "Request duration",
            m.request_duration
        );
        reg!(
            "upstream_duration_seconds",
            "Upstream duration",
            m.upstream_duration
        );
        reg!(
            "overhead_seconds",
            "Request time minus upstream time",
            m.overhead
        );
        reg!("auth_failures", "JWT validation failures", m.auth_failures);
        reg!("mcp_requests", "MCP JSON-RPC requests", m.mcp_requests);
        reg!("mcp_sessions_active", "Active MCP sessions", m.mcp_sessions);
        reg!(
            "mcp_target_up",
            "MCP target ready in the latest session attempt",
            m.mcp_target_up
        );
        reg!(
            "llm_tokens",
            "LLM tokens by agent, user and model",
            m.llm_tokens
        );
        reg!("llm_requests", "LLM requests", m.llm_requests);
        reg!(
            "llm_time_to_first_token_seconds",
            "LLM time to first token",
            m.llm_ttft
        );
        reg!(
            "token_exchanges",
            "On-behalf-of token exchanges",
            m.token_exchanges
        );
        reg!("config_reloads", "Config reloads", m.config_reloads);
        reg!(
            "connections_active",
            "Open downstream connections",
            m.connections
        );
        reg!(
            "audit_events_dropped",
            "Audit events dropped (queue full)",
            m.audit_dropped
        );
        reg!("panics", "Requests that panicked", m.panics);
        registry.register_collector(Box::new(JwksFigures(jwks)));
        registry.register_collector(Box::new(crate::revocation::metrics::FeedFigures(
            revocations,
        )));
        Metrics { registry, ..m }
    }

    /// Counts one request in `requests`, `request_duration` and `overhead`, through handles
    /// found without building label sets once they were seen (docs/performance.md §6) and
    /// used in place, not cloned (docs/performance.md §6.4: each clone and drop is an atomic
    /// on a line every serving thread writes). For the labels without the config's
    /// `metricFields`.
    pub fn count_request(&self, labels: RequestLabels<'_>, seconds: f64, overhead: f64) {
        let RequestLabels {
            bind,
            route,
            kind,
            decision,
            status,
        } = labels;
        let key = (bind, status, kind, decision);
        {
            let map = self.handles.map.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, h)) = map
                .get(&key)
                .and_then(|routes| routes.iter().find(|(r, _)| r == route))
            {
                h.observe(seconds, overhead);
                return;
            }
        }
        let labels = vec![
            ("bind".to_string(), bind.to_string()),
            ("route".to_string(), route.to_string()),
            ("kind".to_string(), kind.to_string()),
            ("decision".to_string(), decision.to_string()),
            ("status".to_string(), status.to_string()),
        ];
        let short = vec![
            ("route".to_string(), route.to_string()),
            ("kind".to_string(), kind.to_string()),
        ];
        let h = RequestHandles {
            requests: self.requests.get_or_create(&labels).clone(),
            duration: self.request_duration.get_or_create(&short).clone(),
            overhead: self.overhead.get_or_create(&short).clone(),
        };
        h.observe(seconds, overhead);
        let mut map = self.handles.map.write().unwrap_or_else(|e| e.into_inner());
        // Bounded: routes and statuses are few, but a client can vary the status upstream.
        let entries: usize = map.values().map(Vec::len).sum();
        if entries >= MAX_HANDLES {
            map.clear();
        }
        map.entry(key).or_default().push((route.to_string(), h));
    }

    /// Observes `seconds` in the `upstream_duration` of a route and backend, its handle cached
    /// and used like [`Self::count_request`]'s.
    pub fn observe_upstream(&self, route: &str, backend: &str, seconds: f64) {
        {
            let list = self
                .handles
                .upstream
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((_, _, h)) = list.iter().find(|(r, b, _)| r == route && b == backend) {
                h.observe(seconds);
                return;
            }
        }
        let h = self
            .upstream_duration
            .get_or_create(&vec![
                ("route".to_string(), route.to_string()),
                ("backend".to_string(), backend.to_string()),
            ])
            .clone();
        h.observe(seconds);
        let mut list = self
            .handles
            .upstream
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if list.len() >= MAX_HANDLES {
            list.clear();
        }
        list.push((route.to_string(), backend.to_string(), h));
    }

    /// The Prometheus text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `agentid_gateway_jwks_refreshes_total{jwks,trigger,result}` and
/// `agentid_gateway_jwks_keys{jwks}`, read from the key caches when scraped.
struct JwksFigures(Arc<JwksRegistry>);

impl std::fmt::Debug for JwksFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwksFigures")
    }
}

impl Collector for JwksFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.metrics();
        {
            let mut family = encoder.encode_descriptor(
                "agentid_gateway_jwks_refreshes",
                "JWKS fetches.",
                None,
                MetricType::Counter,
            )?;
            for m in &all {
                for r in &m.refreshes {
                    let labels = [
                        ("jwks", m.url.as_str()),
                        ("trigger", r.trigger),
                        ("result", r.result),
                    ];
                    ConstCounter::new(r.count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "agentid_gateway_jwks_keys",
            "Usable keys per JWKS URL.",
            None,
            MetricType::Gauge,
        )?;
        for m in &all {
            let keys = i64::try_from(m.keys).unwrap_or(i64::MAX);
            ConstGauge::new(keys).encode(family.encode_family(&[("jwks", m.url.as_str())])?)?;
        }
        Ok(())
    }
}
