//! Direct mode with each kind of blueprint credential, and the device-code sign-in, against
//! the testkit STS.

use crate::support::*;
use agentid_agent::config::TokenMode;
use agentid_agent::setup;
use agentid_agent::tokens::Api;
use agentid_testkit::certs::ClientCert;
use agentid_testkit::{Db, KubeIssuer, TestSts};
use serde_json::Value;

fn mcp_api() -> Api {
    Api {
        name: "mcp".into(),
        scope: Some(format!("api://{MCP}/.default")),
    }
}

/// The test tenant with a certificate on the blueprint and, with an issuer, a federated
/// credential trusting the emulated cluster's service-account tokens.
fn tenant_with(cert: &ClientCert, kube: Option<&KubeIssuer>) -> String {
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&tenant()).unwrap();
    let bp = &mut doc["blueprints"][0];
    bp.as_mapping_mut().unwrap().insert(
        "certificates".into(),
        serde_yaml_ng::from_str(&format!(
            "[{{pem: {}}}]",
            serde_json::to_string(&cert.cert_pem).unwrap()
        ))
        .unwrap(),
    );
    if let Some(kube) = kube {
        bp["federatedCredentials"]
            .as_sequence_mut()
            .unwrap()
            .push(
                serde_yaml_ng::from_str(&format!(
                    "{{name: cluster, issuer: '{}', subject: 'system:serviceaccount:agents:blog-agent', audiences: [api://AzureADTokenExchange]}}",
                    kube.issuer
                ))
                .unwrap(),
            );
        let trusted: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
            "[{{issuer: '{}', discovery: true, allowHttp: true}}]",
            kube.issuer
        ))
        .unwrap();
        doc.as_mapping_mut()
            .unwrap()
            .insert("trustedIssuers".into(), trusted);
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

fn s<'a>(c: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    c.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("claim {k} missing in {c:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_federated_token_file_credentials() {
    let cert = ClientCert::generate("blog-agent-bp");
    let kube = KubeIssuer::start().await;
    let sts = TestSts::start(Db::Sqlite, &tenant_with(&cert, Some(&kube))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bp.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("bp.key"), &cert.key_pem).unwrap();

    // Certificate: a signed client assertion instead of a secret.
    let cfg = config(
        &sts,
        dir.path(),
        &[
            ("AGENTID_AGENT_BLUEPRINT_SECRET", String::new()),
            (
                "AGENTID_AGENT_CERTIFICATE_FILE",
                dir.path().join("bp.pem").display().to_string(),
            ),
            (
                "AGENTID_AGENT_CERTIFICATE_KEY_FILE",
                dir.path().join("bp.key").display().to_string(),
            ),
        ],
    );
    assert!(cfg.blueprint_secret.is_none());
    let p = setup::provider(&cfg, TokenMode::Direct, None).unwrap();
    assert!(p.describe().contains("a certificate"), "{}", p.describe());
    let t = p.token(&mcp_api(), false).await.unwrap();
    let c = claims(&t.token);
    assert_eq!((s(&c, "idtyp"), s(&c, "appid")), ("app", AGENT));
    let held = p.held().await;
    let t1 = claims(&held[0].1);
    assert_eq!(s(&t1, "azp"), BP);

    // Federated token file: a projected service-account token, re-read on each use.
    let token_file = dir.path().join("azure-identity-token");
    kube.write_token_file(
        &token_file,
        "agents",
        "blog-agent",
        "api://AzureADTokenExchange",
    );
    let cfg = config(
        &sts,
        dir.path(),
        &[
            ("AGENTID_AGENT_BLUEPRINT_SECRET", String::new()),
            (
                "AGENTID_AGENT_FEDERATED_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ],
    );
    let user = setup::session(&cfg).unwrap();
    setup::sign_in(
        &user,
        &setup::SignInOptions {
            username: Some(ALICE_UPN.into()),
            password: Some(ALICE_PASSWORD.into()),
            no_prompt: true,
            ..Default::default()
        },
        &mut std::io::sink(),
    )
    .await
    .unwrap();
    let p = setup::provider(&cfg, TokenMode::Direct, Some(user)).unwrap();
    let c = claims(&p.token(&mcp_api(), false).await.unwrap().token);
    assert_eq!(
        (s(&c, "idtyp"), s(&c, "appid"), s(&c, "upn")),
        ("user", AGENT, ALICE_UPN)
    );
    // A token from another service account is refused, with the reason in words.
    kube.write_token_file(
        &token_file,
        "agents",
        "intruder",
        "api://AzureADTokenExchange",
    );
    let p = setup::provider(&cfg, TokenMode::Direct, None).unwrap();
    let err = p.token(&mcp_api(), false).await.unwrap_err().to_string();
    assert!(err.contains("T1") && err.contains("AADSTS"), "{err}");
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_sign_in_is_polled_to_completion_and_cached() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sts, dir.path(), &[]);
    let user = setup::session(&cfg).unwrap();
    let code = user.start_device().await.unwrap();
    assert_eq!(code.verification_uri, format!("{}/devicelogin", sts.base()));
    // The user completes the sign-in in a browser while the agent polls.
    let web = agentid_testkit::browser::Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let user_code = code.user_code.clone();
    let browser = tokio::spawn(async move {
        web.complete_device_login(&user_code, ALICE_UPN, ALICE_PASSWORD, true)
            .await
            .url
    });
    let tc = user.poll_device(&code).await.unwrap();
    assert!(browser.await.unwrap().ends_with("/devicelogin/done"));
    let c = claims(&tc);
    assert_eq!(
        (s(&c, "aud"), s(&c, "upn")),
        (format!("api://{BP}").as_str(), ALICE_UPN)
    );
    assert!(dir.path().join("tokens.json").exists());
    // The next run signs in silently from the cache.
    let later = setup::session(&cfg).unwrap();
    assert!(later.has_cached());
    assert_eq!(later.token().await.unwrap(), tc);
    sts.stop().await;
}
