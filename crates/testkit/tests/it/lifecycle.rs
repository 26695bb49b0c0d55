//! State that lives in the database: tenant files, signing keys, refresh tokens, audit.

use agentid_directory::Store;
use agentid_directory::audit::AuditQuery;
use agentid_directory::tenant_file::{TenantFile, apply};
use agentid_testkit::db::TestDb;
use agentid_testkit::sts::Options;
use agentid_testkit::{Db, TestSts, both_backends, claims, header};
use serde_json::Value;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const AT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TABLES: [&str; 10] = [
    "tenants",
    "users",
    "applications",
    "service_principals",
    "password_credentials",
    "federated_credentials",
    "oauth2_permission_grants",
    "app_role_assignments",
    "identifier_uris",
    "tenant_file_objects",
];

async fn counts(store: &Store) -> Vec<i64> {
    let mut v = Vec::new();
    for t in TABLES {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(store.pool())
            .await
            .unwrap();
        v.push(n);
    }
    v
}

both_backends!(
    tenant_file_apply_is_idempotent_and_atomic,
    |db: Db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut tdb = TestDb::create(db, dir.path()).await;
        let store = Store::connect(&tdb.url).await.unwrap();
        let file = TenantFile::parse(DEMO, dir.path()).unwrap();
        let first = apply(&store, &file).await.unwrap();
        assert!(first.created >= 14, "{first:?}");
        assert_eq!(first.ids["agents"]["blog-agent"], AGENT);
        let second = apply(&store, &file).await.unwrap();
        assert_eq!((second.created, second.updated), (0, 0), "{second:?}");

        // A change is an update, found again by its handle.
        let changed = TenantFile::parse(
            &DEMO.replace("displayName: My Blog Agent", "displayName: Renamed Agent"),
            dir.path(),
        )
        .unwrap();
        let r = apply(&store, &changed).await.unwrap();
        assert_eq!((r.created, r.updated), (0, 1));
        let agent = store
            .service_principal_by_app_id(&r.tenant_id, &AGENT.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(agent.display_name, "Renamed Agent");

        // A file that fails late (a grant naming an unknown scope) changes nothing, even its early parts.
        let before = counts(&store).await;
        let bad = DEMO
            .replace("bob@contoso.test", "robert@contoso.test")
            .replace(
                "scopes: [access_as_user]\n\nappRoleAssignments",
                "scopes: [no_such_scope]\n\nappRoleAssignments",
            );
        let err = apply(&store, &TenantFile::parse(&bad, dir.path()).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("grants[3].scopes[0]: 'no_such_scope'"),
            "{err}"
        );
        assert_eq!(counts(&store).await, before);
        assert!(
            store
                .user_by_upn(&r.tenant_id, "robert@contoso.test")
                .await
                .unwrap()
                .is_none()
        );

        // Unknown keys and unknown references name their path.
        let err = TenantFile::parse(
            &DEMO.replace(
                "    sponsors: [alice]\n        agentUser",
                "    sponsers: [alice]\n        agentUser",
            ),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("blueprints[0].agents[0]"), "{err}");
        let err = apply(
            &store,
            &TenantFile::parse(
                &DEMO.replace(
                    "  - client: blog-agent\n    resource: graph",
                    "  - client: nobody\n    resource: graph",
                ),
                dir.path(),
            )
            .unwrap(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("grants[2].client: no application, blueprint or agent named 'nobody'"),
            "{err}"
        );

        // A secret without a value is generated once, shown once, and kept afterwards.
        let generated = DEMO.replace("value: demo-blueprint-secret-change-me", "");
        let generated = generated.replace(
            "      - displayName: demo\n        \n",
            "      - displayName: generated\n",
        );
        let f = TenantFile::parse(&generated, dir.path()).unwrap();
        let r = apply(&store, &f).await.unwrap();
        assert_eq!(r.generated_secrets.len(), 1, "{r:?}");
        assert_eq!(r.generated_secrets[0].value.len(), 40);
        assert!(
            format!("{:?}", r.generated_secrets[0])
                .find(&r.generated_secrets[0].value)
                .is_none(),
            "Debug redacts secrets"
        );
        let r = apply(&store, &f).await.unwrap();
        assert!(r.generated_secrets.is_empty());
        store.close().await;
        tdb.drop_now().await;
    }
);

fn bp_token_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", BP),
        ("client_secret", BP_SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
}

async fn kids(sts: &TestSts) -> Vec<String> {
    let (_, jwks) = sts
        .get_json(&format!("{}/discovery/v2.0/keys", sts.authority()))
        .await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

async fn signed_by(sts: &TestSts) -> String {
    let (st, b) = sts.token(&bp_token_form()).await;
    assert_eq!(st, 200, "{b}");
    header(b["access_token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn obo_status(sts: &TestSts, tc: &str) -> (u16, Value) {
    let (_, t1) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", AGENT),
        ])
        .await;
    let t1 = t1["access_token"].as_str().unwrap().to_string();
    sts.token(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("client_id", AGENT),
        ("requested_token_use", "on_behalf_of"),
        ("assertion", tc),
        ("scope", "https://graph.microsoft.com/.default"),
        ("client_assertion_type", AT),
        ("client_assertion", &t1),
    ])
    .await
}

async fn alice(sts: &TestSts, scope: &str) -> Value {
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

both_backends!(key_rotation_publishes_before_signing, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let tid = sts.tenant_id.parse().unwrap();
    let keys = &sts.running.state.keys;
    let s = &sts.running.state.settings;
    let k1 = kids(&sts).await;
    assert_eq!(k1.len(), 1);
    assert_eq!(signed_by(&sts).await, k1[0]);
    let tc = alice(&sts, &format!("api://{BP}/access_as_user")).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Scheduled rotation: the next key is published now and signs only after the prepublish period.
    let now = chrono::Utc::now().timestamp();
    let k2 = keys
        .rotate(&tid, now, s.key_prepublish, false, false, s.clock_skew)
        .await
        .unwrap();
    assert_eq!(kids(&sts).await.len(), 2);
    assert!(kids(&sts).await.contains(&k2));
    assert_eq!(signed_by(&sts).await, k1[0], "a pending key does not sign");

    // Emergency rotation: a new key signs at once; the old ones stay published for their tokens.
    let k3 = keys
        .rotate(&tid, now, s.key_prepublish, true, false, s.clock_skew)
        .await
        .unwrap();
    assert_eq!(signed_by(&sts).await, k3);
    let published = kids(&sts).await;
    assert!(
        published.contains(&k1[0]) && published.contains(&k3),
        "{published:?}"
    );
    let (st, body) = obo_status(&sts, &tc).await;
    assert_eq!(
        st, 200,
        "a token signed by the retired key still verifies: {body}"
    );

    // --revoke-old removes the old keys at once: their tokens stop working.
    let k4 = keys
        .rotate(&tid, now, s.key_prepublish, true, true, s.clock_skew)
        .await
        .unwrap();
    assert_eq!(kids(&sts).await, vec![k4.clone()]);
    assert_eq!(signed_by(&sts).await, k4);
    let (st, body) = obo_status(&sts, &tc).await;
    assert_eq!(
        (st, body["error_codes"][0].as_u64()),
        (400, Some(50013)),
        "{body}"
    );

    // The scheduled job is idempotent: nothing is due right after a rotation.
    assert!(
        !keys
            .rotate_if_due(
                &tid,
                now,
                s.key_rotation_interval,
                s.key_prepublish,
                s.clock_skew
            )
            .await
            .unwrap()
    );
    // ...and creates the next key once the active one nears the end of its interval.
    let later = now + s.key_rotation_interval;
    let due = keys.rotate_if_due(
        &tid,
        later,
        s.key_rotation_interval,
        s.key_prepublish,
        s.clock_skew,
    );
    assert!(due.await.unwrap());
    let rows = sts
        .running
        .state
        .store
        .signing_keys(Some(&sts.tenant_id))
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|k| k.publish_at == later && k.activate_at == later + s.key_prepublish),
        "next key scheduled"
    );
    sts.stop().await;
});

async fn refresh(sts: &TestSts, rt: &str) -> (u16, Value) {
    sts.token(&[
        ("grant_type", "refresh_token"),
        ("client_id", GRAPH_CLI),
        ("refresh_token", rt),
        (
            "scope",
            &format!("api://{BP}/access_as_user offline_access"),
        ),
    ])
    .await
}

both_backends!(
    refresh_tokens_rotate_and_detect_reuse,
    |db: Db| async move {
        // No grace: a superseded token presented again is reuse at once.
        let opts = Options {
            tls: true,
            configure: Box::new(|s| {
                s.refresh_reuse_grace = -1;
                s.access_lifetime = agentid_sts::settings::AccessLifetime::Fixed(3600);
            }),
        };
        let sts = TestSts::start_with(db, DEMO, opts).await;
        let tc = alice(&sts, &format!("api://{BP}/access_as_user offline_access")).await;
        let rt1 = tc["refresh_token"].as_str().unwrap().to_string();
        let (st, r2) = refresh(&sts, &rt1).await;
        assert_eq!(st, 200, "{r2}");
        let rt2 = r2["refresh_token"].as_str().unwrap().to_string();
        assert_ne!(rt1, rt2);
        assert_eq!(sts.count("refresh_tokens").await, 2);
        // rt1 again: reuse. The whole family, rt2 included, is revoked.
        let (st, b) = refresh(&sts, &rt1).await;
        assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(70000)));
        let (st, b) = refresh(&sts, &rt2).await;
        assert_eq!(
            (st, b["error_codes"][0].as_u64()),
            (400, Some(70000)),
            "{b}"
        );
        // Bound to its client: another client cannot redeem it.
        let fresh = alice(&sts, &format!("api://{BP}/access_as_user offline_access")).await["refresh_token"].as_str().unwrap().to_string();
        let (st, b) = sts
            .token(&[
                ("grant_type", "refresh_token"),
                ("client_id", BP),
                ("client_secret", BP_SECRET),
                ("refresh_token", &fresh),
            ])
            .await;
        assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(70000)));
        // Revoked sessions and disabled users end refresh.
        let pool = sts.running.state.store.pool();
        sqlx::query(
            "UPDATE users SET sessions_revoked_at = $1 WHERE upn_lower = 'alice@contoso.test'",
        )
        .bind(chrono::Utc::now().timestamp() + 5)
        .execute(pool)
        .await
        .unwrap();
        let (st, b) = refresh(&sts, &fresh).await;
        assert_eq!(
            (st, b["error_codes"][0].as_u64()),
            (400, Some(50173)),
            "{b}"
        );
        sqlx::query("UPDATE users SET sessions_revoked_at = NULL, account_enabled = 0 WHERE upn_lower = 'alice@contoso.test'").execute(pool).await.unwrap();
        let (st, b) = refresh(&sts, &fresh).await;
        assert_eq!(
            (st, b["error_codes"][0].as_u64()),
            (400, Some(50057)),
            "{b}"
        );
        sts.stop().await;
    }
);

both_backends!(audit_records_issuance_and_refusal, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let (_, t1) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", AGENT),
        ])
        .await;
    let t1 = t1["access_token"].as_str().unwrap().to_string();
    let (_, t2) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", AGENT),
            ("scope", "https://graph.microsoft.com/.default"),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
        ])
        .await;
    let t2 = t2["access_token"].as_str().unwrap().to_string();
    let resp = sts
        .http
        .post(sts.token_url())
        .header("client-request-id", "0a49cdbc-0000-4000-8000-000000000001")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_secret", "nope"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["client-request-id"],
        "0a49cdbc-0000-4000-8000-000000000001"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["correlation_id"],
        "0a49cdbc-0000-4000-8000-000000000001"
    );

    let store = &sts.running.state.store;
    let events = store
        .audit_events(&AuditQuery {
            agent_id: Some(AGENT.into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "the T1 (fmi_path agent) and the T2");
    let e = &events[0];
    assert_eq!(
        (
            e.result.as_str(),
            e.client_kind.as_deref(),
            e.credential_type.as_deref()
        ),
        ("issued", Some("agent"), Some("t1"))
    );
    assert_eq!(e.token_id.as_deref(), claims(&t2)["uti"].as_str());
    assert_eq!(
        e.credential_id.as_deref(),
        claims(&t1)["uti"].as_str(),
        "the T1 is named by its uti"
    );
    assert_eq!(e.blueprint_id.as_deref(), Some(BP));
    let t1_event = &events[1];
    assert_eq!(
        (
            t1_event.client_kind.as_deref(),
            t1_event.credential_type.as_deref()
        ),
        (Some("blueprint"), Some("secret"))
    );
    let refused = store
        .audit_events(&AuditQuery {
            result: Some("refused".into()),
            error_code: Some(7000215),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].correlation_id.as_deref(),
        Some("0a49cdbc-0000-4000-8000-000000000001")
    );
    // No secret or token is ever stored in an event.
    let all = store
        .audit_events(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let dump = serde_json::to_string(&all).unwrap();
    assert!(
        !dump.contains(BP_SECRET) && !dump.contains("nope") && !dump.contains(&t1),
        "secrets or tokens leaked into audit"
    );
    let since = store
        .audit_events(&AuditQuery {
            since: Some(chrono::Utc::now().timestamp() + 60),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(since.is_empty());
    sts.stop().await;
});

both_backends!(
    housekeeping_runs_on_one_replica_at_a_time,
    |db: Db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut tdb = TestDb::create(db, dir.path()).await;
        let a = Store::connect(&tdb.url).await.unwrap();
        let b = Store::connect(&tdb.url).await.unwrap();
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn(async move {
            a.exclusive(async move {
                held_tx.send(()).unwrap();
                release_rx.await.unwrap();
            })
            .await
            .unwrap()
        });
        held_rx.await.unwrap();
        let second = b.exclusive(async { 1 }).await.unwrap();
        // PostgreSQL replicas exclude each other; SQLite has one process per file and always runs.
        assert_eq!(second, if db == Db::Postgres { None } else { Some(1) });
        release_tx.send(()).unwrap();
        assert_eq!(holder.await.unwrap(), Some(()));
        assert_eq!(
            b.exclusive(async { 2 }).await.unwrap(),
            Some(2),
            "free again once released"
        );
        b.close().await;
        tdb.drop_now().await;
    }
);
