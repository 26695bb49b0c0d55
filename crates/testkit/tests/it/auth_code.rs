//! Authorization code with PKCE (docs/sts.md §7.8, §11.3) through the same sign-in pages.

use agentid_testkit::browser::Browser;
use agentid_testkit::{Db, TestSts, both_backends, claims};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const REDIRECT: &str = "http://localhost:53123";

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn authorize_url(sts: &TestSts, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth2/v2.0/authorize", sts.authority())).unwrap();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Signs Alice in on the page an authorize URL leads to; returns the redirect back to the client.
async fn sign_in(web: &Browser, url: &str) -> String {
    let p = web.get_url(url).await;
    assert!(p.url.ends_with("/devicelogin/signin"), "{}", p.html);
    web.post_for_redirect(
        "/devicelogin/signin",
        &[
            ("csrf", &p.csrf()),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
        ],
    )
    .await
}

both_backends!(authorization_code_with_pkce, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let verifier = "a-very-long-code-verifier-of-at-least-forty-three-characters-0123";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let scope = format!("api://{BP}/access_as_user openid profile offline_access");
    let params = [
        ("client_id", GRAPH_CLI),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", &scope),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let back = sign_in(&web, &authorize_url(&sts, &params)).await;
    assert!(back.starts_with(REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q["state"], "st-1");
    let code = q["code"].clone();
    let redeem = |code: String, verifier: &'static str, redirect: &'static str| {
        let sts = &sts;
        async move {
            sts.token(&[
                ("grant_type", "authorization_code"),
                ("client_id", GRAPH_CLI),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
                ("scope", "openid"),
            ])
            .await
        }
    };
    let (st, b) = redeem(
        code.clone(),
        "wrong-verifier-wrong-verifier-wrong-verifier-0",
        REDIRECT,
    )
    .await;
    assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(50148)));
    let (st, b) = redeem(code.clone(), verifier, "http://localhost:9/other").await;
    assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(50011)));
    let (st, tok) = redeem(code.clone(), verifier, REDIRECT).await;
    assert_eq!(st, 200, "{tok}");
    let id = claims(tok["id_token"].as_str().unwrap());
    assert_eq!(
        (id["nonce"].as_str(), id["aud"].as_str()),
        (Some("n-1"), Some(GRAPH_CLI))
    );
    assert!(id["auth_time"].as_i64().is_some());
    assert_eq!(
        claims(tok["access_token"].as_str().unwrap())["aud"],
        format!("api://{BP}")
    );
    assert!(tok["refresh_token"].is_string());
    let (st, b) = redeem(code, verifier, REDIRECT).await;
    assert_eq!(
        (st, b["error_codes"][0].as_u64()),
        (400, Some(54005)),
        "a code is redeemed once"
    );

    // Errors before the redirect URI is trusted are pages; after, they go back to the client.
    let (st, _, html) = web
        .get_url_no_follow(&authorize_url(
            &sts,
            &[
                ("client_id", GRAPH_CLI),
                ("response_type", "code"),
                ("redirect_uri", "https://evil.example/cb"),
            ],
        ))
        .await;
    assert!(st == 400 && html.contains("AADSTS50011"), "{html}");
    let (st, _, html) = web
        .get_url_no_follow(&authorize_url(
            &sts,
            &[
                ("client_id", BP),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
            ],
        ))
        .await;
    assert!(st == 400 && html.contains("AADSTS82001"), "{html}");
    let (st, loc, _) = web
        .get_url_no_follow(&authorize_url(
            &sts,
            &[
                ("client_id", GRAPH_CLI),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", "openid"),
                ("state", "s2"),
            ],
        ))
        .await;
    let q = query(&loc.unwrap());
    assert_eq!(
        (st, q["error"].as_str(), q["state"].as_str()),
        (303, "invalid_request", "s2")
    );
    assert!(q["error_description"].contains("AADSTS50149"));
    let (_, loc, _) = web
        .get_url_no_follow(&authorize_url(
            &sts,
            &[
                ("client_id", GRAPH_CLI),
                ("response_type", "token"),
                ("redirect_uri", REDIRECT),
            ],
        ))
        .await;
    assert_eq!(query(&loc.unwrap())["error"], "unsupported_response_type");
    let (_, loc, _) = web
        .get_url_no_follow(&authorize_url(
            &sts,
            &[
                ("client_id", GRAPH_CLI),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ],
        ))
        .await;
    // Silent sign-in reuses the browser session that the sign-in above started.
    assert!(query(&loc.unwrap()).contains_key("code"));
    sts.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_auth_code_flow() {
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("AGENTID_CONFORMANCE_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|_| root.join("target/conformance-venv/bin/python"));
    let mut child = tokio::process::Command::new(python)
        .arg(root.join("tests/conformance/msal_auth_code_flow.py"))
        .env("REQUESTS_CA_BUNDLE", sts.ca_file())
        .env("AUTHORITY", sts.authority())
        .env("CLIENT_ID", GRAPH_CLI)
        .env("SCOPES", format!("api://{BP}/access_as_user"))
        .env("REDIRECT_URI", REDIRECT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let flow: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("flow")).unwrap();
    let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let back = sign_in(
        &web,
        flow["auth_uri"]
            .as_str()
            .unwrap_or_else(|| panic!("no auth_uri: {flow}")),
    )
    .await;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", serde_json::to_string(&query(&back)).unwrap()).as_bytes())
        .await
        .unwrap();
    let result: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("result")).unwrap();
    let c = claims(
        result["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("MSAL got no token: {result}")),
    );
    assert_eq!(
        (c["upn"].as_str(), c["scp"].as_str()),
        (Some("alice@contoso.test"), Some("access_as_user"))
    );
    // MSAL sends SHA-256(nonce) and checks the ID token echoes it (it raised otherwise).
    let hashed =
        agentid_claims::jwt::hex(&Sha256::digest(flow["nonce"].as_str().unwrap().as_bytes()));
    assert_eq!(result["id_token_claims"]["nonce"], hashed.as_str());
    assert!(child.wait().await.unwrap().success());
    sts.stop().await;
}

both_backends!(
    browser_session_single_sign_on_and_logout,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        let verifier = "another-long-code-verifier-of-at-least-forty-three-characters-xyz";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let scope = format!("api://{BP}/access_as_user openid");
        let params = |prompt: Option<&'static str>| {
            let mut p = vec![
                ("client_id", GRAPH_CLI.to_string()),
                ("response_type", "code".into()),
                ("redirect_uri", REDIRECT.into()),
                ("scope", scope.clone()),
                ("code_challenge", challenge.clone()),
                ("code_challenge_method", "S256".into()),
                ("state", "s".into()),
            ];
            if let Some(pr) = prompt {
                p.push(("prompt", pr.into()));
            }
            p
        };
        let url = |p: Vec<(&str, String)>| {
            authorize_url(
                &sts,
                &p.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
            )
        };
        let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
        // Without a session, silent sign-in is refused.
        let (_, loc, _) = web.get_url_no_follow(&url(params(Some("none")))).await;
        assert_eq!(query(&loc.unwrap())["error"], "login_required");
        // Sign in once...
        let back = sign_in(&web, &url(params(None))).await;
        assert!(query(&back).contains_key("code"));
        // ...then silent sign-in works, and the code is good.
        let (st, loc, _) = web.get_url_no_follow(&url(params(Some("none")))).await;
        let q = query(&loc.unwrap_or_default());
        assert_eq!(st, 303);
        let (st, tok) = sts
            .token(&[
                ("grant_type", "authorization_code"),
                ("client_id", GRAPH_CLI),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ])
            .await;
        assert_eq!(st, 200, "{tok}");
        // A device code in the same browser offers "Continue as".
        let url_dc = format!("{}/oauth2/v2.0/devicecode", sts.authority());
        let (_, dc) = sts
            .post_form(&url_dc, &[("client_id", GRAPH_CLI), ("scope", &scope)])
            .await;
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
        assert!(
            p.html.contains("Continue as alice@contoso.test"),
            "{}",
            p.html
        );
        let p = web
            .post(
                "/devicelogin/signin",
                &[("csrf", &p.csrf()), ("continue", "1")],
            )
            .await;
        assert!(p.url.ends_with("/devicelogin/done"), "{}", p.html);
        // Logout ends it; an unregistered post-logout URI is not followed.
        let (st, loc, html) = web
            .get_url_no_follow(&format!(
                "{}/oauth2/v2.0/logout?post_logout_redirect_uri=https://evil.example/",
                sts.authority()
            ))
            .await;
        assert!(
            st == 200 && loc.is_none() && html.contains("You have signed out"),
            "{st} {loc:?}"
        );
        let (_, loc, _) = web.get_url_no_follow(&url(params(Some("none")))).await;
        assert_eq!(query(&loc.unwrap())["error"], "login_required");
        // And a "continue" without a session is just a failed sign-in.
        let (_, dc) = sts
            .post_form(&url_dc, &[("client_id", GRAPH_CLI), ("scope", &scope)])
            .await;
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
        assert!(!p.html.contains("Continue as"));
        let p = web
            .post(
                "/devicelogin/signin",
                &[("csrf", &p.csrf()), ("continue", "1")],
            )
            .await;
        assert!(p.html.contains("AADSTS50126"), "{}", p.html);
        sts.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uris_registered_through_graph_are_honoured() {
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let (_, t) = sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", "Application.ReadWrite.All"),
        ])
        .await;
    let token = t["access_token"].as_str().unwrap().to_string();
    let graph = |method: &'static str, path: String, body: Value| {
        let (sts, token) = (&sts, token.clone());
        async move {
            let r = sts
                .http
                .request(method.parse().unwrap(), format!("{}{path}", sts.base()))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (st, app) = graph(
        "POST",
        "/v1.0/applications".into(),
        serde_json::json!({"displayName": "Native app"}),
    )
    .await;
    assert_eq!(st, 201);
    let (obj, app_id) = (
        app["id"].as_str().unwrap().to_string(),
        app["appId"].as_str().unwrap().to_string(),
    );
    let (st, e) = graph(
        "PATCH",
        format!("/v1.0/applications/{obj}"),
        serde_json::json!({"publicClient": {"redirectUris": ["not a uri"]}}),
    )
    .await;
    assert_eq!(st, 400, "{e}");
    let (st, _) = graph("PATCH", format!("/v1.0/applications/{obj}"), serde_json::json!({"publicClient": {"redirectUris": ["http://localhost/cb"]}, "isFallbackPublicClient": true})).await;
    assert_eq!(st, 204);
    let (st, _) = graph(
        "POST",
        "/v1.0/servicePrincipals".into(),
        serde_json::json!({"appId": app_id}),
    )
    .await;
    assert_eq!(st, 201);
    let (_, read) = graph("GET", format!("/v1.0/applications/{obj}"), Value::Null).await;
    assert_eq!(
        (
            read["publicClient"]["redirectUris"][0].as_str(),
            read["isFallbackPublicClient"].as_bool()
        ),
        (Some("http://localhost/cb"), Some(true))
    );
    let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(
        b"verifier-verifier-verifier-verifier-verifier",
    ));
    let url = authorize_url(
        &sts,
        &[
            ("client_id", &app_id),
            ("response_type", "code"),
            ("redirect_uri", "http://localhost:4711/cb"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let (st, loc, _) = web.get_url_no_follow(&url).await;
    assert_eq!(
        (st, loc.as_deref()),
        (303, Some("/devicelogin/signin")),
        "a loopback redirect on any port matches"
    );
    sts.stop().await;
}
