//! Every refusal of sts.md's bad-input list: the right AADSTS code and status, an audit event,
//! and no other change to the database.

use agentid_testkit::certs::ClientCert;
use agentid_testkit::sts::Options;
use agentid_testkit::{Db, KubeIssuer, TestSts, both_backends};
use serde_json::{Value, json};

const DEMO: &str = include_str!("../../../examples/demo-tenant.yaml");
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
/// Form parameters with owned values.
type Params = Vec<(&'static str, String)>;

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

/// Sends `form`, expects a refusal with `status`/`code`, one new audit event, nothing else changed.
async fn refused(sts: &TestSts, form: &[(&str, &str)], status: u16, code: u64) -> Value {
    let before = counts(sts).await;
    let audits = sts.count("audit_events").await;
    let (st, body) = sts.token(form).await;
    assert_eq!(
        (st, body["error_codes"][0].as_u64()),
        (status, Some(code)),
        "{body}"
    );
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert!(
        desc.contains(" Trace ID: ")
            && desc.contains(" Correlation ID: ")
            && desc.contains(" Timestamp: "),
        "{desc}"
    );
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[k].is_string(), "{k} missing: {body}");
    }
    assert_eq!(
        counts(sts).await,
        before,
        "a refused request changed the directory"
    );
    assert_eq!(
        sts.count("audit_events").await,
        audits + 1,
        "one audit event per refusal"
    );
    body
}

async fn t1_for(sts: &TestSts, bp: &str, secret: &str, agent: &str) -> String {
    let (st, b) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", bp),
            ("client_secret", secret),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", agent),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    b["access_token"].as_str().unwrap().to_string()
}

async fn alice_tc(sts: &TestSts, scope: &str) -> String {
    let (st, b) = sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", scope),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    b["access_token"].as_str().unwrap().to_string()
}

both_backends!(client_identification_and_secrets, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let graph = "https://graph.microsoft.com/.default";
    let (st, b) = sts
        .post_form(
            &format!("{}/nope.example/oauth2/v2.0/token", sts.base()),
            &[("grant_type", CC)],
        )
        .await;
    assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(90002)));
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", "00000000-1111-2222-3333-444444444444"),
            ("client_secret", "x"),
            ("scope", graph),
        ],
        400,
        700016,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", "not-a-guid"),
            ("client_secret", "x"),
            ("scope", graph),
        ],
        400,
        700016,
    )
    .await;
    let b = refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", "wrong"),
            ("scope", graph),
        ],
        401,
        7000215,
    )
    .await;
    assert_eq!(b["error"], "invalid_client");
    refused(
        sts,
        &[("grant_type", CC), ("client_id", BP), ("scope", graph)],
        401,
        7000218,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", GRAPH_CLI),
            ("client_secret", "x"),
            ("scope", graph),
        ],
        401,
        700025,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", GRAPH_CLI),
            ("scope", graph),
        ],
        401,
        7000218,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", AGENT),
            ("client_secret", "x"),
            ("scope", graph),
        ],
        401,
        7000215,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
        ],
        400,
        900144,
    )
    .await;
    refused(
        sts,
        &[
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", graph),
        ],
        400,
        900144,
    )
    .await;
    refused(
        sts,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", BP),
        ],
        400,
        70003,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "https://graph.microsoft.com/User.Read"),
        ],
        400,
        1002012,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://nothing-here/.default"),
        ],
        400,
        500011,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://AzureADTokenExchange/.default"),
        ],
        400,
        82001,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", &format!("{graph} api://{BP}/.default")),
        ],
        400,
        70011,
    )
    .await;
    // Duplicated parameter, wrong content type, oversized body, wrong method.
    let before = counts(sts).await;
    let resp = sts
        .http
        .post(sts.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=a&client_id=b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error_codes"][0],
        9002313
    );
    let resp = sts
        .http
        .post(sts.token_url())
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error_codes"][0],
        9002313
    );
    let big = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(1024 * 1024)
    );
    let resp = sts
        .http
        .post(sts.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.json::<Value>().await.unwrap()["error_codes"][0].as_u64()
        ),
        (400, Some(9002313))
    );
    let resp = sts.http.get(sts.token_url()).send().await.unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error_codes"][0],
        900561
    );
    assert_eq!(counts(sts).await, before);
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
    let graph = "https://graph.microsoft.com/.default";
    let form = |a: &str| {
        vec![
            ("grant_type", CC.to_string()),
            ("client_id", CERT_APP.to_string()),
            ("scope", graph.to_string()),
            ("client_assertion_type", AT.to_string()),
            ("client_assertion", a.to_string()),
        ]
    };
    let send = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    let ok = f.cert.assertion(CERT_APP, &aud, 600, "jti-1");
    let (st, b) = sts
        .token(
            &send(&form(&ok))
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    // The same assertion again is accepted (MSAL reuses its signed assertion)...
    let (st, _) = sts
        .token(
            &send(&form(&ok))
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(st, 200);
    // ...but a different assertion with the same jti is a replay.
    let replay = f.cert.assertion(CERT_APP, &aud, 500, "jti-1");
    let cases: Vec<(String, u16, u64)> = vec![
        (replay, 401, 700027),
        (f.cert.assertion(CERT_APP, &aud, -600, "jti-2"), 401, 700024),
        (f.cert.sign(&json!({"aud": aud, "iss": CERT_APP, "sub": CERT_APP, "exp": chrono::Utc::now().timestamp() + 3600, "nbf": chrono::Utc::now().timestamp() + 1200, "jti": "jti-3"})), 401, 700024),
        (ClientCert::generate("other").assertion(CERT_APP, &aud, 600, "jti-4"), 401, 7000272),
        (f.cert.assertion(CERT_APP, "https://login.microsoftonline.com/x/oauth2/v2.0/token", 600, "jti-5"), 401, 700027),
        (f.cert.assertion(BP, &aud, 600, "jti-6"), 401, 700021),
        (f.cert.sign(&json!({"aud": aud, "iss": CERT_APP, "sub": CERT_APP, "exp": chrono::Utc::now().timestamp() + 600})), 400, 90014),
        ("not.a.jwt".to_string(), 400, 50027),
    ];
    for (assertion, status, code) in cases {
        let v = send(&form(&assertion));
        refused(
            sts,
            &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
            status,
            code,
        )
        .await;
    }
    // Signature by another key under the registered thumbprint; alg none; HS256.
    let mut forged = f.cert.assertion(CERT_APP, &aud, 600, "jti-7");
    forged.truncate(forged.rfind('.').unwrap());
    let other = ClientCert::generate("x").assertion(CERT_APP, &aud, 600, "jti-7");
    forged.push_str(&other[other.rfind('.').unwrap()..]);
    let b64 = |s: &str| base64_url(s.as_bytes());
    let payload = b64(&json!({"aud": aud, "iss": CERT_APP, "sub": CERT_APP, "exp": chrono::Utc::now().timestamp() + 600, "jti": "jti-8"}).to_string());
    let none = format!(
        "{}.{payload}.",
        b64(&json!({"alg": "none", "x5t": f.cert.x5t}).to_string())
    );
    let hs = jsonwebtoken::encode(&{ let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256); h.x5t = Some(f.cert.x5t.clone()); h },
        &json!({"aud": aud, "iss": CERT_APP, "sub": CERT_APP, "exp": chrono::Utc::now().timestamp() + 600, "jti": "jti-9"}), &jsonwebtoken::EncodingKey::from_secret(f.cert.cert_pem.as_bytes())).unwrap();
    for a in [forged, none, hs] {
        let v = send(&form(&a));
        refused(
            sts,
            &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
            401,
            700027,
        )
        .await;
    }
    // A secret and an assertion together is malformed.
    let mut v = send(&form(&f.cert.assertion(CERT_APP, &aud, 600, "jti-10")));
    v.push(("client_secret", "x".into()));
    refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        9002313,
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
    let graph = "https://graph.microsoft.com/.default";
    let good = f
        .kube
        .mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
    let (st, b) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", FIC_BP),
            ("scope", graph),
            ("client_assertion_type", AT),
            ("client_assertion", &good),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    let other_issuer = KubeIssuer::start().await;
    let cases = [
        (
            other_issuer.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600),
            700211,
        ),
        (
            f.kube
                .mint("agents", "Blog-Agent", "api://AzureADTokenExchange", 3600),
            700213,
        ),
        (
            f.kube.mint(
                "agents",
                "blog-agent",
                "https://kubernetes.default.svc",
                3600,
            ),
            70021,
        ),
        (
            f.kube.mint_at(
                "agents",
                "blog-agent",
                "api://AzureADTokenExchange",
                chrono::Utc::now().timestamp() - 7200,
                3600,
            ),
            700024,
        ),
    ];
    for (a, code) in cases {
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", FIC_BP),
                ("scope", graph),
                ("client_assertion_type", AT),
                ("client_assertion", &a),
            ],
            401,
            code,
        )
        .await;
    }
    // Signed by a key the trusted issuer's stored JWKS does not hold (same kid).
    let mut forged = good.clone();
    forged.truncate(forged.rfind('.').unwrap());
    let o = other_issuer.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
    forged.push_str(&o[o.rfind('.').unwrap()..]);
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", FIC_BP),
            ("scope", graph),
            ("client_assertion_type", AT),
            ("client_assertion", &forged),
        ],
        401,
        700027,
    )
    .await;
    // An agentid-issued token is not a federated credential.
    let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
    refused(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", FIC_BP),
            ("scope", graph),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
        ],
        401,
        700222,
    )
    .await;
    f.sts.stop().await;
});

both_backends!(
    agent_flows_refuse_foreign_and_disabled,
    |db: Db| async move {
        let f = fixture(db).await;
        let sts = &f.sts;
        let graph = "https://graph.microsoft.com/.default";
        let tx = "api://AzureADTokenExchange/.default";
        // fmi_path naming an agent of another blueprint, a disabled agent, nothing, or from a plain app.
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", BP),
                ("client_secret", BP_SECRET),
                ("scope", tx),
                ("fmi_path", OTHER_AGENT),
            ],
            400,
            82001,
        )
        .await;
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", BP),
                ("client_secret", BP_SECRET),
                ("scope", tx),
                ("fmi_path", DISABLED_AGENT),
            ],
            400,
            7000112,
        )
        .await;
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", BP),
                ("client_secret", BP_SECRET),
                ("scope", tx),
                ("fmi_path", "5f0e0c8e-0000-4000-8000-000000000000"),
            ],
            400,
            700016,
        )
        .await;
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", NO_CONSENT_APP),
                ("client_secret", "plain-secret"),
                ("scope", tx),
                ("fmi_path", AGENT),
            ],
            400,
            82001,
        )
        .await;
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", BP),
                ("client_secret", BP_SECRET),
                ("scope", graph),
                ("fmi_path", AGENT),
            ],
            400,
            70011,
        )
        .await;
        // A disabled blueprint principal gets nothing, for itself or its agents.
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", OFF_BP),
                ("client_secret", "off-secret"),
                ("scope", graph),
            ],
            400,
            7000112,
        )
        .await;
        // T1 used by a different agent (of another blueprint, or a sibling).
        let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", OTHER_AGENT),
                ("scope", graph),
                ("client_assertion_type", AT),
                ("client_assertion", &t1),
            ],
            401,
            700213,
        )
        .await;
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", DISABLED_AGENT),
                ("scope", graph),
                ("client_assertion_type", AT),
                ("client_assertion", &t1),
            ],
            401,
            700213,
        )
        .await;
        // An agent presenting a foreign assertion.
        let sa = f
            .kube
            .mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", AGENT),
                ("scope", graph),
                ("client_assertion_type", AT),
                ("client_assertion", &sa),
            ],
            401,
            700211,
        )
        .await;
        // A T2 (not a T1) as the agent's assertion.
        let (_, t2) = sts
            .token(&[
                ("grant_type", CC),
                ("client_id", AGENT),
                ("scope", tx),
                ("client_assertion_type", AT),
                ("client_assertion", &t1),
            ])
            .await;
        let t2p = t2["access_token"].as_str().unwrap().to_string();
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", AGENT),
                ("scope", graph),
                ("client_assertion_type", AT),
                ("client_assertion", &t2p),
            ],
            401,
            700222,
        )
        .await;
        // T1 presented as a user assertion.
        refused(
            sts,
            &[
                ("grant_type", OBO),
                ("client_id", AGENT),
                ("requested_token_use", "on_behalf_of"),
                ("assertion", &t1),
                ("scope", graph),
                ("client_assertion_type", AT),
                ("client_assertion", &t1),
            ],
            400,
            50013,
        )
        .await;
        // fmi_path from an agent.
        refused(
            sts,
            &[
                ("grant_type", CC),
                ("client_id", AGENT),
                ("scope", tx),
                ("fmi_path", AGENT),
                ("client_assertion_type", AT),
                ("client_assertion", &t1),
            ],
            400,
            82001,
        )
        .await;
        f.sts.stop().await;
    }
);

both_backends!(on_behalf_of_refusals, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let graph = "https://graph.microsoft.com/.default";
    let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
    let tc = alice_tc(sts, &format!("api://{BP}/access_as_user")).await;
    let obo = |assertion: &str, scope: &str| {
        vec![
            ("grant_type", OBO.to_string()),
            ("client_id", AGENT.to_string()),
            ("requested_token_use", "on_behalf_of".to_string()),
            ("assertion", assertion.to_string()),
            ("scope", scope.to_string()),
            ("client_assertion_type", AT.to_string()),
            ("client_assertion", t1.clone()),
        ]
    };
    let as_refs = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    // A user token for another audience (Graph) is refused.
    let graph_tc = alice_tc(sts, "User.Read").await;
    let v = as_refs(&obo(&graph_tc, graph));
    refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        500131,
    )
    .await;
    // An expired user token (signed by the STS's own key).
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
    let v = as_refs(&obo(&expired, graph));
    refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        500133,
    )
    .await;
    // A tampered token fails signature validation.
    let mut tampered = tc.clone();
    tampered.pop();
    tampered.push(if tc.ends_with('A') { 'B' } else { 'A' });
    let v = as_refs(&obo(&tampered, graph));
    refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        50013,
    )
    .await;
    // No consent: the agent has no grant on the plain app's API.
    let v = as_refs(&obo(&tc, &format!("api://{NO_CONSENT_APP}/read")));
    let b = refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        65001,
    )
    .await;
    assert_eq!(b["suberror"], "consent_required");
    // Missing requested_token_use / a wrong one.
    let mut v = as_refs(&obo(&tc, graph));
    v.retain(|(k, _)| *k != "requested_token_use");
    refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        900144,
    )
    .await;
    let mut v = as_refs(&obo(&tc, graph));
    v[2].1 = "something_else".into();
    refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        9002313,
    )
    .await;
    // Password grant: wrong password and an agent client.
    refused(
        sts,
        &[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "nope"),
            ("scope", "User.Read"),
        ],
        400,
        50126,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "nobody@contoso.test"),
            ("password", "nope"),
            ("scope", "User.Read"),
        ],
        400,
        50126,
    )
    .await;
    refused(
        sts,
        &[
            ("grant_type", "password"),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", "User.Read"),
        ],
        400,
        82001,
    )
    .await;
    // Refresh with an unknown token.
    refused(
        sts,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", GRAPH_CLI),
            ("refresh_token", "bogus"),
        ],
        400,
        70000,
    )
    .await;
    f.sts.stop().await;
});

both_backends!(agent_user_refusals, |db: Db| async move {
    let f = fixture(db).await;
    let sts = &f.sts;
    let graph = "https://graph.microsoft.com/.default";
    let tx = "api://AzureADTokenExchange/.default";
    let t1 = t1_for(sts, BP, BP_SECRET, AGENT).await;
    let (st, b) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", AGENT),
            ("scope", tx),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    let t2p = b["access_token"].as_str().unwrap().to_string();
    let agent_user = sts.id("agentUsers", "blog-agent");
    let base = |extra: &[(&'static str, String)]| {
        let mut v = vec![
            ("grant_type", "user_fic".to_string()),
            ("client_id", AGENT.to_string()),
            ("scope", graph.to_string()),
            ("client_assertion_type", AT.to_string()),
            ("client_assertion", t1.clone()),
            ("user_federated_identity_credential", t2p.clone()),
        ];
        for (k, val) in extra {
            v.retain(|(x, _)| x != k);
            v.push((k, val.clone()));
        }
        v
    };
    // It works by object id...
    let v = base(&[("user_id", agent_user.clone())]);
    let (st, b) = sts
        .token(&v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        agentid_testkit::claims(b["access_token"].as_str().unwrap())["oid"],
        agent_user.as_str()
    );
    // ...and refuses everything else.
    let cases: Vec<(Params, u16, u64)> = vec![
        (base(&[]), 400, 900144),
        (
            base(&[
                ("username", "blog-agent@contoso.test".into()),
                ("user_id", agent_user.clone()),
            ]),
            400,
            9002313,
        ),
        (
            base(&[("user_id", "blog-agent@contoso.test".into())]),
            400,
            50000,
        ),
        (
            base(&[("username", "nobody@contoso.test".into())]),
            400,
            50034,
        ),
        (
            base(&[("username", "alice@contoso.test".into())]),
            400,
            82001,
        ),
        (
            base(&[
                ("username", "blog-agent@contoso.test".into()),
                ("user_federated_identity_credential", t1.clone()),
            ]),
            400,
            50013,
        ),
        (
            base(&[
                ("username", "blog-agent@contoso.test".into()),
                ("user_federated_identity_credential", "x.y".into()),
            ]),
            400,
            50027,
        ),
    ];
    for (v, status, code) in cases {
        refused(
            sts,
            &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
            status,
            code,
        )
        .await;
    }
    // Another agent cannot use this agent's T2′ or act as its user.
    let other_t1 = t1_for(sts, OTHER_BP, "other-secret", OTHER_AGENT).await;
    let mut v = base(&[("username", "blog-agent@contoso.test".into())]);
    v[1].1 = OTHER_AGENT.into();
    v[4].1 = other_t1;
    refused(
        sts,
        &v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        400,
        50013,
    )
    .await;
    f.sts.stop().await;
});
