//! MCP clients at the STS (docs/sts.md §16) on both storage backends: the RFC 8414 metadata,
//! the registration policy (off, initial access token, open) and what a registration writes,
//! and the registered route resources.

use agentid_directory::mcp_clients::RegistrationMode;
use agentid_testkit::demo::DEMO_TENANT as DEMO;
use agentid_testkit::{Db, TestSts, both_backends};
use serde_json::{Value, json};

const MCP_APP: &str = "1bc7902d-ee63-4134-84d4-e2b04e0c42a0";

async fn register(sts: &TestSts, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = sts
        .http
        .post(format!("{}/oauth2/v2.0/register", sts.authority()))
        .json(&body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

both_backends!(registration_policy_and_metadata, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let store = sts.running.state.store.clone();
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let asm = format!(
        "{}/.well-known/oauth-authorization-server/{}/v2.0",
        sts.base(),
        sts.tenant_id
    );
    let body = json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "Probe"});

    // Off by default: no endpoint advertised, registration refused.
    let (status, doc) = sts.get_json(&asm).await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], json!(format!("{}/v2.0", sts.authority())));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert!(doc.get("registration_endpoint").is_none(), "{doc}");
    let (_, v1) = sts
        .get_json(&format!(
            "{}/.well-known/oauth-authorization-server/{}",
            sts.base(),
            sts.tenant_id
        ))
        .await;
    assert_eq!(v1["issuer"], json!(format!("{}/", sts.authority())));
    assert_eq!(register(&sts, None, body.clone()).await.0, 403);

    // With an initial access token: refused without it, accepted with it; stored hashed.
    let iat = "an-initial-access-token-0123456789";
    store
        .set_registration_policy(&tid, RegistrationMode::Token, Some(iat), 0)
        .await
        .unwrap();
    let policy = store.registration_policy(&tid).await.unwrap();
    assert_eq!(policy.mode, RegistrationMode::Token);
    assert_ne!(policy.initial_access_token_sha256.as_deref(), Some(iat));
    let (_, doc) = sts.get_json(&asm).await;
    assert_eq!(
        doc["registration_endpoint"],
        json!(format!("{}/oauth2/v2.0/register", sts.authority()))
    );
    assert_eq!(register(&sts, None, body.clone()).await.0, 401);
    assert_eq!(
        register(&sts, Some("not-the-token"), body.clone()).await.0,
        401
    );
    let (status, reg) = register(&sts, Some(iat), body.clone()).await;
    assert_eq!(status, 201, "{reg}");
    let app_id: uuid::Uuid = reg["client_id"].as_str().unwrap().parse().unwrap();
    let app = store
        .application_by_app_id(&tid, &app_id)
        .await
        .unwrap()
        .unwrap();
    assert!(app.is_public_client);
    assert_eq!(app.display_name, "Probe (unverified, self-registered)");
    assert_eq!(app.redirect_uris, vec!["http://127.0.0.1:9/cb".to_string()]);
    assert!(
        store
            .service_principal_by_app_id(&tid, &app_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        register(
            &sts,
            Some(iat),
            json!({"redirect_uris": ["http://evil.example/cb"]})
        )
        .await
        .0,
        400
    );
    // A policy of mode token without a token is refused.
    assert!(
        store
            .set_registration_policy(&tid, RegistrationMode::Token, None, 0)
            .await
            .is_err()
    );

    // Open: anyone; every attempt is audited.
    store
        .set_registration_policy(&tid, RegistrationMode::Open, None, 0)
        .await
        .unwrap();
    assert_eq!(register(&sts, None, body.clone()).await.0, 201);
    let n: i64 = sts.count("audit_events WHERE endpoint = 'register'").await;
    assert_eq!(n, 6);

    // Route resources: normalised, replaced, per tenant.
    let app: uuid::Uuid = MCP_APP.parse().unwrap();
    store
        .set_protected_resource(&tid, "http://127.0.0.1:3000/MCP/", &app)
        .await
        .unwrap();
    store
        .set_protected_resource(&tid, "http://127.0.0.1:3000/mcp", &app)
        .await
        .unwrap();
    assert_eq!(
        store
            .protected_resource(&tid, "http://127.0.0.1:3000/mcp")
            .await
            .unwrap(),
        Some(app)
    );
    assert_eq!(
        store
            .protected_resource(&tid, "http://127.0.0.1:3000/other")
            .await
            .unwrap(),
        None
    );
    sts.stop().await;
});
