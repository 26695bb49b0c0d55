//! Test harness: a real STS (testkit) as the authority, optionally behind a recording relay that
//! can also script failures; a real sidecar in-process on port 0 with a movable clock; a mock
//! downstream API; the contract file's schemas; captured logs.
#![allow(dead_code, unused_imports)]

pub mod contract;
pub mod downstream;
pub mod logs;
pub mod relay;

use agentid_sidecar::clock::ManualClock;
use agentid_sidecar::{ConfigSources, RunningSidecar};
use agentid_testkit::{Chain, Db, KubeIssuer, TestSts};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub use relay::{Relay, Step};

pub use agentid_testkit::demo::{
    AGENT, ALICE, BLUEPRINT as BP, BLUEPRINT_SECRET as BP_SECRET, DEMO_TENANT as DEMO, GRAPH_CLI,
    MCP_APP as MCP,
};
/// A second agent of the same blueprint (added by [`tenant`]).
pub const AGENT_B: &str = "0c4f6a3e-8d2b-4f1a-9e7c-5b3d2a1f0e9d";
pub const AGENT_USER_UPN: &str = "blog-agent@contoso.test";
/// The blueprint federated with the emulated cluster, and its agent.
pub const FIC_BP: &str = "3d1b7a2e-6a0e-4f58-9c1b-2f0e8a9d7c11";
pub const FIC_AGENT: &str = "9b0f7c55-2a6d-4e8e-b3f1-5c7a9d1e2f30";
pub const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";

fn add(doc: &mut serde_yaml_ng::Value, key: &str, item: &str) {
    let item: serde_yaml_ng::Value = serde_yaml_ng::from_str(item).unwrap();
    let seq = doc
        .as_mapping_mut()
        .unwrap()
        .entry(key.into())
        .or_insert(serde_yaml_ng::Value::Sequence(vec![]));
    seq.as_sequence_mut().unwrap().push(item);
}

/// A cluster's service-account issuer the tenant federates the Kubernetes blueprint with.
pub struct Federation {
    pub issuer: String,
    /// `system:serviceaccount:NS:SA`.
    pub subject: String,
    /// The `trustedIssuers` entry, as a YAML flow mapping.
    pub trust: String,
}

impl Federation {
    /// The testkit's issuer emulator, trusted through discovery over plain HTTP.
    pub fn emulated(kube: &KubeIssuer) -> Federation {
        Federation {
            issuer: kube.issuer.clone(),
            subject: "system:serviceaccount:agents:blog-agent".into(),
            trust: format!(
                "{{issuer: '{}', discovery: true, allowHttp: true}}",
                kube.issuer
            ),
        }
    }
}

/// The demo tenant, plus: a second agent, consent for plain OBO by the blueprint, and (with a
/// cluster) a blueprint federated with the emulated service-account issuer.
pub fn tenant(kube: Option<&KubeIssuer>) -> String {
    tenant_federated(kube.map(Federation::emulated).as_ref())
}

/// [`tenant`] with any federation: the blueprint `FIC_BP` (agent `FIC_AGENT`) trusts
/// `federation.subject` from `federation.issuer`.
pub fn tenant_federated(federation: Option<&Federation>) -> String {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(DEMO).unwrap();
    let bp = doc["blueprints"][0].as_mapping_mut().unwrap();
    let agents = bp.get_mut("agents").unwrap().as_sequence_mut().unwrap();
    agents.push(
        serde_yaml_ng::from_str(&format!(
            "{{name: agent-b, displayName: Agent B, id: {AGENT_B}, sponsors: [alice]}}"
        ))
        .unwrap(),
    );
    add(
        &mut doc,
        "grants",
        "{client: blog-agent-bp, resource: graph, scopes: [User.Read]}",
    );
    add(
        &mut doc,
        "grants",
        "{client: agent-b, resource: graph, scopes: [User.Read]}",
    );
    if let Some(f) = federation {
        add(
            &mut doc,
            "blueprints",
            &format!(
                "{{name: k8s-bp, displayName: Kubernetes blueprint, appId: {FIC_BP}, identifierUris: ['api://{{appId}}'], scopes: [access_as_user], \
                 federatedCredentials: [{{name: agents-blog-agent, issuer: '{iss}', subject: '{sub}'}}], \
                 agents: [{{name: k8s-agent, displayName: Kubernetes agent, id: {FIC_AGENT}}}]}}",
                iss = f.issuer,
                sub = f.subject,
            ),
        );
        add(
            &mut doc,
            "grants",
            "{client: graph-cli, resource: k8s-bp, scopes: [access_as_user]}",
        );
        add(
            &mut doc,
            "grants",
            "{client: k8s-agent, resource: graph, scopes: [User.Read]}",
        );
        add(&mut doc, "trustedIssuers", &f.trust);
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

pub async fn start_sts() -> TestSts {
    TestSts::start(Db::Sqlite, &tenant(None)).await
}

/// A user token (Tc) for `api://{blueprint}` by the password grant.
pub async fn user_token_for(sts: &TestSts, blueprint: &str, user: &str, password: &str) -> String {
    let chain = Chain {
        blueprint: blueprint.into(),
        username: user.into(),
        password: password.into(),
        ..Chain::demo()
    };
    chain.tc(sts).await
}

pub async fn alice_tc(sts: &TestSts) -> String {
    Chain::demo().tc(sts).await
}

/// The environment a ConfigMap for Microsoft's sidecar would carry, pointed at `authority`.
pub fn base_env(sts: &TestSts, authority: &str) -> Vec<(String, String)> {
    [
        ("AzureAd__Instance", format!("{authority}/")),
        ("AzureAd__TenantId", sts.tenant_id.clone()),
        ("AzureAd__ClientId", BP.into()),
        (
            "AzureAd__ClientCredentials__0__SourceType",
            "ClientSecret".into(),
        ),
        (
            "AzureAd__ClientCredentials__0__ClientSecret",
            BP_SECRET.into(),
        ),
        ("DownstreamApis__graph__Scopes__0", GRAPH_DEFAULT.into()),
        ("DownstreamApis__graph-app__Scopes__0", GRAPH_DEFAULT.into()),
        ("DownstreamApis__graph-app__RequestAppToken", "true".into()),
        (
            "DownstreamApis__mcp__Scopes__0",
            format!("api://{MCP}/.default"),
        ),
        ("Sidecar__ListenUrl", "http://127.0.0.1:0".into()),
        ("Sidecar__HealthListenUrl", "off".into()),
        (
            "Sidecar__ExtraCaBundlePath",
            sts.ca_file().display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Sets (or, with `None`, removes) variables, matching names case-insensitively.
pub fn apply(env: &mut Vec<(String, String)>, changes: &[(&str, Option<&str>)]) {
    for (k, v) in changes {
        env.retain(|(x, _)| !x.eq_ignore_ascii_case(k));
        if let Some(v) = v {
            env.push((k.to_string(), v.to_string()));
        }
    }
}

pub struct TestSidecar {
    pub running: RunningSidecar,
    pub clock: ManualClock,
    pub url: String,
    pub http: reqwest::Client,
    pub env: Vec<(String, String)>,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl TestSidecar {
    pub async fn start(env: Vec<(String, String)>) -> TestSidecar {
        logs::init();
        let config = agentid_sidecar::config::load(&ConfigSources::from_vars(&env))
            .unwrap_or_else(|e| panic!("configuration refused: {e}"));
        let clock = ManualClock::new();
        let running = agentid_sidecar::start_with_clock(config, Arc::new(clock.clone()))
            .await
            .expect("sidecar starts");
        let url = running.url();
        TestSidecar {
            running,
            clock,
            url,
            http: http_client(),
            env,
        }
    }

    /// The sidecar in front of `sts`, directly (HTTPS, the STS's CA through ExtraCaBundlePath).
    pub async fn direct(sts: &TestSts, changes: &[(&str, Option<&str>)]) -> TestSidecar {
        let mut env = base_env(sts, sts.base());
        apply(&mut env, changes);
        Self::start(env).await
    }

    /// The sidecar in front of `relay` (plain HTTP on loopback, allowed for tests only).
    pub async fn relayed(
        sts: &TestSts,
        relay: &Relay,
        changes: &[(&str, Option<&str>)],
    ) -> TestSidecar {
        let mut env = base_env(sts, &relay.url);
        apply(
            &mut env,
            &[("Sidecar__AllowInsecureAuthority", Some("true"))],
        );
        apply(&mut env, changes);
        Self::start(env).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None, &[], None).await
    }

    pub async fn get_as(&self, path: &str, bearer: &str) -> Resp {
        self.send(reqwest::Method::GET, path, Some(bearer), &[], None)
            .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<(Vec<u8>, Option<&str>)>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some((bytes, ct)) = body {
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            req = req.body(bytes);
        }
        let r = req.send().await.expect("sidecar answers");
        let resp = Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        };
        contract::check(path, &resp);
        resp
    }

    /// The counters of `/metrics` as (sample name with labels, value).
    pub async fn metrics(&self) -> Vec<(String, f64)> {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200);
        contract::parse_prometheus(&r.text())
    }

    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .into_iter()
            .find(|(n, _)| n == sample)
            .map(|(_, v)| v)
            .unwrap_or(0.0)
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of a 200 `{"authorizationHeader":"Bearer …"}`.
    pub fn token(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.text());
        let h = self.json()["authorizationHeader"]
            .as_str()
            .unwrap()
            .to_string();
        h.strip_prefix("Bearer ")
            .expect("Bearer scheme")
            .to_string()
    }

    pub fn claims(&self) -> serde_json::Map<String, Value> {
        agentid_testkit::claims(&self.token())
    }

    pub fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A problem+json body with this status and detail.
    pub fn assert_problem(&self, status: u16, detail: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        assert_eq!(self.detail(), detail);
        assert_eq!(self.json()["status"], status);
    }
}

pub fn claim<'a>(c: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    c.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("claim {k} missing in {c:?}"))
}

/// Polls `f` until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    agentid_testkit::poll::eventually(Duration::from_secs(secs), what, f).await
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A random correlation id for a request, to find its log lines.
pub fn cid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A JWT with `claims`, signed with the STS's current key for its tenant (as the STS would).
pub async fn sign_as_sts(sts: &TestSts, claims: &Value) -> String {
    let tenant = sts.running.reports[0].tenant_id;
    let key = sts
        .running
        .state
        .keys
        .signer(&tenant, chrono::Utc::now().timestamp())
        .await
        .expect("signing key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    key.sign(&header, claims).expect("sign")
}

/// A JWT with an arbitrary header and an empty or fake signature.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    use base64::Engine;
    let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b(header), b(claims))
}
