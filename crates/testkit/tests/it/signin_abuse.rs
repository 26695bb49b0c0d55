//! Attacks on password sign-in (issue 10, defect 3): bursts of wrong passwords, lost failure
//! counts under concurrency, CSRF tokens that outlive a failed attempt.

use agentid_directory::tokens::LockoutPolicy;
use agentid_sts::settings::PasswordLimits;
use agentid_testkit::browser::Browser;
use agentid_testkit::sts::Options;
use agentid_testkit::{Db, TestSts, both_backends};
use std::time::Duration;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const ALICE: &str = "0501a526-79e4-46ff-bd07-6605a752287b";
/// Per-user lockout threshold (sts.md §11.2 step 4).
const USER_THRESHOLD: i64 = 10;

async fn failures(sts: &TestSts, tenant: &str, subject: &str) -> Option<i64> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT failures FROM signin_failures WHERE tenant_id = $1 AND subject = $2",
    )
    .bind(tenant)
    .bind(subject)
    .fetch_optional(sts.running.state.store.pool())
    .await
    .expect("query");
    row.map(|(f,)| f)
}

fn policy(threshold: i64) -> LockoutPolicy {
    LockoutPolicy {
        threshold,
        lock_secs: 60,
        window: None,
    }
}

async fn wrong_password(sts: &TestSts) -> (u16, serde_json::Value) {
    sts.token(&[
        ("grant_type", "password"),
        ("client_id", GRAPH_CLI),
        ("username", "alice@contoso.test"),
        ("password", "not-alices-password"),
        ("scope", "https://graph.microsoft.com/User.Read"),
    ])
    .await
}

both_backends!(concurrent_failures_are_all_counted, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let store = sts.running.state.store.clone();
    let n = 40;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.record_signin_failure("t", "subject", policy(1000)).await })
        })
        .collect();
    for t in tasks {
        let _ = t.await.expect("task").expect("recorded");
    }
    assert_eq!(
        failures(&sts, "t", "subject").await,
        Some(n),
        "every concurrent failure is counted"
    );
    sts.stop().await;
});

both_backends!(
    lockout_happens_at_exactly_the_threshold,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        let store = sts.running.state.store.clone();
        // threshold - 1 concurrent failures: not locked yet.
        let tasks: Vec<_> = (0..USER_THRESHOLD - 1)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move {
                    s.record_signin_failure("t", "subject", policy(USER_THRESHOLD))
                        .await
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await.expect("task").expect("recorded");
        }
        assert_eq!(
            store.signin_locked_until("t", "subject").await.unwrap(),
            None
        );
        // The threshold-th failure locks.
        let _ = store
            .record_signin_failure("t", "subject", policy(USER_THRESHOLD))
            .await
            .unwrap();
        assert!(
            store
                .signin_locked_until("t", "subject")
                .await
                .unwrap()
                .is_some(),
            "locked at the threshold"
        );
        sts.stop().await;
    }
);

both_backends!(
    concurrent_wrong_passwords_lock_the_account,
    |db: Db| async move {
        let sts = std::sync::Arc::new(TestSts::start(db, DEMO).await);
        let tasks: Vec<_> = (0..USER_THRESHOLD)
            .map(|_| {
                let sts = sts.clone();
                tokio::spawn(async move { wrong_password(&sts).await })
            })
            .collect();
        for t in tasks {
            let (st, body) = t.await.expect("task");
            assert_eq!(
                (st, body["error_codes"][0].as_u64()),
                (400, Some(50126)),
                "{body}"
            );
        }
        let tid = sts.tenant_id.clone();
        assert_eq!(
            failures(&sts, &tid, ALICE).await,
            Some(USER_THRESHOLD),
            "every concurrent wrong password is counted"
        );
        // The account is locked now: even the right password is refused.
        let (st, body) = sts
            .token(&[
                ("grant_type", "password"),
                ("client_id", GRAPH_CLI),
                ("username", "alice@contoso.test"),
                ("password", "correct-horse-battery"),
                ("scope", "https://graph.microsoft.com/User.Read"),
            ])
            .await;
        assert_eq!(
            (st, body["error_codes"][0].as_u64()),
            (400, Some(50053)),
            "{body}"
        );
        if let Ok(sts) = std::sync::Arc::try_unwrap(sts) {
            sts.stop().await;
        }
    }
);

both_backends!(failed_sign_in_rotates_the_csrf_token, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let url = format!("{}/oauth2/v2.0/devicecode", sts.authority());
    let (st, dc) = sts
        .post_form(
            &url,
            &[
                ("client_id", GRAPH_CLI),
                ("scope", "https://graph.microsoft.com/User.Read"),
            ],
        )
        .await;
    assert_eq!(st, 200, "{dc}");
    let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let p = web.get("/devicelogin").await;
    let p = web
        .post(
            "/devicelogin",
            &[
                ("csrf", &p.csrf()),
                ("user_code", dc["user_code"].as_str().unwrap()),
            ],
        )
        .await;
    assert!(p.url.ends_with("/devicelogin/signin"), "{}", p.html);
    let before = p.csrf();
    let p = web
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &before),
                ("username", "alice@contoso.test"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert!(p.html.contains("AADSTS50126"), "{}", p.html);
    let after = p.csrf();
    assert_ne!(before, after, "a failed sign-in issues a new CSRF token");
    // The old token no longer verifies a form, even with the right password.
    let p = web
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &before),
                ("username", "alice@contoso.test"),
                ("password", "correct-horse-battery"),
            ],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.html);
    // The new one does.
    let p = web
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &p.csrf()),
                ("username", "alice@contoso.test"),
                ("password", "correct-horse-battery"),
            ],
        )
        .await;
    assert!(p.url.ends_with("/devicelogin/done"), "{}", p.html);
    sts.stop().await;
});

fn with(configure: impl FnOnce(&mut agentid_sts::Settings) + Send + 'static) -> Options {
    Options {
        tls: true,
        configure: Box::new(move |s| {
            s.access_lifetime = agentid_sts::settings::AccessLifetime::Fixed(3600);
            configure(s)
        }),
    }
}

both_backends!(
    password_checks_beyond_the_bound_get_429,
    |db: Db| async move {
        let sts = TestSts::start_with(
            db,
            DEMO,
            with(|s| {
                s.password_checks = PasswordLimits {
                    max_concurrent: 1,
                    max_waiting: 1,
                    max_wait: Duration::from_millis(100),
                }
            }),
        )
        .await;
        // Hold the only slot, as a running Argon2 check would.
        let held = sts
            .running
            .state
            .passwords
            .acquire()
            .await
            .expect("free slot");
        let resp = sts
            .http
            .post(sts.token_url())
            .form(&[
                ("grant_type", "password"),
                ("client_id", GRAPH_CLI),
                ("username", "alice@contoso.test"),
                ("password", "not-alices-password"),
                ("scope", "https://graph.microsoft.com/User.Read"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        let retry_after: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after >= 1);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert_eq!(body["error_codes"][0], 90055, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS90055: "),
            "{body}"
        );
        // A refusal before checking is not a failed password.
        let tid = sts.tenant_id.clone();
        assert_eq!(failures(&sts, &tid, ALICE).await, None);
        // The sign-in page answers the same way.
        let (web, page) = signin_page(&sts).await;
        let p = web
            .post(
                "/devicelogin/signin",
                &[
                    ("csrf", &page.csrf()),
                    ("username", "alice@contoso.test"),
                    ("password", "correct-horse-battery"),
                ],
            )
            .await;
        assert_eq!(p.status, 429, "{}", p.html);
        assert!(p.html.contains("AADSTS90055"), "{}", p.html);
        drop(held);
        let (st, body) = wrong_password(&sts).await;
        assert_eq!((st, body["error_codes"][0].as_u64()), (400, Some(50126)));
        sts.stop().await;
    }
);

/// A device-code flow in a browser, up to the sign-in page.
async fn signin_page(sts: &TestSts) -> (Browser, agentid_testkit::browser::Page) {
    let url = format!("{}/oauth2/v2.0/devicecode", sts.authority());
    let (st, dc) = sts
        .post_form(
            &url,
            &[
                ("client_id", GRAPH_CLI),
                ("scope", "https://graph.microsoft.com/User.Read"),
            ],
        )
        .await;
    assert_eq!(st, 200, "{dc}");
    let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let p = web.get("/devicelogin").await;
    let p = web
        .post(
            "/devicelogin",
            &[
                ("csrf", &p.csrf()),
                ("user_code", dc["user_code"].as_str().unwrap()),
            ],
        )
        .await;
    assert!(p.url.ends_with("/devicelogin/signin"), "{}", p.html);
    (web, p)
}

async fn wrong_password_from(sts: &TestSts, forwarded_for: &str) {
    let resp = sts
        .http
        .post(sts.token_url())
        .header("x-forwarded-for", forwarded_for)
        .form(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "bob@contoso.test"),
            ("password", "not-bobs-password"),
            ("scope", "https://graph.microsoft.com/User.Read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

both_backends!(
    address_limits_trust_forwarded_for_only_from_proxies,
    |db: Db| async move {
        // The test client connects from 127.0.0.1: make it a trusted proxy.
        let sts = TestSts::start_with(
            db,
            DEMO,
            with(|s| s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]),
        )
        .await;
        let tid = sts.tenant_id.clone();
        wrong_password_from(&sts, "198.51.100.1, 203.0.113.7").await;
        assert_eq!(failures(&sts, &tid, "ip:203.0.113.7").await, Some(1));
        assert_eq!(failures(&sts, &tid, "ip:198.51.100.1").await, None);
        assert_eq!(failures(&sts, &tid, "ip:127.0.0.1").await, None);
        sts.stop().await;

        // Not configured, or the peer is not a configured proxy: the header is the client's
        // invention and the peer address counts.
        for proxies in [vec![], vec!["10.0.0.0/8".parse().unwrap()]] {
            let sts =
                TestSts::start_with(db, DEMO, with(move |s| s.trusted_proxies = proxies)).await;
            let tid = sts.tenant_id.clone();
            wrong_password_from(&sts, "203.0.113.7").await;
            assert_eq!(failures(&sts, &tid, "ip:127.0.0.1").await, Some(1));
            assert_eq!(failures(&sts, &tid, "ip:203.0.113.7").await, None);
            sts.stop().await;
        }
    }
);
