//! The kill switch end to end (docs/gateway.md §19): a real STS (demo tenant), the gateway
//! polling its signed revocation feed, and tokens issued before the directory write. Disabling
//! the agent through Graph refuses its already-issued token within 5 s, with the audit reason;
//! re-enabling allows it again; revoking the user's sessions refuses the agent's on-behalf-of
//! token but not its autonomous one. With the STS down, a `closed` route refuses after its
//! grace period and an `open` route keeps serving.

use crate::support::*;
use agentid_testkit::TestSts;
use agentid_testkit::poll::eventually;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The demo tenant whose admin (alice, Graph CLI) may also write users.
async fn sts_with_admin() -> TestSts {
    sts_with(|y| {
        y.replace(
            "AgentIdUser.ReadWrite.All]",
            "AgentIdUser.ReadWrite.All, User.ReadWrite.All]",
        )
    })
    .await
}

pub(crate) async fn admin_token(sts: &TestSts) -> String {
    agentid_testkit::Chain::demo()
        .user_token(sts, "Application.ReadWrite.All User.ReadWrite.All")
        .await
}

pub(crate) async fn graph(
    sts: &TestSts,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> u16 {
    let (status, answer) = graph_any(sts, token, method, path, body).await;
    assert!(status < 300, "{method} {path}: {status} {answer}");
    status
}

/// A Graph call that may fail: status and JSON body (`null` when it has none).
pub(crate) async fn graph_any(
    sts: &TestSts,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = sts
        .http
        .request(method.parse().unwrap(), format!("{}{path}", sts.base()))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A gateway with one plain HTTP route per failure mode in front of an upstream that answers
/// 200, accepting the STS's v1 and v2 tokens for the MCP app; `revocation` is the
/// `agentid.revocation` block.
pub(crate) async fn gateway(sts: &TestSts, revocation: &str) -> Gw {
    let upstream = serve(
        axum::Router::new().route("/{*rest}", axum::routing::get(|| async { "upstream ok" })),
    )
    .await;
    let authority = sts.authority();
    let jwks = format!("{authority}/discovery/v2.0/keys");
    let provider = |iss: &str| {
        format!(
            "          - issuer: {iss}\n            audiences: [api://{MCP_APP}, {MCP_APP}]\n            jwks: {{url: \"{jwks}\"}}\n"
        )
    };
    let providers = format!(
        "{}{}",
        provider(&format!("{authority}/")),
        provider(&format!("{authority}/v2.0"))
    );
    let route = |name: &str| {
        format!(
            "    - name: {name}\n      matches: [{{path: {{pathPrefix: /{name}}}}}]\n      backends: [{{host: \"{upstream}\"}}]\n      policies:\n        jwtAuth:\n          mode: strict\n          providers:\n{providers}"
        )
    };
    let config = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n{}{}\nagentid:\n  revocation: {revocation}\n",
        route("closed"),
        route("open")
    );
    Gw::start(&config, Some(sts.ca_file())).await
}

pub(crate) async fn call(gw: &Gw, route: &str, token: &str) -> (u16, Option<String>) {
    let resp = gw
        .http
        .get(gw.url(3000, &format!("/{route}/x")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let www = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (resp.status().as_u16(), www)
}

/// Polls until `route` answers `status` to `token`; returns how long it took.
pub(crate) async fn until_status(gw: &Gw, route: &str, token: &str, status: u16) -> Duration {
    let start = Instant::now();
    eventually(
        Duration::from_secs(10),
        &format!("HTTP {status}"),
        || async { (call(gw, route, token).await.0 == status).then_some(()) },
    )
    .await;
    start.elapsed()
}

/// The feed has been read once (the version gauge is published).
pub(crate) async fn feed_ready(gw: &Gw) {
    let handle = gw.running.gateway.revocations.clone();
    eventually(Duration::from_secs(10), "the first feed", || {
        let statuses = handle.statuses();
        async move {
            (statuses.len() == 2 && statuses.iter().all(|s| s.version.is_some())).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_agent_reaches_the_gateway_within_five_seconds() {
    let sts = sts_with_admin().await;
    let obo = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
    let admin = admin_token(&sts).await;
    let gw = gateway(&sts, "{pollInterval: 2s, longPollWait: 20s}").await;
    feed_ready(&gw).await;
    assert_eq!(call(&gw, "closed", &obo).await.0, 200);
    assert_eq!(call(&gw, "closed", &autonomous).await.0, 200);

    // Disable the agent through Graph: its already-issued token is refused within 5 s.
    let sp = format!("/v1.0/servicePrincipals/{AGENT}");
    graph(
        &sts,
        &admin,
        "PATCH",
        &sp,
        Some(json!({"accountEnabled": false})),
    )
    .await;
    let took = until_status(&gw, "closed", &obo, 401).await;
    assert!(took < Duration::from_secs(5), "refused only after {took:?}");
    eprintln!("agent disabled → gateway refuses after {took:?}");
    let (status, www) = call(&gw, "closed", &autonomous).await;
    assert_eq!(status, 401);
    assert_eq!(
        www.as_deref(),
        Some(r#"Bearer error="invalid_token", error_description="token revoked""#)
    );
    let events = gw.audit_until("route=closed&decision=deny", 1).await;
    let e = events.first().expect("a deny event");
    assert_eq!(e["decision"]["reason"], "revoked:agentDisabled", "{e}");
    assert_eq!(e["decision"]["stage"], "revocation", "{e}");
    assert_eq!(e["identity"]["agentId"], AGENT, "{e}");

    // Re-enable: allowed again.
    graph(
        &sts,
        &admin,
        "PATCH",
        &sp,
        Some(json!({"accountEnabled": true})),
    )
    .await;
    let took = until_status(&gw, "closed", &obo, 200).await;
    assert!(took < Duration::from_secs(5), "allowed only after {took:?}");

    // Revoke alice's sessions: the agent's token on her behalf is refused, its own is not.
    let revoke = format!("/v1.0/users/{ALICE}/revokeSignInSessions");
    graph(&sts, &admin, "POST", &revoke, None).await;
    let took = until_status(&gw, "open", &obo, 401).await;
    assert!(took < Duration::from_secs(5), "refused only after {took:?}");
    assert_eq!(call(&gw, "open", &autonomous).await.0, 200);
    let events = gw.audit_until("route=open&decision=deny", 1).await;
    assert_eq!(
        events[0]["decision"]["reason"], "revoked:userSessionsRevoked",
        "{}",
        events[0]
    );
    let metrics = gw
        .http
        .get(format!("http://{}/metrics", gw.running.stats.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("agentid_gateway_revocation_feed_version{issuer="),
        "{metrics}"
    );
    assert!(metrics.contains("agentid_gateway_revocation_feed_age_seconds{issuer="));
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_sts_down_closed_routes_refuse_after_the_grace_and_open_routes_serve() {
    let sts = sts_with_admin().await;
    let obo = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let gw = gateway(
        &sts,
        "{pollInterval: 200ms, longPollWait: 0s, gracePeriod: 2s, routes: [{route: open, failureMode: open}]}",
    )
    .await;
    feed_ready(&gw).await;
    assert_eq!(call(&gw, "closed", &obo).await.0, 200);
    sts.running.shutdown();
    let down = Instant::now();
    until_status(&gw, "closed", &obo, 503).await;
    // The grace counts from the last refresh, at most one interval before the shutdown.
    let after = down.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "refused {after:?} after the STS stopped"
    );
    assert_eq!(call(&gw, "open", &obo).await.0, 200);
    let events = gw.audit_until("route=closed&decision=deny", 1).await;
    assert_eq!(events[0]["decision"]["reason"], "revocation_unavailable");
}

#[tokio::test]
async fn the_revocation_block_is_checked() {
    let cases = [
        ("{failureMode: maybe}", "failure mode"),
        ("{pollInterval: 1ms}", "between"),
        ("{longPollWait: 60s}", "at most 25s"),
        ("{gracePeriod: 48h}", "at most 24h"),
        (
            "{gracePeriod: 10s, longPollWait: 20s}",
            "longer than longPollWait",
        ),
        ("{routes: [{route: nope}]}", "no route named"),
        (
            "{routes: [{route: r, failureMode: open}, {route: r}]}",
            "named twice",
        ),
        ("{issuers: [not-a-url]}", "absolute URL"),
        ("{pollIntervall: 2s}", "unknown key"),
    ];
    for (block, expected) in cases {
        let yaml = format!(
            "agentid:\n  revocation: {block}\nbinds:\n- port: 3000\n  listeners:\n  - routes:\n    - name: r\n      backends: [{{host: \"127.0.0.1:9\"}}]\n"
        );
        let err = agentid_gateway::config::load_str(
            &yaml,
            std::path::Path::new("."),
            &agentid_gateway::config::ValidateContext {
                jwks: agentid_gateway::serve::jwks_registry(&Default::default(), &[]),
            },
        )
        .map(|_| ())
        .expect_err(block)
        .to_string();
        assert!(err.contains(expected), "{block}: {err}");
    }
}
