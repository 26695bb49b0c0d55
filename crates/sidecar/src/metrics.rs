//! `/metrics` (docs/sidecar.md §13.1): Prometheus text format 0.0.4. Labels carry only bounded
//! values: never agent ids, UPNs, tenants or unconfigured API names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLegResult {
    flow: &'static str,
    leg: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LegResult {
    leg: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiResult {
    api: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultOnly {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_buckets() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ])
}

fn authority_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    request_duration: HistogramFamily<RouteOnly>,
    token_requests: Family<FlowLegResult, Counter>,
    cache_lookups: Family<FlowLegResult, Counter>,
    cache_entries: Gauge,
    authority_duration: HistogramFamily<LegResult>,
    downstream: Family<ApiResult, Counter>,
    assertion_reads: Family<ResultOnly, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        let request_duration: HistogramFamily<RouteOnly> =
            Family::new_with_constructor(request_buckets as fn() -> Histogram);
        let token_requests = Family::<FlowLegResult, Counter>::default();
        let cache_lookups = Family::<FlowLegResult, Counter>::default();
        let cache_entries = Gauge::default();
        let authority_duration: HistogramFamily<LegResult> =
            Family::new_with_constructor(authority_buckets as fn() -> Histogram);
        let downstream = Family::<ApiResult, Counter>::default();
        let assertion_reads = Family::<ResultOnly, Counter>::default();
        let build_info = Family::<Version, Gauge>::default();
        build_info
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "agentid_sidecar_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "agentid_sidecar_request_duration_seconds",
            "HTTP request duration by route",
            request_duration.clone(),
        );
        registry.register(
            "agentid_sidecar_token_requests",
            "Token endpoint requests by flow, leg and result",
            token_requests.clone(),
        );
        registry.register(
            "agentid_sidecar_token_cache_lookups",
            "Token cache lookups by flow, leg and result",
            cache_lookups.clone(),
        );
        registry.register(
            "agentid_sidecar_token_cache_entries",
            "Tokens held in the cache",
            cache_entries.clone(),
        );
        registry.register(
            "agentid_sidecar_authority_request_duration_seconds",
            "Token endpoint request duration by leg and result",
            authority_duration.clone(),
        );
        registry.register(
            "agentid_sidecar_downstream_requests",
            "Downstream API calls by configured API and result",
            downstream.clone(),
        );
        registry.register(
            "agentid_sidecar_assertion_file_reads",
            "Federated token file reads by result",
            assertion_reads.clone(),
        );
        registry.register(
            "agentid_sidecar_build_info",
            "Build information",
            build_info,
        );
        Self {
            registry,
            requests,
            request_duration,
            token_requests,
            cache_lookups,
            cache_entries,
            authority_duration,
            downstream,
            assertion_reads,
        }
    }

    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        self.request_duration
            .get_or_create(&RouteOnly { route })
            .observe(seconds);
    }

    pub fn token_request(&self, flow: &'static str, leg: &'static str, result: &'static str) {
        self.token_requests
            .get_or_create(&FlowLegResult { flow, leg, result })
            .inc();
    }

    pub fn cache_lookup(&self, flow: &'static str, leg: &'static str, result: &'static str) {
        self.cache_lookups
            .get_or_create(&FlowLegResult { flow, leg, result })
            .inc();
    }

    pub fn cache_entries(&self, n: usize) {
        self.cache_entries.set(n as i64);
    }

    pub fn authority_request(&self, leg: &'static str, result: &'static str, seconds: f64) {
        self.authority_duration
            .get_or_create(&LegResult { leg, result })
            .observe(seconds);
    }

    pub fn downstream(&self, api: &str, result: &'static str) {
        self.downstream
            .get_or_create(&ApiResult {
                api: api.to_string(),
                result,
            })
            .inc();
    }

    pub fn assertion_read(&self, result: &'static str) {
        self.assertion_reads
            .get_or_create(&ResultOnly { result })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
