//! The token path's cached directory reads (docs/performance.md §3.1): a directory write, by
//! this STS or by another process on the same database, is seen by the very next token request.
//! And its audit writes (§3.2): a token answered has its audit row, however many are issued at
//! once, and a decision made at a directory generation that has moved is never written.

use agentid_directory::Store;
use agentid_testkit::demo::DEMO_TENANT as DEMO;
use agentid_testkit::{Db, TestSts, both_backends};

const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";

fn form() -> [(&'static str, &'static str); 4] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", BP),
        ("client_secret", BP_SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
}

both_backends!(
    another_process_writes_reach_the_next_token,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        // Warm the cache: these requests read the directory, the next ones may not.
        for _ in 0..3 {
            let (st, body) = sts.token(&form()).await;
            assert_eq!(st, 200, "{body}");
        }
        // Another process (a second replica, `agentid sts apply`): its own pool on the database.
        let other = Store::connect(&sts.db.url).await.expect("second store");
        let hot = agentid_directory::hot::HotReads::new();
        let before = hot.view(&other).await.expect("view").generation();
        sqlx::query("UPDATE service_principals SET account_enabled = 0 WHERE app_id = $1")
            .bind(BP)
            .execute(other.pool())
            .await
            .expect("disable");
        let after = hot.view(&other).await.expect("view").generation();
        assert!(
            after > before,
            "the write bumps the generation: {before:?} → {after:?}"
        );
        let issued_before = issued(&sts).await;
        let (st, body) = sts.token(&form()).await;
        assert_ne!(
            st, 200,
            "a disabled principal gets no token from the cache: {body}"
        );
        // This STS had not seen the new generation: its first decision (from the cache, at the
        // old generation) was not written, the request was decided again and refused.
        assert_eq!(issued(&sts).await, issued_before, "no issued row for it");
        let last = sts
            .token_events()
            .await
            .into_iter()
            .next()
            .expect("an event");
        assert_eq!(last.result, "refused", "{last:?}");

        sqlx::query("UPDATE service_principals SET account_enabled = 1 WHERE app_id = $1")
            .bind(BP)
            .execute(other.pool())
            .await
            .expect("enable");
        let (st, body) = sts.token(&form()).await;
        assert_eq!(st, 200, "{body}");

        // The secret removed: the cached credential list is not used any more.
        sqlx::query(
            "DELETE FROM password_credentials WHERE application_id IN \
         (SELECT id FROM applications WHERE app_id = $1)",
        )
        .bind(BP)
        .execute(other.pool())
        .await
        .expect("remove secret");
        let (st, body) = sts.token(&form()).await;
        assert_eq!(st, 401, "{body}");
        assert_eq!(body["error"], "invalid_client", "{body}");
        other.pool().close().await;
        sts.stop().await;
    }
);

both_backends!(
    every_issued_token_is_audited_with_the_cache_warm,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        let mut utis = Vec::new();
        for _ in 0..5 {
            let token = sts.token_ok(&form()).await;
            let claims = agentid_testkit::claims(&token);
            utis.push(claims["uti"].as_str().expect("uti").to_string());
        }
        let events = sts.token_events().await;
        for uti in &utis {
            assert!(
                events
                    .iter()
                    .any(|e| e.token_id.as_deref() == Some(uti.as_str()) && e.result == "issued"),
                "token {uti} audited"
            );
        }
        sts.stop().await;
    }
);

async fn issued(sts: &TestSts) -> usize {
    sts.token_events()
        .await
        .iter()
        .filter(|e| e.result == "issued")
        .count()
}

both_backends!(
    concurrent_tokens_are_each_audited_once,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        const N: usize = 24;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..N {
            let (http, url) = (sts.http.clone(), sts.token_url());
            set.spawn(async move {
                let resp = http.post(url).form(&form()).send().await.expect("send");
                assert_eq!(resp.status(), 200);
                let body: serde_json::Value = resp.json().await.expect("json");
                let token = body["access_token"].as_str().expect("token").to_string();
                agentid_testkit::claims(&token)["uti"]
                    .as_str()
                    .expect("uti")
                    .to_string()
            });
        }
        let mut answered = std::collections::BTreeSet::new();
        while let Some(uti) = set.join_next().await {
            answered.insert(uti.expect("task"));
        }
        assert_eq!(answered.len(), N);
        // Every answered token has its row (written before its answer), and no row is there
        // for a token that was not answered.
        let rows: std::collections::BTreeSet<String> = sts
            .token_events()
            .await
            .into_iter()
            .filter(|e| e.result == "issued")
            .filter_map(|e| e.token_id)
            .collect();
        assert_eq!(rows, answered);
        sts.stop().await;
    }
);

fn event(id: String) -> agentid_directory::audit::AuditEvent {
    agentid_directory::audit::AuditEvent {
        id,
        time: 1,
        replica: "test".into(),
        endpoint: "token".into(),
        result: "issued".into(),
        ..Default::default()
    }
}

/// Every column of an audit row set, each to a value of its own.
fn full_event(id: String, time: i64) -> agentid_directory::audit::AuditEvent {
    let v = |col: &str| Some(format!("{col}-{id}"));
    agentid_directory::audit::AuditEvent {
        time,
        tenant_id: v("tenant"),
        replica: format!("replica-{id}"),
        endpoint: "token".into(),
        grant_type: v("grant"),
        client_id: v("client"),
        client_kind: v("kind"),
        agent_id: v("agent"),
        blueprint_id: v("blueprint"),
        user_id: v("user"),
        user_principal_name: v("upn"),
        credential_type: v("credtype"),
        credential_id: v("credid"),
        federated_issuer: v("fediss"),
        federated_subject: v("fedsub"),
        resource: v("resource"),
        audience: v("audience"),
        scopes_requested: v("requested"),
        scopes_granted: v("granted"),
        roles: v("roles"),
        result: "issued".into(),
        error: v("error"),
        error_code: Some(time + 7),
        token_id: v("uti"),
        token_expires_at: Some(time + 3600),
        refresh_family_id: v("family"),
        source_ip: v("ip"),
        user_agent: v("ua"),
        correlation_id: v("corr"),
        trace_id: v("trace"),
        category: None,
        operation: v("op"),
        target: v("target"),
        parent_uti: v("parent"),
        parent_kind: v("pkind"),
        id,
    }
}

// The audit writer borrows the event rather than copying it (docs/performance.md §3.4): the
// caller gets it back unchanged, and the row holds every value of it — for one row alone and
// for rows sharing group commits of every size, more than one statement's worth at once.
both_backends!(
    an_audit_row_holds_every_value_of_its_event,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        let store = sts.running.state.store.clone();
        let json =
            |e: &agentid_directory::audit::AuditEvent| serde_json::to_value(e).expect("json");

        // Times of now: older rows would be the retention purge's to delete.
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut one = full_event("single".into(), t0);
        let before = json(&one);
        store.insert_audit(&mut one).await.expect("insert");
        assert_eq!(json(&one), before, "the caller's event is back unchanged");

        const N: i64 = 70;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..N {
            let store = store.clone();
            set.spawn(async move {
                let mut e = full_event(format!("batch-{i}"), t0 + 1 + i);
                let sent = serde_json::to_value(&e).expect("json");
                store.insert_audit(&mut e).await.expect("insert");
                assert_eq!(serde_json::to_value(&e).expect("json"), sent);
                sent
            });
        }
        let mut expected = vec![before];
        while let Some(r) = set.join_next().await {
            expected.push(r.expect("task"));
        }
        let rows = store
            .audit_events(&agentid_directory::audit::AuditQuery {
                since: Some(t0),
                until: Some(t0 + N),
                limit: 1_000,
                ..Default::default()
            })
            .await
            .expect("read back");
        let mut got: Vec<serde_json::Value> = rows.iter().map(json).collect();
        let key = |v: &serde_json::Value| v["id"].as_str().unwrap_or_default().to_string();
        got.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(got.len(), N as usize + 1, "every row written once");
        assert_eq!(got, expected);
        sts.stop().await;
    }
);

both_backends!(
    a_decision_at_a_moved_generation_is_not_written,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        let store = sts.running.state.store.clone();
        let tenant: uuid::Uuid = sts.tenant_id.parse().expect("tenant id");
        let bp: uuid::Uuid = BP.parse().expect("appId");
        let enabled = |r: &Option<agentid_directory::queries::ClientRecord>| match r {
            Some(agentid_directory::queries::ClientRecord::App { sp: Some(sp), .. }) => {
                sp.account_enabled
            }
            other => panic!("not the blueprint: {}", other.is_some()),
        };

        // The process reads the generation and caches the client under it.
        let hot = agentid_directory::hot::HotReads::new();
        let seen = hot.view(&store).await.expect("view");
        let g = seen.generation().expect("a generation");
        assert!(enabled(&seen.client(&tenant, &bp).await.expect("client")));

        // Another process disables the blueprint (the write commits).
        let other = Store::connect(&sts.db.url).await.expect("second store");
        sqlx::query("UPDATE service_principals SET account_enabled = 0 WHERE app_id = $1")
            .bind(BP)
            .execute(other.pool())
            .await
            .expect("disable");

        // A request decided at the generation this process last saw reads the stale entry...
        let assumed = hot.assumed_view(&store).await.expect("assumed view");
        assert_eq!(assumed.condition(), Some(g));
        assert!(enabled(
            &assumed.client(&tenant, &bp).await.expect("client")
        ));
        // ...and its audit row, conditional on that generation, is not written: no token.
        assert!(
            !store
                .insert_audit_at(&mut event("stale".into()), g)
                .await
                .expect("insert")
        );
        let ids: Vec<String> = sts.token_events().await.into_iter().map(|e| e.id).collect();
        assert!(!ids.contains(&"stale".to_string()));
        // Confirming the view finds it stale; a fresh view sees the write.
        assert!(!assumed.confirm().await.expect("confirm"));
        assert!(assumed.is_stale());
        let fresh = hot.view(&store).await.expect("view");
        let now = fresh.generation().expect("a generation");
        assert!(now > g);
        assert!(!enabled(&fresh.client(&tenant, &bp).await.expect("client")));

        // Concurrent rows, some at the current generation and some at the old one (they share
        // group commits): exactly the current ones are written.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..32u64 {
            let store = store.clone();
            let at = if i % 2 == 0 { now } else { g };
            set.spawn(async move {
                let id = format!("row-{i}");
                let written = store.insert_audit_at(&mut event(id.clone()), at).await;
                (id, at == now, written.expect("insert"))
            });
        }
        let mut expected = std::collections::BTreeSet::new();
        while let Some(r) = set.join_next().await {
            let (id, current, written) = r.expect("task");
            assert_eq!(written, current, "{id}");
            if current {
                expected.insert(id);
            }
        }
        let rows: std::collections::BTreeSet<String> = sts
            .token_events()
            .await
            .into_iter()
            .map(|e| e.id)
            .filter(|id| id.starts_with("row-"))
            .collect();
        assert_eq!(rows, expected);
        other.pool().close().await;
        sts.stop().await;
    }
);

/// On PostgreSQL the audit writer's own connection commits without waiting for the WAL flush
/// (docs/performance.md §3.2), unless `audit.durable_flush`; every other connection, the ones
/// directory writes use, keeps the server's flush-per-commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_audit_writer_skips_the_wal_flush_on_postgres() {
    async fn settings_of(sts: &TestSts) -> (Option<String>, String, String) {
        let (st, body) = sts.token(&form()).await;
        assert_eq!(st, 200, "{body}");
        let store = &sts.running.state.store;
        let writer = store.audit_synchronous_commit().await.expect("writer");
        let (pool,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(store.pool())
            .await
            .expect("pool");
        let mut tx = store.begin_write().await.expect("begin");
        let (write,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(&mut *tx)
            .await
            .expect("in a write");
        tx.rollback().await.expect("rollback");
        (writer, pool, write)
    }

    let sts = TestSts::start(Db::Postgres, DEMO).await;
    let (writer, pool, write) = settings_of(&sts).await;
    assert_eq!(writer.as_deref(), Some("off"));
    assert_eq!(pool, "on");
    assert_eq!(write, "on");
    // The token's row is there all the same: committed before the answer.
    assert_eq!(issued(&sts).await, 1);
    sts.stop().await;

    let durable = agentid_testkit::sts::Options {
        configure: Box::new(|s| s.audit_durable_flush = true),
        ..Default::default()
    };
    let sts = TestSts::start_with(Db::Postgres, DEMO, durable).await;
    let (writer, pool, _) = settings_of(&sts).await;
    assert_eq!(writer.as_deref(), Some("on"));
    assert_eq!(pool, "on");
    sts.stop().await;

    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    assert_eq!(
        sts.running
            .state
            .store
            .audit_synchronous_commit()
            .await
            .expect("sqlite"),
        None
    );
    sts.stop().await;
}
