//! The adversarial suite for the STS's verifiers (issue 10, RFC 8725 / RFC 9700): client
//! assertions (certificate, federated, T1), OBO and `user_fic` assertions, and the Graph bearer
//! check, each attacked through the real token endpoint / Graph API over HTTPS, on SQLite and
//! PostgreSQL. Every case asserts the exact refusal, that an audit event was written, and that
//! the server still answers the next request (nothing panicked).

use agentid_testkit::hostile::{claims_with, forge, header_with};
use agentid_testkit::{Db, KubeIssuer, TestSts, both_backends};
use serde_json::{Value, json};

const DEMO: &str = include_str!("../../../examples/demo-tenant.yaml");
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
