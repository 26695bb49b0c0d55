//! The token path's cached directory reads (docs/performance.md §3.1): a directory write, by
//! this STS or by another process on the same database, is seen by the very next token request.

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
        let (st, body) = sts.token(&form()).await;
        assert_ne!(
            st, 200,
            "a disabled principal gets no token from the cache: {body}"
        );

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
