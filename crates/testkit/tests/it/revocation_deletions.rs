//! Deletions in the revocation feed (docs/sts.md §17) on SQLite and PostgreSQL: deleting an
//! agent identity, a blueprint (with its agents) or a consent lists it — with the deletion time,
//! in the transaction that bumps the version — until every token it could stand for has
//! expired; housekeeping then drops it. Revoking an issued token by `uti` lists it until the
//! token's `exp` and is idempotent.

use agentid_claims::revocation::feed;
use agentid_claims::verify::KeySet;
use agentid_testkit::demo::{AGENT, ALICE, BLUEPRINT, GRAPH_CLI};
use agentid_testkit::{Db, TestSts, both_backends};
use uuid::Uuid;

/// The feed, verified with the tenant's published keys (v2 issuer form).
async fn feed_state(sts: &TestSts) -> feed::RevocationState {
    let get = |path: String| {
        let http = sts.http.clone();
        async move { http.get(path).send().await.unwrap().text().await.unwrap() }
    };
    let body = get(format!("{}/v2.0/agentid/v1/revocations", sts.authority())).await;
    let jwks = get(format!("{}/discovery/v2.0/keys", sts.authority())).await;
    let keys = KeySet::parse(jwks.as_bytes(), "jwks", true).unwrap();
    let iss = format!("{}/v2.0", sts.authority());
    feed::verify(&body, &iss, &keys, chrono::Utc::now().timestamp(), 60)
        .await
        .unwrap_or_else(|e| panic!("the feed does not verify: {e}"))
}

both_backends!(
    deletions_are_listed_until_their_tokens_expire,
    |db: Db| async move {
        let sts = TestSts::start(db, agentid_testkit::demo::DEMO_TENANT).await;
        let store = &sts.running.state.store;
        let tenant: Uuid = sts.tenant_id.parse().unwrap();
        let before = chrono::Utc::now().timestamp();
        let v0 = feed_state(&sts).await;
        assert!(v0.deleted_agents.is_empty() && v0.revoked_grants.is_empty());

        // A consent for every user: listed without a user, and the version moves.
        let grants = store.grants(&tenant).await.unwrap();
        let all_users = grants
            .iter()
            .find(|g| g.client_id == AGENT && g.consent_type == "AllPrincipals")
            .expect("the agent's consent")
            .clone();
        store.delete_grant(&all_users.id).await.unwrap();
        let s = feed_state(&sts).await;
        assert_eq!(s.version, v0.version + 1);
        let at = s.revoked_grants[&(AGENT.to_string(), None)];
        assert!(at >= before, "{s:?}");
        // A consent of one user: listed with the client's appId (not its principal's id) and the user.
        let graph_cli_sp = store
            .service_principal_by_app_id(&tenant, &GRAPH_CLI.parse().unwrap())
            .await
            .unwrap()
            .expect("Graph CLI principal");
        let mine = agentid_directory::grants::GrantRow {
            id: "alice-grant".into(),
            client_id: graph_cli_sp.id.to_string(),
            consent_type: "Principal".into(),
            principal_key: ALICE.into(),
            resource_id: all_users.resource_id.clone(),
            scope: "access_as_user".into(),
        };
        store.create_grant(&tenant, &mine).await.unwrap();
        store.delete_grant(&mine.id).await.unwrap();
        let s = feed_state(&sts).await;
        assert!(
            s.revoked_grants
                .contains_key(&(GRAPH_CLI.to_string(), Some(ALICE.to_string()))),
            "{s:?}"
        );
        // Deleting a grant that is not there changes nothing.
        let v = s.version;
        store.delete_grant("no-such-grant").await.unwrap();
        assert_eq!(store.revocation_version(&tenant).await.unwrap(), v);

        // The agent identity (Graph DELETE, the console and `agentid admin` share this path).
        let agent = store
            .principal_by_object_id(&tenant, &AGENT.parse().unwrap())
            .await
            .unwrap()
            .expect("the agent");
        store.delete_service_principal(&agent).await.unwrap();
        let s = feed_state(&sts).await;
        assert_eq!(s.version, v + 1);
        assert!(s.deleted_agents[AGENT] >= before, "{s:?}");
        assert!(s.disabled_agents.is_empty());

        // The blueprint application: its principal is listed too.
        let app = store
            .application_by_app_id(&tenant, &BLUEPRINT.parse().unwrap())
            .await
            .unwrap()
            .expect("the blueprint");
        store.delete_application(&app).await.unwrap();
        let s = feed_state(&sts).await;
        assert!(s.deleted_agents.contains_key(BLUEPRINT), "{s:?}");
        assert!(s.version > v + 1);

        // Housekeeping after the window drops them; before it, they stay.
        store.purge_revoked_tokens(before + 60).await.unwrap();
        assert_eq!(feed_state(&sts).await.deleted_agents.len(), 2);
        let after =
            chrono::Utc::now().timestamp() + agentid_directory::revocations::DELETION_WINDOW + 1;
        store.purge_revoked_tokens(after).await.unwrap();
        assert_eq!(sts.count("revocation_entries").await, 0);
        let s = feed_state(&sts).await;
        assert!(s.deleted_agents.is_empty() && s.revoked_grants.is_empty());
        sts.stop().await;
    }
);

both_backends!(an_issued_token_is_revoked_by_its_uti, |db: Db| async move {
    let sts = TestSts::start(db, agentid_testkit::demo::DEMO_TENANT).await;
    let store = &sts.running.state.store;
    let tenant: Uuid = sts.tenant_id.parse().unwrap();
    let token = agentid_testkit::Chain::demo().t1(&sts).await;
    let claims = agentid_testkit::claims(&token);
    let uti = claims["uti"].as_str().unwrap();
    let exp = claims["exp"].as_i64().unwrap();

    let v = store.revocation_version(&tenant).await.unwrap();
    let r = store
        .revoke_issued_token(&tenant, uti)
        .await
        .unwrap()
        .expect("an issued token");
    assert!(!r.already);
    assert_eq!(
        r.expires_at,
        exp + agentid_directory::revocations::CLOCK_SKEW
    );
    assert!(feed_state(&sts).await.revoked_tokens.contains(uti));
    assert_eq!(store.revocation_version(&tenant).await.unwrap(), v + 1);
    // Again: the same revocation, no new version.
    let again = store
        .revoke_issued_token(&tenant, uti)
        .await
        .unwrap()
        .unwrap();
    assert!(again.already);
    assert_eq!(again.expires_at, r.expires_at);
    assert_eq!(store.revocation_version(&tenant).await.unwrap(), v + 1);
    // Unknown here: another tenant's, or never issued.
    let other = Uuid::new_v4();
    assert_eq!(store.revoke_issued_token(&other, uti).await.unwrap(), None);
    assert_eq!(
        store.revoke_issued_token(&tenant, "nope").await.unwrap(),
        None
    );
    sts.stop().await;
});
