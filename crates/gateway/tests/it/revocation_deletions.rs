//! The kill switch reaches deletions too (docs/sts.md §17, docs/gateway.md §19), end to end
//! with a real STS on SQLite and PostgreSQL and the gateway polling its feed: revoking one token
//! by its `uti` (`POST /agentid/v1/revokedTokens`), deleting the consent a delegated token was
//! issued under, and deleting the agent identity each refuse tokens issued before, within a
//! polled deadline, with the reason in the gateway's audit — and nothing else.

use super::revocation::{admin_token, call, feed_ready, gateway, graph, graph_any, until_status};
use crate::support::*;
use agentid_testkit::{Db, TestSts, both_backends};
use serde_json::json;

async fn sts(db: Db) -> TestSts {
    let yaml = agentid_testkit::demo::demo_tenant_with_llm_grant().replace(
        "AgentIdUser.ReadWrite.All]",
        "AgentIdUser.ReadWrite.All, User.ReadWrite.All]",
    );
    TestSts::start(db, &yaml).await
}

/// The last gateway deny on `route` names `reason`.
async fn denied_for(gw: &Gw, route: &str, n: usize, reason: &str) {
    let events = gw
        .audit_until(&format!("route={route}&decision=deny"), n)
        .await;
    assert!(
        events.iter().any(|e| e["decision"]["reason"] == reason),
        "no deny with {reason}: {events:?}"
    );
}

const MODE: &str = "{pollInterval: 2s, longPollWait: 20s}";

both_backends!(
    a_revoked_uti_and_a_deleted_consent_reach_the_gateway,
    |db: Db| async move {
        let sts = sts(db).await;
        let scope = format!("api://{MCP_APP}/access_as_user");
        let obo = agent_obo(&sts, &scope).await;
        let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
        let admin = admin_token(&sts).await;
        let gw = gateway(&sts, MODE).await;
        feed_ready(&gw).await;
        assert_eq!(call(&gw, "closed", &obo).await.0, 200);
        assert_eq!(call(&gw, "closed", &autonomous).await.0, 200);

        // Revoke the autonomous token by its uti: refused, the delegated one is not.
        let uti = claim(&autonomous, "uti").as_str().unwrap().to_string();
        let path = "/agentid/v1/revokedTokens";
        let (status, body) = graph_any(&sts, &admin, "POST", path, Some(json!({"uti": uti}))).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["uti"], uti.as_str());
        until_status(&gw, "closed", &autonomous, 401).await;
        denied_for(&gw, "closed", 1, "revoked:tokenRevoked").await;
        assert_eq!(call(&gw, "closed", &obo).await.0, 200);
        // Idempotent; malformed and unknown utis are told apart; only administrators may.
        let (status, again) =
            graph_any(&sts, &admin, "POST", path, Some(json!({"uti": uti}))).await;
        assert_eq!(
            (status, &again["expiresDateTime"]),
            (200, &body["expiresDateTime"])
        );
        for (bad, expected) in [
            (json!({"uti": "not a uti"}), 400),
            (json!({"uti": ""}), 400),
            (json!({"uti": 5}), 400),
            (json!({"uti": uti, "other": 1}), 400),
            (json!({"uti": "AAAAAAAAAAAAAAAAAAAAAA"}), 404),
        ] {
            let (status, b) = graph_any(&sts, &admin, "POST", path, Some(bad.clone())).await;
            assert_eq!(status, expected, "{bad}: {b}");
        }
        // The blueprint's own Graph token: an application without Application.ReadWrite.All.
        let user = sts
            .token_ok(&[
                ("grant_type", "client_credentials"),
                ("client_id", agentid_testkit::demo::BLUEPRINT),
                ("client_secret", agentid_testkit::demo::BLUEPRINT_SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .await;
        let without_scope = graph_any(&sts, &user, "POST", path, Some(json!({"uti": uti}))).await;
        assert_eq!(without_scope.0, 403, "{}", without_scope.1);
        let app_token = graph_any(&sts, &autonomous, "POST", path, Some(json!({"uti": uti}))).await;
        assert!(app_token.0 == 401 || app_token.0 == 403, "{}", app_token.1);
        // The write is in the directory audit.
        let audited = sts
            .running
            .state
            .store
            .audit_events(&agentid_directory::audit::AuditQuery {
                category: Some("directory".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            audited
                .iter()
                .any(|e| e.operation.as_deref() == Some("POST /revokedTokens")
                    && e.target.as_deref() == Some(uti.as_str())
                    && e.result == "succeeded"),
            "{audited:?}"
        );

        // Delete the agent's consent for the MCP server: its delegated token is refused, a
        // fresh autonomous token (no consent involved) is not.
        let (_, grants) = graph_any(
            &sts,
            &admin,
            "GET",
            &format!("/v1.0/oauth2PermissionGrants?$filter=clientId eq '{AGENT}'"),
            None,
        )
        .await;
        let grant = grants["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["scope"] == "access_as_user")
            .unwrap_or_else(|| panic!("the agent's MCP consent: {grants}"))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
        graph(
            &sts,
            &admin,
            "DELETE",
            &format!("/v1.0/oauth2PermissionGrants/{grant}"),
            None,
        )
        .await;
        until_status(&gw, "closed", &obo, 401).await;
        denied_for(&gw, "closed", 2, "revoked:consentRevoked").await;
        assert_eq!(call(&gw, "closed", &autonomous).await.0, 200);
        sts.stop().await;
    }
);

both_backends!(a_deleted_agent_reaches_the_gateway, |db: Db| async move {
    let sts = sts(db).await;
    let obo = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
    let admin = admin_token(&sts).await;
    let gw = gateway(&sts, MODE).await;
    feed_ready(&gw).await;
    assert_eq!(call(&gw, "closed", &autonomous).await.0, 200);

    graph(
        &sts,
        &admin,
        "DELETE",
        &format!("/v1.0/servicePrincipals/{AGENT}"),
        None,
    )
    .await;
    until_status(&gw, "closed", &autonomous, 401).await;
    assert_eq!(call(&gw, "closed", &obo).await.0, 401);
    denied_for(&gw, "closed", 2, "revoked:agentDeleted").await;
    let events = gw.audit("route=closed&decision=deny").await;
    assert!(
        events.iter().all(|e| e["identity"]["agentId"] == AGENT),
        "{events:?}"
    );
    sts.stop().await;
});
