//! Every refusal of docs/sts.md's bad-input list: the right AADSTS code and status, an audit event,
//! and no other change to the database. Each group is a table of named cases; `refuse_all` runs
//! a table and names the case that failed.

use agentid_testkit::certs::ClientCert;
use agentid_testkit::sts::Options;
use agentid_testkit::{Db, KubeIssuer, TestSts, both_backends};
use serde_json::{Value, json};

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const OTHER_BP: &str = "6a1f0c3e-4b2d-4e5f-8a9b-0c1d2e3f4a5b";
const OTHER_AGENT: &str = "7b2e1d4f-5c3e-4f6a-9b0c-1d2e3f4a5b6c";
const DISABLED_AGENT: &str = "8c3f2e5a-6d4f-4a7b-8c1d-2e3f4a5b6c7d";
const OFF_BP: &str = "9d4a3f6b-7e5a-4b8c-9d2e-3f4a5b6c7d8e";
const CERT_APP: &str = "c4a1e0b2-8d3f-4a6b-9e7c-1f2d3b4a5c6d";
const FIC_BP: &str = "3d1b7a2e-6a0e-4f58-9c1b-2f0e8a9d7c11";
const NO_CONSENT_APP: &str = "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const CC: &str = "client_credentials";
const AT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const OBO: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TABLES: [&str; 9] = [
    "tenants",
    "users",
    "applications",
    "service_principals",
    "password_credentials",
    "federated_credentials",
    "oauth2_permission_grants",
    "refresh_tokens",
    "signing_keys",
];

fn tenant(kube: &KubeIssuer) -> String {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(DEMO).unwrap();
    let add = |doc: &mut serde_yaml_ng::Value, key: &str, item: String| {
        let item: serde_yaml_ng::Value = serde_yaml_ng::from_str(&item).unwrap();
        let seq = doc
            .as_mapping_mut()
            .unwrap()
            .entry(key.into())
            .or_insert(serde_yaml_ng::Value::Sequence(vec![]));
        seq.as_sequence_mut().unwrap().push(item);
    };
    add(
        &mut doc,
        "blueprints",
        format!(
            "{{name: other-bp, appId: {OTHER_BP}, secrets: [{{value: other-secret}}], agents: [{{name: other-agent, id: {OTHER_AGENT}}}]}}"
        ),
    );
    add(
        &mut doc,
        "blueprints",
        format!(
            "{{name: off-bp, appId: {OFF_BP}, enabled: false, secrets: [{{value: off-secret}}], agents: [{{name: off-agent}}]}}"
        ),
    );
    let bp = doc["blueprints"][0]["agents"].as_sequence_mut().unwrap();
    bp.push(
        serde_yaml_ng::from_str(&format!(
            "{{name: disabled-agent, id: {DISABLED_AGENT}, enabled: false}}"
        ))
        .unwrap(),
    );
    add(
        &mut doc,
        "applications",
        format!("{{name: cert-app, appId: {CERT_APP}, certificates: [{{file: client-cert.pem}}]}}"),
    );
    add(
        &mut doc,
        "applications",
        format!(
            "{{name: plain-app, appId: {NO_CONSENT_APP}, identifierUris: ['api://{NO_CONSENT_APP}'], scopes: [read], secrets: [{{value: plain-secret}}]}}"
        ),
    );
    add(
        &mut doc,
        "blueprints",
        format!(
            "{{name: k8s-bp, appId: {FIC_BP}, federatedCredentials: [{{name: sa-fic, issuer: '{iss}', subject: 'system:serviceaccount:agents:blog-agent'}}]}}",
            iss = kube.issuer
        ),
    );
    add(
        &mut doc,
        "trustedIssuers",
        format!(
            "{{issuer: '{}', jwks: {{inline: {}}}, allowHttp: true}}",
            kube.issuer,
            kube.jwks_json()
        ),
    );
    serde_yaml_ng::to_string(&doc).unwrap()
}

struct Fixture {
    sts: TestSts,
    kube: KubeIssuer,
    cert: ClientCert,
}

async fn fixture(db: Db) -> Fixture {
    let kube = KubeIssuer::start().await;
    let dir = TestSts::prepare_dir();
    let cert = ClientCert::generate("bad-input");
    std::fs::write(dir.path().join("client-cert.pem"), &cert.cert_pem).unwrap();
    let sts = TestSts::start_in(dir, db, &tenant(&kube), Options::default()).await;
    Fixture { sts, kube, cert }
}

async fn counts(sts: &TestSts) -> Vec<i64> {
    let mut v = Vec::new();
    for t in TABLES {
        v.push(sts.count(t).await);
    }
    v
}

const GRAPH: &str = "https://graph.microsoft.com/.default";
const EXCHANGE: &str = "api://AzureADTokenExchange/.default";

/// A token-endpoint form with owned values, so a case can carry a token minted at run time.
#[derive(Clone)]
struct Form(Vec<(&'static str, String)>);

impl Form {
    fn new(pairs: &[(&'static str, &str)]) -> Self {
        Self(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    /// Sets `key` to `value`: in place when present, else appended.
    fn with(mut self, key: &'static str, value: &str) -> Self {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((key, value.to_string())),
        }
        self
    }

    fn without(mut self, key: &str) -> Self {
        self.0.retain(|(k, _)| *k != key);
        self
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// One refusal: the form sent, the status and AADSTS code it must get.
struct Case {
    name: &'static str,
    form: Form,
    status: u16,
    code: u64,
    /// Further top-level fields the error body must carry (`error`, `suberror`).
    fields: &'static [(&'static str, &'static str)],
}

fn case(name: &'static str, form: Form, status: u16, code: u64) -> Case {
    Case {
        name,
        form,
        status,
        code,
        fields: &[],
    }
}

impl Case {
    fn body_has(self, fields: &'static [(&'static str, &'static str)]) -> Self {
        Self { fields, ..self }
    }
}

/// Runs each case in order through `refused`.
async fn refuse_all(sts: &TestSts, cases: Vec<Case>) {
    for case in &cases {
        refused(sts, case).await;
    }
}

/// Sends the case's form, expects its refusal, one new audit event and nothing else changed.
async fn refused(sts: &TestSts, case: &Case) {
    let name = case.name;
    let code = case.code;
    let before = counts(sts).await;
    let audits = sts.count("audit_events").await;
    let (st, body) = sts.token(&case.form.pairs()).await;
    assert_eq!(
        (st, body["error_codes"][0].as_u64()),
        (case.status, Some(code)),
        "{name}: {body}"
    );
    let desc = body["error_description"].as_str().unwrap();
    assert!(
        desc.starts_with(&format!("AADSTS{code}: ")),
        "{name}: {desc}"
    );
    assert!(
        desc.contains(" Trace ID: ")
            && desc.contains(" Correlation ID: ")
            && desc.contains(" Timestamp: "),
        "{name}: {desc}"
    );
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[k].is_string(), "{name}: {k} missing: {body}");
    }
    for (k, v) in case.fields {
        assert_eq!(body[*k], *v, "{name}: {body}");
    }
    assert_eq!(
        counts(sts).await,
        before,
        "{name}: a refused request changed the directory"
    );
    assert_eq!(
        sts.count("audit_events").await,
        audits + 1,
        "{name}: one audit event per refusal"
    );
}

/// A request the form helper cannot send: another tenant, method, content type or encoding.
struct RawCase {
    name: &'static str,
    method: reqwest::Method,
    url: String,
    /// With the body it labels; `None` sends no body.
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: u64,
}

/// Sends each raw request; each gets its status and AADSTS code and changes nothing.
async fn refuse_raw(sts: &TestSts, cases: Vec<RawCase>) {
    for case in cases {
        let name = case.name;
        let before = counts(sts).await;
        let mut req = sts.http.request(case.method, &case.url);
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct).body(case.body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, body["error_codes"][0].as_u64()),
            (case.status, Some(case.code)),
            "{name}: {body}"
        );
        assert_eq!(counts(sts).await, before, "{name}: the directory changed");
    }
}

async fn t1_for(sts: &TestSts, bp: &str, secret: &str, agent: &str) -> String {
    sts.token_ok(&[
        ("grant_type", CC),
        ("client_id", bp),
        ("client_secret", secret),
        ("scope", EXCHANGE),
        ("fmi_path", agent),
    ])
    .await
}

async fn alice_tc(sts: &TestSts, scope: &str) -> String {
    sts.token_ok(&[
        ("grant_type", "password"),
        ("client_id", GRAPH_CLI),
        ("username", "alice@contoso.test"),
        ("password", "correct-horse-battery"),
        ("scope", scope),
    ])
    .await
}

/// A client-credentials form authenticated by `client_secret`.
fn with_secret(client: &str, secret: &str, scope: &str) -> Form {
    Form::new(&[
        ("grant_type", CC),
        ("client_id", client),
        ("client_secret", secret),
        ("scope", scope),
    ])
}

/// A client-credentials form authenticated by a `client_assertion`.
fn with_assertion(client: &str, scope: &str, assertion: &str) -> Form {
    Form::new(&[
        ("grant_type", CC),
        ("client_id", client),
        ("scope", scope),
        ("client_assertion_type", AT),
        ("client_assertion", assertion),
    ])
}

both_backends!(client_identification_and_secrets, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let bp = |scope: &str| with_secret(BP, BP_SECRET, scope);
    refuse_all(
        sts,
        vec![
            case(
                "unknown client id",
                with_secret("00000000-1111-2222-3333-444444444444", "x", GRAPH),
                400,
                700016,
            ),
            case(
                "client id not a GUID",
                with_secret("not-a-guid", "x", GRAPH),
                400,
                700016,
            ),
            case(
                "wrong secret",
                with_secret(BP, "wrong", GRAPH),
                401,
                7000215,
            )
            .body_has(&[("error", "invalid_client")]),
            case(
                "confidential client without a credential",
                bp(GRAPH).without("client_secret"),
                401,
                7000218,
            ),
            case(
                "secret from a public client",
                with_secret(GRAPH_CLI, "x", GRAPH),
                401,
                700025,
            ),
            case(
                "public client without a credential",
                with_secret(GRAPH_CLI, "x", GRAPH).without("client_secret"),
                401,
                7000218,
            ),
            case(
                "secret for an agent",
                with_secret(AGENT, "x", GRAPH),
                401,
                7000215,
            ),
            case("no scope", bp(GRAPH).without("scope"), 400, 900144),
            case(
                "no grant_type",
                bp(GRAPH).without("grant_type"),
                400,
                900144,
            ),
            case(
                "unsupported grant_type",
                Form::new(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("client_id", BP),
                ]),
                400,
                70003,
            ),
            case(
                "client credentials with a non-.default scope",
                bp("https://graph.microsoft.com/User.Read"),
                400,
                1002012,
            ),
            case(
                "unknown resource",
                bp("api://nothing-here/.default"),
                400,
                500011,
            ),
            case(
                "token exchange scope without fmi_path",
                bp(EXCHANGE),
                400,
                82001,
            ),
            case(
                "two resources",
                bp(&format!("{GRAPH} api://{BP}/.default")),
                400,
                70011,
            ),
        ],
    )
    .await;
    let form = "application/x-www-form-urlencoded";
    let post = |name, url: String, content_type, body: &str, code| RawCase {
        name,
        method: reqwest::Method::POST,
        url,
        content_type: Some(content_type),
        body: body.to_string(),
        status: 400,
        code,
    };
    refuse_raw(
        sts,
        vec![
            post(
                "unknown tenant",
                format!("{}/nope.example/oauth2/v2.0/token", sts.base()),
                form,
                "grant_type=client_credentials",
                90002,
            ),
            post(
                "duplicated parameter",
                sts.token_url(),
                form,
                "grant_type=client_credentials&client_id=a&client_id=b",
                9002313,
            ),
            post(
                "JSON body",
                sts.token_url(),
                "application/json",
                &json!({"grant_type": "client_credentials"}).to_string(),
                9002313,
            ),
            post(
                "oversized body",
                sts.token_url(),
                form,
                &format!(
                    "grant_type=client_credentials&pad={}",
                    "a".repeat(1024 * 1024)
                ),
                9002313,
            ),
            RawCase {
                name: "GET",
                method: reqwest::Method::GET,
                url: sts.token_url(),
                content_type: None,
                body: String::new(),
                status: 400,
                code: 900561,
            },
        ],
    )
    .await;
    // Nothing above took the server down.
    let resp = sts
        .http
        .get(format!("{}/healthz", sts.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    f.sts.stop().await;
});

both_backends!(private_key_jwt_assertions, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let aud = sts.token_url();
    let form = |a: &str| with_assertion(CERT_APP, GRAPH, a);
    let ok = form(&f.cert.assertion(CERT_APP, &aud, 600, "jti-1"));
    sts.token_ok(&ok.pairs()).await;
    // The same assertion again is accepted (MSAL reuses its signed assertion)...
    sts.token_ok(&ok.pairs()).await;
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: Value| {
        let mut c = json!({"aud": aud, "iss": CERT_APP, "sub": CERT_APP, "exp": now + 600});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    // Signature by another key under the registered thumbprint.
    let mut forged = f.cert.assertion(CERT_APP, &aud, 600, "jti-7");
    forged.truncate(forged.rfind('.').unwrap());
    let other = ClientCert::generate("x").assertion(CERT_APP, &aud, 600, "jti-7");
    forged.push_str(&other[other.rfind('.').unwrap()..]);
    let b64 = |v: &Value| base64_url(v.to_string().as_bytes());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "x5t": f.cert.x5t})),
        b64(&claims(json!({"jti": "jti-8"})))
    );
    let mut hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs256.x5t = Some(f.cert.x5t.clone());
    let hs = jsonwebtoken::encode(
        &hs256,
        &claims(json!({"jti": "jti-9"})),
        &jsonwebtoken::EncodingKey::from_secret(f.cert.cert_pem.as_bytes()),
    )
    .unwrap();
    refuse_all(
        sts,
        vec![
            // ...but a different assertion with the same jti is a replay.
            case(
                "another assertion reusing a jti",
                form(&f.cert.assertion(CERT_APP, &aud, 500, "jti-1")),
                401,
                700027,
            ),
            case(
                "expired",
                form(&f.cert.assertion(CERT_APP, &aud, -600, "jti-2")),
                401,
                700024,
            ),
            case(
                "not yet valid",
                form(&f.cert.sign(&claims(
                    json!({"exp": now + 3600, "nbf": now + 1200, "jti": "jti-3"}),
                ))),
                401,
                700024,
            ),
            case(
                "signed by an unregistered certificate",
                form(&ClientCert::generate("other").assertion(CERT_APP, &aud, 600, "jti-4")),
                401,
                7000272,
            ),
            case(
                "audience of another authority",
                form(&f.cert.assertion(
                    CERT_APP,
                    "https://login.microsoftonline.com/x/oauth2/v2.0/token",
                    600,
                    "jti-5",
                )),
                401,
                700027,
            ),
            case(
                "issuer is another client",
                form(&f.cert.assertion(BP, &aud, 600, "jti-6")),
                401,
                700021,
            ),
            case("no jti", form(&f.cert.sign(&claims(json!({})))), 400, 90014),
            case("not a JWT", form("not.a.jwt"), 400, 50027),
            case(
                "registered thumbprint, another key's signature",
                form(&forged),
                401,
                700027,
            ),
            case("alg none", form(&none), 401, 700027),
            case("HS256 keyed with the certificate", form(&hs), 401, 700027),
            case(
                "a secret and an assertion together",
                form(&f.cert.assertion(CERT_APP, &aud, 600, "jti-10")).with("client_secret", "x"),
                400,
                9002313,
            ),
        ],
    )
    .await;
    f.sts.stop().await;
});

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

both_backends!(federated_assertions, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let fic = |a: &str| with_assertion(FIC_BP, GRAPH, a);
    let good = f
        .kube
        .mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
    sts.token_ok(&fic(&good).pairs()).await;
    let other_issuer = KubeIssuer::start().await;
    // Signed by a key the trusted issuer's stored JWKS does not hold (same kid).
    let mut forged = good.clone();
    forged.truncate(forged.rfind('.').unwrap());
    let o = other_issuer.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
    forged.push_str(&o[o.rfind('.').unwrap()..]);
    let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
    refuse_all(
        sts,
        vec![
            case(
                "issuer not trusted",
                fic(&other_issuer.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600)),
                401,
                700211,
            ),
            case(
                "subject differs in case",
                fic(&f
                    .kube
                    .mint("agents", "Blog-Agent", "api://AzureADTokenExchange", 3600)),
                401,
                700213,
            ),
            case(
                "audience is the API server",
                fic(&f.kube.mint(
                    "agents",
                    "blog-agent",
                    "https://kubernetes.default.svc",
                    3600,
                )),
                401,
                70021,
            ),
            case(
                "expired",
                fic(&f.kube.mint_at(
                    "agents",
                    "blog-agent",
                    "api://AzureADTokenExchange",
                    chrono::Utc::now().timestamp() - 7200,
                    3600,
                )),
                401,
                700024,
            ),
            case(
                "signed by a key the stored JWKS does not hold",
                fic(&forged),
                401,
                700027,
            ),
            // An agentid-issued token is not a federated credential.
            case("a T1 as the federated credential", fic(&t1), 401, 700222),
        ],
    )
    .await;
    f.sts.stop().await;
});

both_backends!(
    agent_flows_refuse_foreign_and_disabled,
    |db: Db| async move {
        let f = fixture(db).await;
        let sts = &f.sts;
        let fmi = |client: &str, secret: &str, scope: &str, path: &str| {
            with_secret(client, secret, scope).with("fmi_path", path)
        };
        let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
        let sa = f
            .kube
            .mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
        let t2 = sts
            .token_ok(&with_assertion(AGENT, EXCHANGE, &t1).pairs())
            .await;
        refuse_all(
            sts,
            vec![
                // fmi_path naming an agent of another blueprint, a disabled agent, nothing, or
                // from a plain app.
                case(
                    "fmi_path names another blueprint's agent",
                    fmi(BP, BP_SECRET, EXCHANGE, OTHER_AGENT),
                    400,
                    82001,
                ),
                case(
                    "fmi_path names a disabled agent",
                    fmi(BP, BP_SECRET, EXCHANGE, DISABLED_AGENT),
                    400,
                    7000112,
                ),
                case(
                    "fmi_path names nothing",
                    fmi(
                        BP,
                        BP_SECRET,
                        EXCHANGE,
                        "5f0e0c8e-0000-4000-8000-000000000000",
                    ),
                    400,
                    700016,
                ),
                case(
                    "fmi_path from a plain application",
                    fmi(NO_CONSENT_APP, "plain-secret", EXCHANGE, AGENT),
                    400,
                    82001,
                ),
                case(
                    "fmi_path with a resource scope",
                    fmi(BP, BP_SECRET, GRAPH, AGENT),
                    400,
                    70011,
                ),
                // A disabled blueprint principal gets nothing, for itself or its agents.
                case(
                    "disabled blueprint",
                    with_secret(OFF_BP, "off-secret", GRAPH),
                    400,
                    7000112,
                ),
                // T1 used by a different agent (of another blueprint, or a sibling).
                case(
                    "T1 used by another blueprint's agent",
                    with_assertion(OTHER_AGENT, GRAPH, &t1),
                    401,
                    700213,
                ),
                case(
                    "T1 used by a sibling agent",
                    with_assertion(DISABLED_AGENT, GRAPH, &t1),
                    401,
                    700213,
                ),
                case(
                    "agent presenting a foreign assertion",
                    with_assertion(AGENT, GRAPH, &sa),
                    401,
                    700211,
                ),
                case(
                    "a T2 (not a T1) as the agent's assertion",
                    with_assertion(AGENT, GRAPH, &t2),
                    401,
                    700222,
                ),
                case(
                    "T1 as the OBO user assertion",
                    with_assertion(AGENT, GRAPH, &t1)
                        .with("grant_type", OBO)
                        .with("requested_token_use", "on_behalf_of")
                        .with("assertion", &t1),
                    400,
                    50013,
                ),
                case(
                    "fmi_path from an agent",
                    with_assertion(AGENT, EXCHANGE, &t1).with("fmi_path", AGENT),
                    400,
                    82001,
                ),
            ],
        )
        .await;
        f.sts.stop().await;
    }
);

both_backends!(on_behalf_of_refusals, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
    let tc = alice_tc(sts, &format!("api://{BP}/access_as_user")).await;
    let obo = |assertion: &str, scope: &str| {
        Form::new(&[
            ("grant_type", OBO),
            ("client_id", AGENT),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", assertion),
            ("scope", scope),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
        ])
    };
    let graph_tc = alice_tc(sts, "User.Read").await;
    // An expired user token, signed by the STS's own key.
    let mut c = agentid_testkit::claims(&tc);
    c.insert("exp".into(), json!(chrono::Utc::now().timestamp() - 3600));
    let key = sts
        .running
        .state
        .keys
        .signer(
            &sts.tenant_id.parse().unwrap(),
            chrono::Utc::now().timestamp(),
        )
        .await
        .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some(key.kid.clone());
    let expired = key.sign(&h, &c).unwrap();
    let mut tampered = tc.clone();
    tampered.pop();
    tampered.push(if tc.ends_with('A') { 'B' } else { 'A' });
    let password = |client: &str, username: &str, password: &str| {
        Form::new(&[
            ("grant_type", "password"),
            ("client_id", client),
            ("username", username),
            ("password", password),
            ("scope", "User.Read"),
        ])
    };
    refuse_all(
        sts,
        vec![
            case(
                "user token for another audience (Graph)",
                obo(&graph_tc, GRAPH),
                400,
                500131,
            ),
            case("expired user token", obo(&expired, GRAPH), 400, 500133),
            case("tampered user token", obo(&tampered, GRAPH), 400, 50013),
            // The agent has no grant on the plain app's API.
            case(
                "no consent",
                obo(&tc, &format!("api://{NO_CONSENT_APP}/read")),
                400,
                65001,
            )
            .body_has(&[("suberror", "consent_required")]),
            case(
                "no requested_token_use",
                obo(&tc, GRAPH).without("requested_token_use"),
                400,
                900144,
            ),
            case(
                "wrong requested_token_use",
                obo(&tc, GRAPH).with("requested_token_use", "something_else"),
                400,
                9002313,
            ),
            case(
                "password grant, wrong password",
                password(GRAPH_CLI, "alice@contoso.test", "nope"),
                400,
                50126,
            ),
            case(
                "password grant, unknown user",
                password(GRAPH_CLI, "nobody@contoso.test", "nope"),
                400,
                50126,
            ),
            case(
                "password grant from a blueprint",
                password(BP, "alice@contoso.test", "correct-horse-battery")
                    .with("client_secret", BP_SECRET),
                400,
                82001,
            ),
            case(
                "refresh with an unknown token",
                Form::new(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", GRAPH_CLI),
                    ("refresh_token", "bogus"),
                ]),
                400,
                70000,
            ),
        ],
    )
    .await;
    f.sts.stop().await;
});

both_backends!(agent_user_refusals, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
    let t2p = sts
        .token_ok(&with_assertion(AGENT, EXCHANGE, &t1).pairs())
        .await;
    let agent_user = sts.id("agentUsers", "blog-agent");
    let base = with_assertion(AGENT, GRAPH, &t1)
        .with("grant_type", "user_fic")
        .with("user_federated_identity_credential", &t2p);
    let by_name = base.clone().with("username", "blog-agent@contoso.test");
    // It works by object id...
    let token = sts
        .token_ok(&base.clone().with("user_id", &agent_user).pairs())
        .await;
    assert_eq!(agentid_testkit::claims(&token)["oid"], agent_user.as_str());
    // ...and refuses everything else.
    let other_t1 = t1_for(sts, OTHER_BP, "other-secret", OTHER_AGENT).await;
    refuse_all(
        sts,
        vec![
            case("neither username nor user_id", base.clone(), 400, 900144),
            case(
                "both username and user_id",
                by_name.clone().with("user_id", &agent_user),
                400,
                9002313,
            ),
            case(
                "user_id that is not an object id",
                base.clone().with("user_id", "blog-agent@contoso.test"),
                400,
                50000,
            ),
            case(
                "unknown username",
                base.clone().with("username", "nobody@contoso.test"),
                400,
                50034,
            ),
            case(
                "username of a person",
                base.clone().with("username", "alice@contoso.test"),
                400,
                82001,
            ),
            case(
                "a T1 as the user credential",
                by_name
                    .clone()
                    .with("user_federated_identity_credential", &t1),
                400,
                50013,
            ),
            case(
                "user credential not a JWT",
                by_name
                    .clone()
                    .with("user_federated_identity_credential", "x.y"),
                400,
                50027,
            ),
            // Another agent cannot use this agent's T2′ or act as its user.
            case(
                "another agent with this agent's T2′",
                by_name
                    .clone()
                    .with("client_id", OTHER_AGENT)
                    .with("client_assertion", &other_t1),
                400,
                50013,
            ),
        ],
    )
    .await;
    f.sts.stop().await;
});
