//! The adversarial suite for the STS's verifiers (issue 10, RFC 8725 / RFC 9700): client
//! assertions (certificate, federated, T1), OBO and `user_fic` assertions, and the Graph bearer
//! check, each attacked through the real token endpoint / Graph API over HTTPS, on SQLite and
//! PostgreSQL. Every case asserts the exact refusal, that an audit event was written, and that
//! the server still answers the next request (nothing panicked).

use agentid_testkit::hostile::{claims_with, forge, header_with};
use agentid_testkit::{Db, KubeIssuer, TestSts, both_backends};
use serde_json::{Value, json};

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const FIC_BP: &str = "3d1b7a2e-6a0e-4f58-9c1b-2f0e8a9d7c11";
const CC: &str = "client_credentials";
const AT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const GRAPH: &str = "https://graph.microsoft.com/.default";

fn add(doc: &mut serde_yaml_ng::Value, key: &str, item: String) {
    let item: serde_yaml_ng::Value = serde_yaml_ng::from_str(&item).unwrap();
    doc.as_mapping_mut()
        .unwrap()
        .entry(key.into())
        .or_insert(serde_yaml_ng::Value::Sequence(vec![]))
        .as_sequence_mut()
        .unwrap()
        .push(item);
}

fn tenant(kube: &KubeIssuer) -> String {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(DEMO).unwrap();
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

/// Sends `form`; expects `status` and AADSTS `code`, and one new audit event.
async fn refused(sts: &TestSts, form: &[(&str, &str)], status: u16, code: u64) -> Value {
    let audits = sts.count("audit_events").await;
    let (st, body) = sts.token(form).await;
    assert_eq!(
        (st, body["error_codes"][0].as_u64()),
        (status, Some(code)),
        "{body}"
    );
    assert_eq!(
        sts.count("audit_events").await,
        audits + 1,
        "one audit event per refusal"
    );
    body
}

both_backends!(
    federated_assertion_with_an_algorithm_that_does_not_fit_the_key,
    |db: Db| async move {
        let kube = KubeIssuer::start().await;
        let sts = TestSts::start(db, &tenant(&kube)).await;
        let good = kube.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
        for alg in ["ES256", "ES384", "HS256", "EdDSA"] {
            let forged = forge(
                &header_with(&good, &json!({"alg": alg})),
                &claims_with(&good, &json!({})),
                &[7u8; 64],
            );
            refused(
                &sts,
                &[
                    ("grant_type", CC),
                    ("client_id", FIC_BP),
                    ("scope", GRAPH),
                    ("client_assertion_type", AT),
                    ("client_assertion", &forged),
                ],
                401,
                700027,
            )
            .await;
        }
        // The server still answers, and the honest assertion still works.
        let (st, b) = sts
            .token(&[
                ("grant_type", CC),
                ("client_id", FIC_BP),
                ("scope", GRAPH),
                ("client_assertion_type", AT),
                ("client_assertion", &good),
            ])
            .await;
        assert_eq!(st, 200, "{b}");
        sts.stop().await;
    }
);

const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const OBO: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TX: &str = "api://AzureADTokenExchange/.default";

/// The RFC 8725 variants of a genuine token, with the refusal each must get. `unknown_kid` is
/// the code for a key the verifier cannot find (some verifiers say so with their own code).
fn hostile_variants(
    good: &str,
    recorder_url: &str,
    key_pem: &str,
    generic: u64,
    unknown_kid: u64,
) -> Vec<(String, String, u64)> {
    use agentid_testkit::hostile::{INJECTED_KIDS, hs256};
    let claims = claims_with(good, &json!({}));
    let h = |changes: Value| header_with(good, &changes);
    let sig = good.rsplit('.').next().unwrap_or("").to_string();
    let resign = |header: Value| {
        // Keep the genuine signature: the verifier must refuse before or at the signature.
        let mut t = forge(&header, &claims, b"");
        t.push_str(&sig);
        t
    };
    let mut v = vec![
        (
            "alg none".to_string(),
            forge(&h(json!({"alg": "none"})), &claims, b""),
            generic,
        ),
        (
            "HS256 keyed with the public key".into(),
            hs256(&h(json!({"alg": "HS256"})), &claims, key_pem.as_bytes()),
            generic,
        ),
        (
            "ES256 header naming an RSA key".into(),
            forge(&h(json!({"alg": "ES256"})), &claims, &[7u8; 64]),
            generic,
        ),
        (
            "crit".into(),
            resign(h(json!({"crit": ["exp"], "exp": 1}))),
            generic,
        ),
        (
            "typ dpop+jwt".into(),
            resign(h(json!({"typ": "dpop+jwt"}))),
            generic,
        ),
        (
            "unknown kid".into(),
            resign(h(json!({"kid": "no-such-key", "x5t": null}))),
            unknown_kid,
        ),
        (
            "jku/x5u at the attacker, unknown kid".into(),
            resign(h(
                json!({"kid": "attacker-key", "x5t": null, "jku": recorder_url, "x5u": recorder_url}),
            )),
            unknown_kid,
        ),
        (
            "tampered payload".into(),
            {
                let mut p: Vec<String> = good.split('.').map(str::to_string).collect();
                p[1] = forge(
                    &json!({}),
                    &claims_with(good, &json!({"tampered": true})),
                    b"",
                )
                .split('.')
                .nth(1)
                .unwrap_or("")
                .to_string();
                p.join(".")
            },
            generic,
        ),
    ];
    for kid in INJECTED_KIDS {
        v.push((
            format!("injected kid {kid:?}"),
            resign(h(json!({"kid": kid, "x5t": null}))),
            unknown_kid,
        ));
    }
    v
}

async fn t1(sts: &TestSts) -> String {
    let (st, b) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", TX),
            ("fmi_path", AGENT),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    b["access_token"].as_str().unwrap().to_string()
}

async fn user_token(sts: &TestSts, scope: &str) -> Value {
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
    b
}

async fn tenant_jwks_pem(sts: &TestSts) -> String {
    let (_, jwks) = sts
        .get_json(&format!("{}/discovery/v2.0/keys", sts.authority()))
        .await;
    jwks.to_string()
}

both_backends!(
    every_sts_verifier_refuses_the_rfc_8725_table,
    |db: Db| async move {
        let kube = KubeIssuer::start().await;
        let sts = TestSts::start(db, &tenant(&kube)).await;
        let recorder = agentid_testkit::hostile::Recorder::start().await;
        let own_keys = tenant_jwks_pem(&sts).await;

        // Federated client assertions (stored JWKS of a trusted issuer).
        let sa = kube.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
        for (name, a, code) in
            hostile_variants(&sa, &recorder.url, &kube.jwks_json(), 700027, 7000272)
        {
            eprintln!("federated: {name}");
            refused(
                &sts,
                &[
                    ("grant_type", CC),
                    ("client_id", FIC_BP),
                    ("scope", GRAPH),
                    ("client_assertion_type", AT),
                    ("client_assertion", &a),
                ],
                401,
                code,
            )
            .await;
        }

        // T1 client assertions of an agent.
        let t1 = t1(&sts).await;
        for (name, a, code) in hostile_variants(&t1, &recorder.url, &own_keys, 700027, 700027) {
            eprintln!("T1: {name}");
            refused(
                &sts,
                &[
                    ("grant_type", CC),
                    ("client_id", AGENT),
                    ("scope", GRAPH),
                    ("client_assertion_type", AT),
                    ("client_assertion", &a),
                ],
                401,
                code,
            )
            .await;
        }

        // OBO assertions (the user's token), the agent authenticated with its T1.
        let tc = user_token(&sts, &format!("api://{BP}/access_as_user openid")).await;
        let tc_access = tc["access_token"].as_str().unwrap().to_string();
        for (name, a, code) in hostile_variants(&tc_access, &recorder.url, &own_keys, 50013, 50013)
        {
            eprintln!("OBO: {name}");
            refused(
                &sts,
                &[
                    ("grant_type", OBO),
                    ("client_id", AGENT),
                    ("requested_token_use", "on_behalf_of"),
                    ("assertion", &a),
                    ("scope", GRAPH),
                    ("client_assertion_type", AT),
                    ("client_assertion", &t1),
                ],
                400,
                code,
            )
            .await;
        }
        // Wrong typ by its claims: the ID token and the T1 are not user access tokens.
        for a in [tc["id_token"].as_str().unwrap(), t1.as_str()] {
            refused(
                &sts,
                &[
                    ("grant_type", OBO),
                    ("client_id", AGENT),
                    ("requested_token_use", "on_behalf_of"),
                    ("assertion", a),
                    ("scope", GRAPH),
                    ("client_assertion_type", AT),
                    ("client_assertion", &t1),
                ],
                400,
                50013,
            )
            .await;
        }

        // user_fic: the agent's T2′ as the user credential.
        let (st, t2p) = sts
            .token(&[
                ("grant_type", CC),
                ("client_id", AGENT),
                ("scope", TX),
                ("client_assertion_type", AT),
                ("client_assertion", &t1),
            ])
            .await;
        assert_eq!(st, 200, "{t2p}");
        let t2p = t2p["access_token"].as_str().unwrap().to_string();
        for (name, a, code) in hostile_variants(&t2p, &recorder.url, &own_keys, 50013, 50013) {
            eprintln!("user_fic: {name}");
            refused(
                &sts,
                &[
                    ("grant_type", "user_fic"),
                    ("client_id", AGENT),
                    ("scope", GRAPH),
                    ("user_federated_identity_credential", &a),
                    ("username", "blog-agent@contoso.test"),
                    ("client_assertion_type", AT),
                    ("client_assertion", &t1),
                ],
                400,
                code,
            )
            .await;
        }

        // Graph bearers: 401 InvalidAuthenticationToken for each, and the API still answers.
        let graph_token = user_token(&sts, "https://graph.microsoft.com/User.Read").await;
        let graph_token = graph_token["access_token"].as_str().unwrap().to_string();
        let me = format!("{}/v1.0/me", sts.base());
        let get = |t: String| {
            let (http, me) = (sts.http.clone(), me.clone());
            async move {
                let r = http
                    .get(&me)
                    .bearer_auth(t)
                    .send()
                    .await
                    .expect("the Graph API answers");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        assert_eq!(get(graph_token.clone()).await.0, 200);
        let mut variants = hostile_variants(&graph_token, &recorder.url, &own_keys, 401, 401);
        // Another tenant's identity in a token signed by this tenant; an ID token; a T1.
        variants.push((
            "another tenant".into(),
            forge(
                &header_with(&graph_token, &json!({})),
                &claims_with(
                    &graph_token,
                    &json!({"tid": "11111111-2222-4333-8444-555555555555"}),
                ),
                b"x",
            ),
            401,
        ));
        variants.push((
            "ID token".into(),
            tc["id_token"].as_str().unwrap().to_string(),
            401,
        ));
        variants.push(("T1".into(), t1.clone(), 401));
        for (name, t, _) in variants {
            let (status, body) = get(t).await;
            assert_eq!(status, 401, "Graph bearer, {name}: {body}");
            assert_eq!(
                body["error"]["code"], "InvalidAuthenticationToken",
                "{name}"
            );
        }
        assert_eq!(get(graph_token).await.0, 200, "still answering");

        assert_eq!(recorder.hits(), 0, "jku/x5u URLs were fetched");
        sts.stop().await;
    }
);

both_backends!(assertion_lifetimes_at_the_skew_edges, |db: Db| async move {
    let kube = KubeIssuer::start().await;
    let sts = TestSts::start(db, &tenant(&kube)).await;
    let skew = sts.running.state.settings.clock_skew;
    let form = |a: &str| {
        vec![
            ("grant_type", CC.to_string()),
            ("client_id", FIC_BP.to_string()),
            ("scope", GRAPH.to_string()),
            ("client_assertion_type", AT.to_string()),
            ("client_assertion", a.to_string()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let sts = &sts;
        async move {
            let v: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            sts.token(&v).await
        }
    };
    let now = chrono::Utc::now().timestamp();
    // Expired exactly at exp + skew: refused. (Accepting one second inside the limit cannot be
    // asserted exactly against a real clock; three seconds inside is.)
    let at_limit = kube.mint_at(
        "agents",
        "blog-agent",
        "api://AzureADTokenExchange",
        now - skew - 600,
        600,
    );
    refused(
        &sts,
        &form(&at_limit)
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
        401,
        700024,
    )
    .await;
    let inside = kube.mint_at(
        "agents",
        "blog-agent",
        "api://AzureADTokenExchange",
        now - skew - 600 + 3,
        600,
    );
    assert_eq!(send(form(&inside)).await.0, 200);
    // Not yet valid: nbf beyond now + skew refused; three seconds inside accepted.
    let future = kube.mint_at(
        "agents",
        "blog-agent",
        "api://AzureADTokenExchange",
        now + skew + 2,
        600,
    );
    refused(
        &sts,
        &form(&future)
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
        401,
        700024,
    )
    .await;
    let soon = kube.mint_at(
        "agents",
        "blog-agent",
        "api://AzureADTokenExchange",
        now + skew - 3,
        600,
    );
    assert_eq!(send(form(&soon)).await.0, 200);
    sts.stop().await;
});

both_backends!(
    untrusted_discovery_never_reaches_private_addresses,
    |db: Db| async move {
        // A federated credential naming an issuer on loopback, without a trusted-issuer record:
        // discovery is refused before any request reaches it.
        let kube = KubeIssuer::start().await;
        let recorder = agentid_testkit::hostile::Recorder::start().await;
        let local = recorder
            .url
            .trim_end_matches("/jwks.json")
            .replace("http://", "https://");
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&tenant(&kube)).unwrap();
        add(
            &mut doc,
            "blueprints",
            format!(
                "{{name: local-bp, appId: 4e2c8b1a-7f3d-4a5e-9b6c-0d1e2f3a4b5c, federatedCredentials: [{{name: local, issuer: '{local}', subject: 'sub'}}]}}"
            ),
        );
        let sts = TestSts::start(db, &serde_yaml_ng::to_string(&doc).unwrap()).await;
        let mut claims = claims_with(
            &kube.mint("a", "b", "api://AzureADTokenExchange", 600),
            &json!({}),
        );
        claims["iss"] = json!(local);
        claims["sub"] = json!("sub");
        let a = forge(&json!({"alg": "RS256", "kid": "k"}), &claims, &[1u8; 256]);
        let body = refused(
            &sts,
            &[
                ("grant_type", CC),
                ("client_id", "4e2c8b1a-7f3d-4a5e-9b6c-0d1e2f3a4b5c"),
                ("scope", GRAPH),
                ("client_assertion_type", AT),
                ("client_assertion", &a),
            ],
            401,
            700027,
        )
        .await;
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{body}"
        );
        assert_eq!(recorder.hits(), 0);
        sts.stop().await;
    }
);
