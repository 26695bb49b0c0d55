//! Attacks on password sign-in (issue 10, defect 3): bursts of wrong passwords, lost failure
//! counts under concurrency, CSRF tokens that outlive a failed attempt; and markup in directory
//! and request text, which every sign-in page must show as text.

use agentid_directory::tokens::LockoutPolicy;
use agentid_sts::settings::PasswordLimits;
use agentid_testkit::browser::{Browser, unescape};
use agentid_testkit::sts::Options;
use agentid_testkit::{Db, TestSts, both_backends};
use std::time::Duration;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const ALICE: &str = "0501a526-79e4-46ff-bd07-6605a752287b";
/// Per-user lockout threshold (docs/sts.md §11.2 step 4).
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

/// Application names an attacker chose (any user may register an application): markup, both
/// quotes, an entity.
const HOSTILE_CLIENT: &str = r#"<script>alert("client")</script> O'Brien &amp; Co"#;
const HOSTILE_API: &str = r#"<img src=x onerror="alert('api')"> API"#;
const HOSTILE_CLIENT_ID: &str = "3f0c7a52-4f4e-4d8c-9b1e-6a9d3c2b1a01";
const HOSTILE_API_ID: &str = "9b6f2e1d-8c7a-4b3e-a2d1-0f9e8d7c6b5a";
const HOSTILE_REDIRECT: &str = "http://localhost:53124";

fn hostile_tenant() -> String {
    format!(
        r#"
tenant:
  id: 6a1c3f0e-2b4d-4e8f-9a7c-5d3b1e0f2a4c
  domain: hostile.test
users:
  - name: admin
    upn: admin@hostile.test
    password: admin-password-1
    roles: [Global Administrator]
  - name: user
    upn: user@hostile.test
    password: user-password-1
applications:
  - name: client
    displayName: '{client}'
    appId: {HOSTILE_CLIENT_ID}
    publicClient: true
    redirectUris: ["{HOSTILE_REDIRECT}"]
  - name: api
    displayName: '{api}'
    appId: {HOSTILE_API_ID}
    identifierUris: ["api://{{appId}}"]
    scopes: [access_as_user]
"#,
        client = HOSTILE_CLIENT.replace('\'', "''"),
        api = HOSTILE_API.replace('\'', "''"),
    )
}

/// `page` shows `text` (so the check means something), but only as text: none of the markup,
/// quotes or entities of the hostile names is in the page unescaped.
fn shows_escaped(page: &str, html: &str, text: &str) {
    for raw in [
        "<script",
        "<img",
        "onerror=\"",
        "O'Brien",
        "alert('api')",
        "alert(\"client\")",
        " &amp;",
    ] {
        assert!(!html.contains(raw), "{page} has {raw:?} unescaped: {html}");
    }
    assert!(
        unescape(html).contains(text),
        "{page} does not show {text:?}: {html}"
    );
}

both_backends!(
    directory_and_request_text_is_escaped_on_every_page,
    |db: Db| async move {
        let sts = TestSts::start(db, &hostile_tenant()).await;
        let dc_url = format!("{}/oauth2/v2.0/devicecode", sts.authority());
        let device_code = |scope: String| {
            let (sts, url) = (&sts, &dc_url);
            async move {
                let (st, dc) = sts
                    .post_form(url, &[("client_id", HOSTILE_CLIENT_ID), ("scope", &scope)])
                    .await;
                assert_eq!(st, 200, "{dc}");
                dc["user_code"].as_str().unwrap().to_string()
            }
        };
        let browser = || Browser::new(sts.base(), sts.running.ca_pem.as_deref());
        let api_scope = format!("api://{HOSTILE_API_ID}/access_as_user");

        // Sign-in and consent name the client and the API; done names the client.
        let code = device_code(api_scope.clone()).await;
        let web = browser();
        let p = web.get("/devicelogin").await;
        let p = web
            .post("/devicelogin", &[("csrf", &p.csrf()), ("user_code", &code)])
            .await;
        assert!(p.url.ends_with("/devicelogin/signin"), "{}", p.html);
        shows_escaped("sign-in", &p.html, HOSTILE_CLIENT);
        let p = web
            .post(
                "/devicelogin/signin",
                &[
                    ("csrf", &p.csrf()),
                    ("username", "user@hostile.test"),
                    ("password", "user-password-1"),
                ],
            )
            .await;
        assert!(p.url.ends_with("/devicelogin/consent"), "{}", p.html);
        shows_escaped("consent", &p.html, HOSTILE_CLIENT);
        shows_escaped("consent", &p.html, HOSTILE_API);
        let p = web
            .post(
                "/devicelogin/consent",
                &[("csrf", &p.csrf()), ("action", "accept")],
            )
            .await;
        assert!(p.url.ends_with("/devicelogin/done"), "{}", p.html);
        shows_escaped("done", &p.html, HOSTILE_CLIENT);

        // An admin-only scope asked for by a user: "Need admin approval" names the client.
        let code = device_code("https://graph.microsoft.com/User.Read.All".into()).await;
        let p = browser()
            .complete_device_login(&code, "user@hostile.test", "user-password-1", true)
            .await;
        assert!(p.html.contains("AADSTS90094"), "{}", p.html);
        shows_escaped("admin approval", &p.html, HOSTILE_CLIENT);

        // `.default` with nothing configured or granted for the admin: the AADSTS65001 message
        // quotes the client.
        let code = device_code(format!("api://{HOSTILE_API_ID}/.default")).await;
        let p = browser()
            .complete_device_login(&code, "admin@hostile.test", "admin-password-1", true)
            .await;
        assert!(p.html.contains("AADSTS65001"), "{}", p.html);
        shows_escaped("sign-in canceled", &p.html, HOSTILE_CLIENT);

        // Request text: an unregistered redirect URI is quoted on the error page, and `state`
        // goes back in the form_post page's hidden field.
        let hostile_uri = format!("{HOSTILE_REDIRECT}/{HOSTILE_API}");
        let authorize = |params: &[(&str, &str)]| {
            let mut u =
                url::Url::parse(&format!("{}/oauth2/v2.0/authorize", sts.authority())).unwrap();
            u.query_pairs_mut().extend_pairs(params);
            u.to_string()
        };
        let web = browser();
        let (st, _, html) = web
            .get_url_no_follow(&authorize(&[
                ("client_id", HOSTILE_CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", &hostile_uri),
            ]))
            .await;
        assert!(st == 400 && html.contains("AADSTS50011"), "{html}");
        shows_escaped("authorize error", &html, HOSTILE_API);
        let p = web
            .get_url(&authorize(&[
                ("client_id", HOSTILE_CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", HOSTILE_REDIRECT),
                ("scope", &api_scope),
                ("state", HOSTILE_CLIENT),
                ("response_mode", "form_post"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "S256"),
            ]))
            .await;
        shows_escaped("authorize sign-in", &p.html, HOSTILE_CLIENT);
        let p = web
            .post(
                "/devicelogin/signin",
                &[
                    ("csrf", &p.csrf()),
                    ("username", "admin@hostile.test"),
                    ("password", "admin-password-1"),
                ],
            )
            .await;
        assert!(p.url.ends_with("/devicelogin/consent"), "{}", p.html);
        let p = web
            .post(
                "/devicelogin/consent",
                &[("csrf", &p.csrf()), ("action", "accept")],
            )
            .await;
        assert!(p.html.contains("Sign-in is complete."), "{}", p.html);
        shows_escaped("form_post", &p.html, HOSTILE_CLIENT);
        assert!(
            p.html.contains(&format!("action=\"{HOSTILE_REDIRECT}\"")),
            "{}",
            p.html
        );
        sts.stop().await;
    }
);
