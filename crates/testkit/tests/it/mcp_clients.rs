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

// The tenant file's `mcpClients` (docs/tenant-file.md §3): applied, read back, applied again
// without changes, and a bad key or value named by its path.
both_backends!(tenant_file_mcp_clients, |db: Db| async move {
    use agentid_directory::mcp_clients::MetadataDocumentMode;
    use agentid_directory::tenant_file::{TenantFile, apply};
    let sts = TestSts::start(db, DEMO).await;
    let store = sts.running.state.store.clone();
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    // Before: registration off, metadata documents open.
    let before = store.metadata_document_policy(&tid).await.unwrap();
    assert_eq!(before.mode, MetadataDocumentMode::Open);
    let keys = "\nmcpClients:\n  registration: {mode: token, initialAccessToken: an-initial-access-token-0123}\n  clientIdMetadataDocuments:\n    mode: allowList\n    allowHosts: ['*.Example.com', vscode.dev]\n    denyHosts: [evil.example.com]\n  protectedResources:\n  - {resource: 'https://gw.example/MCP/', application: mcp-server}\n";
    let yaml = format!("{DEMO}{keys}");
    let file = TenantFile::parse(&yaml, sts.dir.path()).unwrap();
    let report = apply(&store, &file).await.unwrap();
    assert_eq!((report.created, report.updated), (1, 2), "{report:?}");
    let reg = store.registration_policy(&tid).await.unwrap();
    assert_eq!(reg.mode, RegistrationMode::Token);
    assert_eq!(
        reg.initial_access_token_sha256.as_deref(),
        Some(agentid_directory::secrets::sha256_hex("an-initial-access-token-0123").as_str())
    );
    let docs = store.metadata_document_policy(&tid).await.unwrap();
    assert_eq!(docs.mode, MetadataDocumentMode::AllowList);
    assert_eq!(docs.allow_hosts, vec!["*.example.com", "vscode.dev"]);
    assert_eq!(docs.deny_hosts, vec!["evil.example.com"]);
    assert!(docs.admits("mcp.example.com") && !docs.admits("evil.example.com"));
    assert_eq!(
        store
            .protected_resource(&tid, "https://gw.example/mcp")
            .await
            .unwrap(),
        Some(sts.id("applications", "mcp-server").parse().unwrap())
    );
    let (_, asm) = sts
        .get_json(&format!(
            "{}/.well-known/oauth-authorization-server/{}/v2.0",
            sts.base(),
            sts.tenant_id
        ))
        .await;
    assert_eq!(asm["client_id_metadata_document_supported"], json!(true));
    assert!(asm["registration_endpoint"].is_string(), "{asm}");
    // Idempotent.
    let again = apply(&store, &file).await.unwrap();
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");

    // Errors name their path; nothing is applied.
    let bad = |k: &str| format!("{DEMO}\nmcpClients:\n{k}");
    for (k, path) in [
        (
            "  registration: {mode: open, bogus: 1}\n",
            "mcpClients.registration",
        ),
        (
            "  clientIdMetadataDocuments: {mode: sometimes}\n",
            "mcpClients.clientIdMetadataDocuments.mode",
        ),
        ("  protectedResource: []\n", "mcpClients"),
    ] {
        let e = TenantFile::parse(&bad(k), sts.dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(path), "{k}: {e}");
    }
    for (k, path) in [
        (
            "  clientIdMetadataDocuments: {denyHosts: [ok.example, 'https://x/']}\n",
            "mcpClients.clientIdMetadataDocuments.denyHosts[1]",
        ),
        (
            "  protectedResources: [{resource: 'https://gw.example/x', application: nobody}]\n",
            "mcpClients.protectedResources[0].application",
        ),
        (
            "  protectedResources: [{resource: 'not a url', application: mcp-server}]\n",
            "mcpClients.protectedResources[0].resource",
        ),
        (
            "  registration: {mode: token}\n",
            "mcpClients.registration.initialAccessToken",
        ),
    ] {
        let file = TenantFile::parse(&bad(k), sts.dir.path()).unwrap();
        let e = apply(&store, &file).await.unwrap_err().to_string();
        assert!(e.starts_with(path), "{k}: {e}");
    }
    assert_eq!(store.metadata_document_policy(&tid).await.unwrap(), docs);

    // A document URL's application: made once, found again, recorded both ways.
    let url = "https://mcp.example.com/client.json";
    let uris = [agentid_directory::applications::RedirectUri::parse(
        "http://127.0.0.1/cb",
        agentid_directory::applications::RedirectPlatform::PublicClient,
    )
    .unwrap()];
    let a = store
        .ensure_metadata_document_client(&tid, url, "c (unverified, mcp.example.com)", &uris, 1)
        .await
        .unwrap();
    let b = store
        .ensure_metadata_document_client(&tid, url, "c (unverified, mcp.example.com)", &uris, 2)
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        store.metadata_document_client(&tid, url).await.unwrap(),
        Some(a)
    );
    assert_eq!(
        store
            .metadata_document_url(&tid, &a)
            .await
            .unwrap()
            .as_deref(),
        Some(url)
    );
    assert!(
        store
            .service_principal_by_app_id(&tid, &a)
            .await
            .unwrap()
            .is_some()
    );
    sts.stop().await;
});
