//! The STS's signed revocation feed (docs/sts.md §17) on SQLite and PostgreSQL: each directory
//! write that stops an agent or a user bumps the tenant's version in its own transaction and
//! shows in the feed; the feed verifies with the tenant's JWKS under the issuer form of its
//! path; a long poll answers as soon as the version passes the one asked about, and waits
//! otherwise; bad parameters are refused.

use agentid_claims::revocation::{FEED_TYP, feed};
use agentid_claims::verify::KeySet;
use agentid_testkit::demo::{AGENT, ALICE, BLUEPRINT};
use agentid_testkit::{Db, TestSts, both_backends};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// GET the feed (`v2`: the v2 issuer form); returns status, content type and body.
async fn get(sts: &TestSts, v2: bool, query: &str) -> (u16, String, String) {
    let form = if v2 { "/v2.0" } else { "" };
    let url = format!("{}{form}/agentid/v1/revocations{query}", sts.authority());
    let resp = sts.http.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ctype, resp.text().await.unwrap())
}

/// The feed, verified with the tenant's published keys.
async fn feed_state(sts: &TestSts, v2: bool, query: &str) -> feed::RevocationState {
    let (status, ctype, body) = get(sts, v2, query).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "application/jwt");
    assert_eq!(agentid_testkit::header(&body)["typ"], FEED_TYP);
    let jwks = sts
        .http
        .get(format!("{}/discovery/v2.0/keys", sts.authority()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = KeySet::parse(&jwks, "jwks", true).unwrap();
    let iss = if v2 {
        format!("{}/v2.0", sts.authority())
    } else {
        format!("{}/", sts.authority())
    };
    feed::verify(&body, &iss, &keys, chrono::Utc::now().timestamp(), 60)
        .await
        .unwrap_or_else(|e| panic!("the feed does not verify: {e}"))
}

both_backends!(directory_writes_bump_the_feed, |db: Db| async move {
    let sts = TestSts::start(db, agentid_testkit::demo::DEMO_TENANT).await;
    let store = &sts.running.state.store;
    let tenant: Uuid = sts.tenant_id.parse().unwrap();
    let v0 = feed_state(&sts, true, "").await;
    assert!(v0.disabled_agents.is_empty() && v0.revoked_users.is_empty());
    assert_eq!(feed_state(&sts, false, "").await.version, v0.version);

    // Disabling the agent (the write path Graph, tenant files and the console share).
    let agent: Uuid = AGENT.parse().unwrap();
    let off = agentid_directory::principals::PrincipalPatch {
        account_enabled: Some(false),
        ..Default::default()
    };
    store.update_principal(&agent, &off).await.unwrap();
    let s = feed_state(&sts, true, "").await;
    assert_eq!(s.version, v0.version + 1);
    assert!(s.disabled_agents.contains(AGENT));
    // The same write again changes nothing, so the version stays.
    store.update_principal(&agent, &off).await.unwrap();
    assert_eq!(store.revocation_version(&tenant).await.unwrap(), s.version);

    // Re-enabling bumps and removes it.
    let on = agentid_directory::principals::PrincipalPatch {
        account_enabled: Some(true),
        ..Default::default()
    };
    store.update_principal(&agent, &on).await.unwrap();
    let s = feed_state(&sts, false, "").await;
    assert_eq!(s.version, v0.version + 2);
    assert!(s.disabled_agents.is_empty());

    // The blueprint's principal.
    let bp = store
        .service_principal_by_app_id(&tenant, &BLUEPRINT.parse().unwrap())
        .await
        .unwrap()
        .expect("blueprint principal");
    store.update_principal(&bp.id, &off).await.unwrap();
    let s = feed_state(&sts, true, "").await;
    assert!(s.disabled_blueprints.contains(BLUEPRINT), "{s:?}");
    store.update_principal(&bp.id, &on).await.unwrap();

    // Revoking a user's sessions.
    let before = chrono::Utc::now().timestamp();
    store
        .revoke_sessions(&ALICE.parse().unwrap())
        .await
        .unwrap();
    let s = feed_state(&sts, true, "").await;
    assert!(
        s.revoked_users.get(ALICE).is_some_and(|at| *at >= before),
        "{s:?}"
    );

    // Deleting a consent, revoking a token and a refresh-token family.
    let v = s.version;
    let grant = store.grants(&tenant).await.unwrap().remove(0);
    store.delete_grant(&grant.id).await.unwrap();
    assert_eq!(store.revocation_version(&tenant).await.unwrap(), v + 1);
    store
        .revoke_token(&tenant, "some-uti", before + 3600)
        .await
        .unwrap();
    let s = feed_state(&sts, true, "").await;
    assert_eq!(s.version, v + 2);
    assert!(s.revoked_tokens.contains("some-uti"));
    // An expired revocation is no longer listed.
    store
        .revoke_token(&tenant, "old-uti", before - 10)
        .await
        .unwrap();
    assert!(
        !feed_state(&sts, true, "")
            .await
            .revoked_tokens
            .contains("old-uti")
    );
    sts.stop().await;
});

both_backends!(
    a_long_poll_answers_when_the_version_passes,
    |db: Db| async move {
        let sts = TestSts::start(db, agentid_testkit::demo::DEMO_TENANT).await;
        let v = feed_state(&sts, true, "").await.version;

        // Nothing changes: the poll waits its full second and answers the same version.
        let start = Instant::now();
        let s = feed_state(&sts, true, &format!("?afterVersion={v}&wait=1")).await;
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(s.version, v);

        // A write during the poll answers it at once (the waiter reads the database, so a write
        // by another replica wakes it the same way).
        let store = sts.running.state.store.clone();
        let poll = {
            let query = format!("?afterVersion={v}&wait=20");
            let sts = &sts;
            async move { feed_state(sts, true, &query).await }
        };
        let write = async move {
            store
                .revoke_sessions(&ALICE.parse().unwrap())
                .await
                .unwrap();
            Instant::now()
        };
        let start = Instant::now();
        let (s, _) = tokio::join!(poll, write);
        let took = start.elapsed();
        assert_eq!(s.version, v + 1);
        assert!(
            took < Duration::from_secs(5),
            "the long poll answered after {took:?}"
        );
        // A version already passed answers at once.
        let start = Instant::now();
        feed_state(&sts, true, "?afterVersion=0&wait=20").await;
        assert!(start.elapsed() < Duration::from_secs(5));
        sts.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feed_requests_are_refused() {
    let sts = TestSts::start(Db::Sqlite, agentid_testkit::demo::DEMO_TENANT).await;
    for query in [
        "?afterVersion=-1",
        "?afterVersion=x&wait=1",
        "?afterVersion=1&wait=-1",
        "?afterVersion=1&wait=1.5",
        "?afterVersion=99999999999999999999",
    ] {
        let (status, _, body) = get(&sts, true, query).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let url = format!("{}/no-such-tenant/agentid/v1/revocations", sts.base());
    let status = sts.http.get(url).send().await.unwrap().status().as_u16();
    assert_eq!(status, 400);
    // A huge wait is capped, not refused: with the version passed it answers at once.
    let (status, _, _) = get(&sts, true, "?afterVersion=0&wait=100000").await;
    assert_eq!(status, 200);
    sts.stop().await;
}
