//! Device code (docs/sts.md §7.5, §11.2): the devicecode endpoint, polling, and the /devicelogin pages.

use agentid_testkit::browser::Browser;
use agentid_testkit::{Db, TestSts, both_backends, claims};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const DC: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn device_code(sts: &TestSts, scope: &str) -> Value {
    let url = format!("{}/oauth2/v2.0/devicecode", sts.authority());
    let (st, b) = sts
        .post_form(&url, &[("client_id", GRAPH_CLI), ("scope", scope)])
        .await;
    assert_eq!(st, 200, "{b}");
    b
}

async fn poll(sts: &TestSts, dc: &Value) -> (u16, Value) {
    sts.token(&[
        ("grant_type", DC),
        ("client_id", GRAPH_CLI),
        ("device_code", dc["device_code"].as_str().unwrap()),
    ])
    .await
}

fn browser(sts: &TestSts) -> Browser {
    Browser::new(sts.base(), sts.running.ca_pem.as_deref())
}

both_backends!(device_code_sign_in_and_redeem, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let dc = device_code(
        &sts,
        &format!("api://{BP}/access_as_user openid profile offline_access"),
    )
    .await;
    let code = dc["user_code"].as_str().unwrap();
    assert_eq!(code.len(), 9);
    assert!(
        code.chars()
            .all(|c| "ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(c))
    );
    assert_eq!(
        dc["verification_uri"],
        format!("{}/devicelogin", sts.base())
    );
    assert_eq!(
        (dc["expires_in"].as_i64(), dc["interval"].as_i64()),
        (Some(900), Some(5))
    );
    assert!(dc["message"].as_str().unwrap().contains(code));

    let (st, b) = poll(&sts, &dc).await;
    assert_eq!(
        (st, b["error"].as_str(), b["error_codes"][0].as_u64()),
        (400, Some("authorization_pending"), Some(70016))
    );
    let (_, b) = poll(&sts, &dc).await;
    assert_eq!(b["error"], "slow_down", "a poll inside the interval");

    let web = browser(&sts);
    let p = web.get("/devicelogin").await;
    assert_eq!(p.status, 200);
    assert!(
        p.html.contains("<label for=\"user_code\">"),
        "accessible label"
    );
    // A cross-site post and a post without the CSRF token are refused.
    let p2 = web
        .post_cross_site("/devicelogin", &[("csrf", &p.csrf()), ("user_code", code)])
        .await;
    assert_eq!(p2.status, 403);
    let p = web.post("/devicelogin", &[("user_code", code)]).await;
    assert_eq!(p.status, 403);
    // A wrong code, then the right one in another format (lowercase, with a hyphen).
    let p = web.get("/devicelogin").await;
    let p = web
        .post(
            "/devicelogin",
            &[("csrf", &p.csrf()), ("user_code", "ZZZZZZZZZ")],
        )
        .await;
    assert!(p.html.contains("AADSTS70018"), "{}", p.html);
    let lower = format!("{}-{}", &code[..4].to_lowercase(), &code[4..]);
    let p = web
        .post(
            "/devicelogin",
            &[("csrf", &p.csrf()), ("user_code", &lower)],
        )
        .await;
    assert!(p.url.ends_with("/devicelogin/signin"), "{}", p.html);
    assert!(p.html.contains("Microsoft Graph Command Line Tools"));
    let p = web
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &p.csrf()),
                ("username", "alice@contoso.test"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert!(p.html.contains("AADSTS50126"));
    let p = web
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &p.csrf()),
                ("username", "blog-agent@contoso.test"),
                ("password", "x"),
            ],
        )
        .await;
    assert!(
        p.html.contains("AADSTS50126"),
        "agent users never sign in here"
    );
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
    // Everything was pre-consented in the demo tenant: straight to done.
    assert!(p.url.ends_with("/devicelogin/done"), "{}", p.html);
    assert!(p.html.contains(
        "You have signed in to the <strong>Microsoft Graph Command Line Tools</strong> application"
    ));

    let (st, tok) = poll(&sts, &dc).await;
    assert_eq!(st, 200, "{tok}");
    assert!(tok["refresh_token"].is_string() && tok["id_token"].is_string());
    let c = claims(tok["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["upn"].as_str(), c["scp"].as_str()),
        (
            Some(format!("api://{BP}").as_str()),
            Some("alice@contoso.test"),
            Some("access_as_user")
        )
    );
    assert_eq!(c["amr"], serde_json::json!(["pwd"]));
    // Redeemed exactly once.
    let (st, b) = poll(&sts, &dc).await;
    assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(70000)));
    // The used code is refused on the page too.
    let p = web.get("/devicelogin").await;
    let p = web
        .post("/devicelogin", &[("csrf", &p.csrf()), ("user_code", code)])
        .await;
    assert!(p.html.contains("AADSTS70018"));
    sts.stop().await;
});

both_backends!(
    device_code_consent_decline_and_admin_scopes,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        let graph_cli_sp =
            agentid_directory::builtin::sp_id(&sts.tenant_id.parse().unwrap(), GRAPH_CLI)
                .to_string();
        let grants_of = |sts: &TestSts| {
            let pool = sts.running.state.store.pool().clone();
            let sp = graph_cli_sp.clone();
            async move {
                let rows: Vec<(String, String)> = sqlx::query_as("SELECT consent_type, scope FROM oauth2_permission_grants WHERE client_id = $1 AND consent_type = 'Principal'")
                .bind(sp)
                .fetch_all(&pool)
                .await
                .unwrap();
                rows
            }
        };
        // User.ReadWrite is user-consentable and not yet granted: Bob sees the consent page and accepts.
        let dc = device_code(&sts, "User.ReadWrite openid").await;
        let web = browser(&sts);
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
        let p = web
            .post(
                "/devicelogin/signin",
                &[
                    ("csrf", &p.csrf()),
                    ("username", "bob@contoso.test"),
                    ("password", "bob-builds-agents"),
                ],
            )
            .await;
        assert!(p.url.ends_with("/devicelogin/consent"), "{}", p.html);
        assert!(
            p.html.contains("User.ReadWrite")
                && !p.html.contains("Consent on behalf of your organization")
        );
        let p = web
            .post(
                "/devicelogin/consent",
                &[("csrf", &p.csrf()), ("action", "accept")],
            )
            .await;
        assert!(p.url.ends_with("/devicelogin/done"), "{}", p.html);
        assert_eq!(
            grants_of(&sts).await,
            vec![("Principal".to_string(), "User.ReadWrite".to_string())]
        );
        let (st, tok) = poll(&sts, &dc).await;
        assert_eq!(st, 200, "{tok}");
        assert!(
            claims(tok["access_token"].as_str().unwrap())["scp"]
                .as_str()
                .unwrap()
                .contains("User.ReadWrite")
        );

        // Cancel declines the code.
        let dc = device_code(&sts, "User.ReadBasic.All").await;
        let p = browser(&sts)
            .complete_device_login(
                dc["user_code"].as_str().unwrap(),
                "bob@contoso.test",
                "bob-builds-agents",
                false,
            )
            .await;
        assert!(p.html.contains("AADSTS65004"), "{}", p.html);
        let (st, b) = poll(&sts, &dc).await;
        assert_eq!(
            (st, b["error"].as_str(), b["error_codes"][0].as_u64()),
            (400, Some("authorization_declined"), Some(65004))
        );

        // An admin-only scope: Bob needs admin approval, the code stays pending; Alice (admin) may consent.
        let dc = device_code(&sts, "User.Read.All").await;
        let p = browser(&sts)
            .complete_device_login(
                dc["user_code"].as_str().unwrap(),
                "bob@contoso.test",
                "bob-builds-agents",
                true,
            )
            .await;
        assert!(p.html.contains("AADSTS90094"), "{}", p.html);
        let (_, b) = poll(&sts, &dc).await;
        assert_eq!(b["error"], "authorization_pending");
        let web = browser(&sts);
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
        assert!(
            p.html.contains("Consent on behalf of your organization"),
            "{}",
            p.html
        );
        let p = web
            .post(
                "/devicelogin/consent",
                &[("csrf", &p.csrf()), ("action", "accept"), ("for_org", "1")],
            )
            .await;
        assert!(p.url.ends_with("/devicelogin/done"), "{}", p.html);
        let (st, _) = poll(&sts, &dc).await;
        assert_eq!(st, 200);
        // Refused at the devicecode endpoint: agents and blueprints, unknown clients, missing scope.
        let url = format!("{}/oauth2/v2.0/devicecode", sts.authority());
        let (st, b) = sts
            .post_form(&url, &[("client_id", BP), ("scope", "User.Read")])
            .await;
        assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(82001)));
        let (st, b) = sts
            .post_form(
                &url,
                &[
                    ("client_id", "00000000-0000-4000-8000-000000000000"),
                    ("scope", "User.Read"),
                ],
            )
            .await;
        assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(700016)));
        let (st, b) = sts.post_form(&url, &[("client_id", GRAPH_CLI)]).await;
        assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(900144)));
        let (st, b) = sts
            .token(&[
                ("grant_type", DC),
                ("client_id", GRAPH_CLI),
                ("device_code", "unknown"),
            ])
            .await;
        assert_eq!(
            (st, b["error"].as_str()),
            (400, Some("bad_verification_code"))
        );
        sts.stop().await;
    }
);

fn python() -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var("AGENTID_CONFORMANCE_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|_| root.join("target/conformance-venv/bin/python"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_device_flow() {
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance/msal_device_flow.py");
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .env("REQUESTS_CA_BUNDLE", sts.ca_file())
        .env("AUTHORITY", sts.authority())
        .env("CLIENT_ID", GRAPH_CLI)
        .env("SCOPES", format!("api://{BP}/access_as_user"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let flow: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("flow line")).unwrap();
    let code = flow["user_code"]
        .as_str()
        .unwrap_or_else(|| panic!("no user code: {flow}"));
    let p = browser(&sts)
        .complete_device_login(code, "alice@contoso.test", "correct-horse-battery", true)
        .await;
    assert!(p.url.ends_with("/devicelogin/done"), "{}", p.html);
    let result: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("result line")).unwrap();
    let c = claims(
        result["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("MSAL got no token: {result}")),
    );
    assert_eq!(
        (c["upn"].as_str(), c["appid"].as_str()),
        (Some("alice@contoso.test"), Some(GRAPH_CLI))
    );
    assert_eq!(
        result["id_token_claims"]["preferred_username"],
        "alice@contoso.test"
    );
    let refreshed: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("refresh line")).unwrap();
    assert!(refreshed["access_token"].is_string(), "{refreshed}");
    assert!(child.wait().await.unwrap().success());
    sts.stop().await;
}
