//! The trail's HTTP API (docs/audit.md §4): batch ingest by a gateway application holding
//! `AuditEvents.Write`, idempotent by eventId; the merged, paged query; chains; and the refusals.

use agentid_testkit::chain::Chain;
use agentid_testkit::demo::{self, DEMO_TENANT};
use agentid_testkit::{Db, TestSts, both_backends, claims};
use serde_json::{Value, json};

const GW: &str = "6f1c2b8e-3d4a-4f5b-9c6d-7e8f9a0b1c2d";
const GW_SECRET: &str = "gateway-secret-for-tests";
const OTHER: &str = "7a2d3c9f-4e5b-4a6c-8d7e-8f9a0b1c2d3e";
const OTHER_SECRET: &str = "other-secret-for-tests";

fn tenant() -> String {
    let apps = format!(
        "applications:\n  - name: gw\n    appId: {GW}\n    secrets: [{{value: {GW_SECRET}}}]\n  - name: other\n    appId: {OTHER}\n    secrets: [{{value: {OTHER_SECRET}}}]\n"
    );
    DEMO_TENANT.replacen("applications:\n", &apps, 1).replace(
        "\nappRoleAssignments:",
        "  - client: graph-cli\n    resource: graph\n    scopes: [AuditLog.Read.All]\n    consentType: Principal\n    principal: alice\n\nappRoleAssignments:\n  - principal: gw\n    resource: graph\n    role: AuditEvents.Write",
    )
}

async fn app_token(sts: &TestSts, client: &str, secret: &str) -> String {
    sts.token_ok(&[
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
        ("scope", "https://graph.microsoft.com/.default"),
    ])
    .await
}

async fn admin_token(sts: &TestSts) -> String {
    sts.token_ok(&[
        ("grant_type", "password"),
        ("client_id", demo::GRAPH_CLI),
        ("username", demo::ALICE_UPN),
        ("password", demo::ALICE_PASSWORD),
        ("scope", "https://graph.microsoft.com/AuditLog.Read.All"),
    ])
    .await
}

async fn call(
    sts: &TestSts,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", sts.base())
    };
    let mut r = sts.http.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn event(sts: &TestSts, id: &str, uti: &str, decision: &str, tool: &str) -> Value {
    json!({"schema": "agentid.gateway.audit/v1", "time": chrono::Utc::now().to_rfc3339(),
        "eventId": id, "correlationId": "c", "traceId": "t", "kind": "mcp", "route": "mcp",
        "bind": 3000, "listener": "main",
        "request": {"method": "POST", "path": "/mcp", "sourceAddress": "127.0.0.1"},
        "identity": {"authenticated": true, "tenant": sts.tenant_id, "tokenId": uti,
            "agentId": demo::AGENT, "blueprint": demo::BLUEPRINT, "userOid": demo::ALICE,
            "userUpn": demo::ALICE_UPN, "agentMode": "onBehalfOfUser"},
        "mcp": {"method": "tools/call", "tool": tool},
        "decision": {"result": decision, "stage": "mcpAuthorization", "rule": "agent.onBehalfOfUser",
            "reason": if decision == "allow" { "rule_matched" } else { "no_allow_rule_matched" }},
        "upstream": {"target": "demo", "status": 200}, "status": 200, "latencyMs": 1.5, "fields": {}})
}

fn batch(events: Vec<Value>) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&json!({ "events": events })).unwrap())
}

both_backends!(ingest_query_and_chain, |db: Db| async move {
    let sts = TestSts::start(db, &tenant()).await;
    let gw = app_token(&sts, GW, GW_SECRET).await;
    let roles = claims(&gw)["roles"].clone();
    assert!(roles.to_string().contains("AuditEvents.Write"), "{roles}");
    let obo = Chain::demo()
        .agent_obo(&sts, &format!("api://{}/.default", demo::MCP_APP))
        .await;
    let uti = claims(&obo)["uti"].as_str().unwrap().to_string();

    let events = vec![
        event(&sts, "ev-1", &uti, "allow", "whoami"),
        event(&sts, "ev-2", &uti, "deny", "delete_everything"),
        event(&sts, "ev-3", &uti, "allow", "search"),
    ];
    let (st, b) = call(
        &sts,
        "POST",
        "/agentid/v1/auditEvents",
        Some(&gw),
        batch(events.clone()),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b,
        json!({"received": 3, "stored": 3, "duplicates": 0, "rejected": 0})
    );
    // At least once from the gateway, once in the store.
    let (st, b) = call(
        &sts,
        "POST",
        "/agentid/v1/auditEvents",
        Some(&gw),
        batch(events),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["stored"], 0);
    assert_eq!(b["duplicates"], 3);
    assert_eq!(sts.count("gateway_events").await, 3);
    // Another tenant's event is not written into this one.
    let mut foreign = event(&sts, "ev-x", &uti, "allow", "x");
    foreign["identity"]["tenant"] = json!("00000000-0000-0000-0000-000000000001");
    let (_, b) = call(
        &sts,
        "POST",
        "/agentid/v1/auditEvents",
        Some(&gw),
        batch(vec![foreign]),
    )
    .await;
    assert_eq!(b["rejected"], 1);
    assert_eq!(sts.count("gateway_events").await, 3);
    // Ingest is not a directory write: no audit row per batch.
    let (_, dir_events) = call(
        &sts,
        "GET",
        "/agentid/v1/auditEvents?category=directory",
        Some(&admin_token(&sts).await),
        None,
    )
    .await;
    assert_eq!(dir_events["value"], json!([]), "{dir_events}");

    // Query: gateway decisions filtered, newest first, paged.
    let admin = admin_token(&sts).await;
    let (st, b) = call(
        &sts,
        "GET",
        &format!(
            "/agentid/v1/auditEvents?source=gateway&decision=deny&agent={}",
            demo::AGENT
        ),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let v = b["value"].as_array().unwrap();
    assert_eq!(v.len(), 1, "{b}");
    assert_eq!(v[0]["source"], "gateway");
    assert_eq!(v[0]["tool"], "delete_everything");
    assert_eq!(v[0]["event"]["decision"]["result"], "deny");
    let mut seen = Vec::new();
    let mut url = format!("/agentid/v1/auditEvents?user={}&$top=2", demo::ALICE_UPN);
    for _ in 0..20 {
        let (st, b) = call(&sts, "GET", &url, Some(&admin), None).await;
        assert_eq!(st, 200, "{b}");
        for e in b["value"].as_array().unwrap() {
            seen.push(format!("{}:{}", e["source"], e["id"]));
        }
        match b["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "no item on two pages: {seen:?}");
    let gateway = seen.iter().filter(|s| s.starts_with("\"gateway\"")).count();
    let sts_events = seen.iter().filter(|s| s.starts_with("\"sts\"")).count();
    assert_eq!(gateway, 3, "{seen:?}");
    assert!(
        sts_events >= 2,
        "alice's sign-in and the OBO token: {seen:?}"
    );

    // The chain over HTTP.
    let (st, chain) = call(
        &sts,
        "GET",
        &format!("/agentid/v1/chains/{uti}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(st, 200, "{chain}");
    let kinds: Vec<&str> = chain["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    for k in [
        "signIn",
        "consent",
        "credential",
        "exchangeToken",
        "userToken",
        "agentToken",
        "decision",
    ] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "decision").count(), 3);
    sts.stop().await;
});

both_backends!(refusals_have_their_statuses, |db: Db| async move {
    let sts = TestSts::start(db, &tenant()).await;
    let gw = app_token(&sts, GW, GW_SECRET).await;
    let other = app_token(&sts, OTHER, OTHER_SECRET).await;
    let admin = admin_token(&sts).await;
    let one = batch(vec![event(&sts, "e", "u", "allow", "t")]);
    // Ingest: only the app role; never a user.
    assert_eq!(
        call(&sts, "POST", "/agentid/v1/auditEvents", None, one.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            &sts,
            "POST",
            "/agentid/v1/auditEvents",
            Some("x.y.z"),
            one.clone()
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            &sts,
            "POST",
            "/agentid/v1/auditEvents",
            Some(&other),
            one.clone()
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &sts,
            "POST",
            "/agentid/v1/auditEvents",
            Some(&admin),
            one.clone()
        )
        .await
        .0,
        403
    );
    // Hostile bodies: 400 naming the problem, nothing stored.
    let long_id = "a".repeat(65);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"{".to_vec()),
        ("no events", b"{}".to_vec()),
        ("extra key", br#"{"events": [], "more": 1}"#.to_vec()),
        (
            "bad id",
            batch(vec![event(&sts, "<script>", "u", "allow", "t")]).unwrap(),
        ),
        (
            "long id",
            batch(vec![event(&sts, &long_id, "u", "allow", "t")]).unwrap(),
        ),
        (
            "bad decision",
            batch(vec![event(&sts, "e2", "u", "perhaps", "t")]).unwrap(),
        ),
        (
            "too many",
            batch(
                (0..1001)
                    .map(|i| event(&sts, &format!("m{i}"), "u", "allow", "t"))
                    .collect(),
            )
            .unwrap(),
        ),
    ];
    for (name, body) in bad {
        let (st, b) = call(
            &sts,
            "POST",
            "/agentid/v1/auditEvents",
            Some(&gw),
            Some(body),
        )
        .await;
        assert_eq!(st, 400, "{name}: {b}");
        assert!(b["error"]["message"].is_string(), "{name}: {b}");
    }
    let huge = vec![b' '; 3 * 1024 * 1024];
    let (st, _) = call(
        &sts,
        "POST",
        "/agentid/v1/auditEvents",
        Some(&gw),
        Some(huge),
    )
    .await;
    assert_eq!(st, 413, "body over the limit");
    assert_eq!(sts.count("gateway_events").await, 0);
    // Chains: directory roles (or the audit read role), a valid id, a known token.
    assert_eq!(
        call(&sts, "GET", "/agentid/v1/chains/abc", None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&sts, "GET", "/agentid/v1/chains/abc", Some(&gw), None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&sts, "GET", "/agentid/v1/chains/abc", Some(&admin), None)
            .await
            .0,
        404
    );
    let long = "u".repeat(200);
    assert_eq!(
        call(
            &sts,
            "GET",
            &format!("/agentid/v1/chains/{long}"),
            Some(&admin),
            None
        )
        .await
        .0,
        400
    );
    // Query parameters are checked.
    for q in [
        "decision=maybe",
        "source=everywhere",
        "$top=0",
        "$top=5000",
        "since=yesterday",
        "$skiptoken=%%%",
        "nope=1",
        "source=gateway&category=token",
    ] {
        let (st, b) = call(
            &sts,
            "GET",
            &format!("/agentid/v1/auditEvents?{q}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(st, 400, "{q}: {b}");
    }
    assert_eq!(
        call(&sts, "GET", "/agentid/v1/auditEvents", Some(&gw), None)
            .await
            .0,
        403
    );
    sts.stop().await;
});
