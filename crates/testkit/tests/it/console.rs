//! The web console (docs/console.md): sign-in through the STS's own code + PKCE flow, the role
//! gate on every route, CSRF tokens bound to the session, escaping of directory text, and the
//! actions — each changes the directory and writes a directory audit event naming the admin.

use agentid_directory::audit::{AuditEvent, AuditQuery};
use agentid_testkit::browser::{Browser, Page};
use agentid_testkit::demo::{AGENT, ALICE_PASSWORD, ALICE_UPN, BLUEPRINT};
use agentid_testkit::{Db, TestSts, both_backends};

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BOB: &str = "bob@contoso.test";
const BOB_PASSWORD: &str = "bob-builds-agents";
const BOB_ID: &str = "7d2f2d8a-5a4e-4a51-9d3b-6f0c1b2f9e11";
/// Display names are attacker input: markup, both quotes, an event handler.
const HOSTILE: &str = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";

/// Signs `user` in to the console in `web`; returns the console's home page.
async fn console_sign_in(web: &Browser, user: &str, password: &str) -> Page {
    let p = web.get("/console/signin").await;
    assert!(
        p.url.ends_with("/devicelogin/signin"),
        "{} {}",
        p.url,
        p.html
    );
    assert!(p.html.contains("agentid console"), "{}", p.html);
    let home = web
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &p.csrf()),
                ("username", user),
                ("password", password),
            ],
        )
        .await;
    assert!(home.url.ends_with("/console"), "{} {}", home.url, home.html);
    home
}

fn browser(sts: &TestSts) -> Browser {
    Browser::new(sts.base(), sts.running.ca_pem.as_deref())
}

async fn directory_events(sts: &TestSts) -> Vec<AuditEvent> {
    sts.running
        .state
        .store
        .audit_events(&AuditQuery {
            category: Some("directory".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Every page of the console (GET), with ids of the demo tenant.
fn pages() -> Vec<String> {
    let grant = "-"; // resolved per test where it matters; a missing id is still gated first
    vec![
        "/console".into(),
        "/console/blueprints".into(),
        "/console/blueprints/new".into(),
        format!("/console/blueprints/{BLUEPRINT}"),
        format!("/console/blueprints/{BLUEPRINT}/agents/new"),
        format!("/console/blueprints/{BLUEPRINT}/secrets/{AGENT}/remove"),
        format!("/console/agents/{AGENT}/disable"),
        format!("/console/agents/{AGENT}/enable"),
        "/console/consents".into(),
        format!("/console/consents/{grant}/revoke"),
        "/console/users".into(),
        format!("/console/users/{BOB_ID}/revoke-sessions"),
        "/console/audit".into(),
        "/console/audit?decision=refused".into(),
        "/console/chains/abc".into(),
        "/console/chains/abc/svg".into(),
    ]
}

/// Every form the console posts to (its API).
fn actions() -> Vec<String> {
    vec![
        "/console/blueprints/new".into(),
        format!("/console/blueprints/{BLUEPRINT}/agents/new"),
        format!("/console/blueprints/{BLUEPRINT}/secrets/{AGENT}/remove"),
        format!("/console/agents/{AGENT}/disable"),
        format!("/console/agents/{AGENT}/enable"),
        "/console/consents/x/revoke".into(),
        format!("/console/users/{BOB_ID}/revoke-sessions"),
    ]
}

both_backends!(console_role_gate, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    // Not signed in: every page sends the browser to sign in.
    let anon = browser(&sts);
    for path in pages() {
        let (status, loc, _) = anon
            .get_url_no_follow(&format!("{}{path}", sts.base()))
            .await;
        assert_eq!(
            (status, loc.as_deref()),
            (303, Some("/console/signin")),
            "{path}"
        );
    }
    // Bob is signed in but holds no directory role: 403 on every page and every action.
    let bob = browser(&sts);
    let p = bob.get("/console/signin").await;
    let refused = bob
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &p.csrf()),
                ("username", BOB),
                ("password", BOB_PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.html);
    assert!(refused.html.contains("Access denied"), "{}", refused.html);
    let bob_csrf = refused.csrf();
    let before = sts.count("service_principals").await;
    let audited = directory_events(&sts).await.len();
    for path in pages() {
        let page = bob.get(&path).await;
        assert_eq!(page.status, 403, "{path}: {}", page.html);
        assert!(
            !page.html.contains("Blog Agent"),
            "{path} leaks directory data"
        );
    }
    for path in actions() {
        let page = bob
            .post(&path, &[("csrf", &bob_csrf), ("displayName", "x")])
            .await;
        assert_eq!(page.status, 403, "{path}: {}", page.html);
    }
    assert_eq!(sts.count("service_principals").await, before);
    assert_eq!(
        directory_events(&sts).await.len(),
        audited,
        "a refused console request wrote to the directory"
    );
    // Alice (Global Administrator) sees every page.
    let alice = browser(&sts);
    console_sign_in(&alice, ALICE_UPN, ALICE_PASSWORD).await;
    for path in pages() {
        let page = alice.get(&path).await;
        assert!(
            page.status == 200 || page.status == 404,
            "{path}: {} {}",
            page.status,
            page.html
        );
    }
    sts.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sign_in_is_code_pkce_with_state_and_nonce() {
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let web = browser(&sts);
    let (status, loc, _) = web
        .get_url_no_follow(&format!(
            "{}/console/signin?tenant=contoso.test",
            sts.base()
        ))
        .await;
    assert_eq!(status, 303);
    let loc = url::Url::parse(&format!("{}{}", sts.base(), loc.unwrap())).unwrap();
    assert_eq!(
        loc.path(),
        format!("/{}/oauth2/v2.0/authorize", sts.tenant_id)
    );
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], agentid_directory::builtin::CONSOLE_APP_ID);
    assert_eq!(
        q["redirect_uri"],
        format!("{}/console/callback", sts.base())
    );
    assert_eq!(
        (
            q["response_type"].as_str(),
            q["code_challenge_method"].as_str()
        ),
        ("code", "S256")
    );
    assert!(q["state"].len() >= 32 && q["nonce"].len() >= 32 && q["code_challenge"].len() == 43);
    // A callback with another state is refused, and spends the sign-in.
    let (status, _, body) = web
        .get_url_no_follow(&format!(
            "{}/console/callback?code=x&state=forged",
            sts.base()
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("state mismatch"), "{body}");
    let (status, _, _) = web
        .get_url_no_follow(&format!(
            "{}/console/callback?code=x&state={}",
            sts.base(),
            q["state"]
        ))
        .await;
    assert_eq!(status, 400, "the state was spent by the forged response");
    // A callback in a browser that started no sign-in is refused.
    let (status, _, _) = browser(&sts)
        .get_url_no_follow(&format!(
            "{}/console/callback?code=x&state={}",
            sts.base(),
            q["state"]
        ))
        .await;
    assert_eq!(status, 400);
    // Every console response carries the strict CSP.
    let css = sts
        .http
        .get(format!("{}/console/static/console.css", sts.base()))
        .send()
        .await
        .unwrap();
    let csp = css.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(csp, agentid_sts::console::CSP);
    for d in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(d), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    sts.stop().await;
}

both_backends!(console_csrf_is_bound_to_the_session, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let one = browser(&sts);
    console_sign_in(&one, ALICE_UPN, ALICE_PASSWORD).await;
    let other = browser(&sts);
    console_sign_in(&other, ALICE_UPN, ALICE_PASSWORD).await;
    let path = format!("/console/agents/{AGENT}/disable");
    let mine = one.get(&path).await.csrf();
    let foreign = other.get(&path).await.csrf();
    assert_ne!(mine, foreign, "each session has its own token");
    for (name, form) in [
        ("missing", vec![]),
        ("empty", vec![("csrf", "")]),
        ("foreign", vec![("csrf", foreign.as_str())]),
    ] {
        let page = one.post(&path, &form).await;
        assert_eq!(page.status, 403, "{name}: {}", page.html);
    }
    let cross = one.post_cross_site(&path, &[("csrf", &mine)]).await;
    assert_eq!(cross.status, 403, "a foreign Origin is refused");
    let agent = |sts: &TestSts| {
        let store = sts.running.state.store.clone();
        let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
        async move {
            store
                .principal_by_object_id(&tid, &AGENT.parse().unwrap())
                .await
                .unwrap()
                .unwrap()
                .account_enabled
        }
    };
    assert!(agent(&sts).await, "refused posts changed nothing");
    let done = one.post(&path, &[("csrf", &mine)]).await;
    assert_eq!(done.status, 200, "{}", done.html);
    assert!(!agent(&sts).await, "the agent is disabled");
    sts.stop().await;
});

/// Asserts that `html` shows `HOSTILE` only escaped.
fn assert_escaped(path: &str, html: &str) {
    for raw in ["<script>alert", "<img src=x", "\"'><"] {
        assert!(!html.contains(raw), "{path}: {raw:?} unescaped");
    }
    assert!(
        agentid_testkit::browser::unescape(html).contains(HOSTILE),
        "{path}: the hostile name is not shown at all"
    );
}

both_backends!(console_escapes_directory_text, |db: Db| async move {
    // Bob's display name is hostile too (users are directory text as well).
    let tenant = DEMO.replace(
        "displayName: Bob Builder",
        &format!("displayName: '{}'", HOSTILE.replace('\'', "''")),
    );
    let sts = TestSts::start(db, &tenant).await;
    let web = browser(&sts);
    console_sign_in(&web, ALICE_UPN, ALICE_PASSWORD).await;
    let csrf = web.get("/console/blueprints/new").await.csrf();
    let made = web
        .post(
            "/console/blueprints/new",
            &[("csrf", &csrf), ("displayName", HOSTILE)],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.html);
    assert_escaped("blueprint page", &made.html);
    let bp_path = made.url.trim_start_matches(sts.base()).to_string();
    let new_agent = format!("{bp_path}/agents/new");
    let csrf = web.get(&new_agent).await.csrf();
    let with_agent = web
        .post(&new_agent, &[("csrf", &csrf), ("displayName", HOSTILE)])
        .await;
    assert_eq!(with_agent.status, 200, "{}", with_agent.html);
    assert_escaped("blueprint with agent", &with_agent.html);
    let store = &sts.running.state.store;
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let agent = store
        .service_principals(&tid, Some(agentid_directory::model::SpKind::AgentIdentity))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.sp.display_name == HOSTILE)
        .expect("the agent exists");
    for path in [
        "/console/blueprints".to_string(),
        new_agent.clone(),
        "/console/users".into(),
        format!("/console/users/{BOB_ID}/revoke-sessions"),
        format!("/console/agents/{}/disable", agent.sp.id),
    ] {
        let page = web.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.html);
        assert_escaped(&path, &page.html);
    }
    // Hostile filter values are echoed escaped too.
    let page = web
        .get(&format!(
            "/console/audit?agent={}",
            url::form_urlencoded::byte_serialize(HOSTILE.as_bytes()).collect::<String>()
        ))
        .await;
    assert_escaped("audit filter", &page.html);
    sts.stop().await;
});

both_backends!(
    console_actions_change_the_directory_and_are_audited,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO).await;
        let store = sts.running.state.store.clone();
        let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
        let web = browser(&sts);
        console_sign_in(&web, ALICE_UPN, ALICE_PASSWORD).await;
        let act = |path: String, extra: Option<(&'static str, &'static str)>| {
            let web = &web;
            async move {
                let csrf = web.get(&path).await.csrf();
                let mut form = vec![("csrf", csrf.clone())];
                if let Some((k, v)) = extra {
                    form.push((k, v.to_string()));
                }
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let page = web.post(&path, &form).await;
                assert_eq!(page.status, 200, "{path}: {}", page.html);
                page
            }
        };
        let last_op = |ops: &'static str| {
            let sts = &sts;
            async move {
                let e = directory_events(sts).await;
                let e = e
                    .into_iter()
                    .find(|e| e.operation.as_deref().is_some_and(|o| o.starts_with(ops)))
                    .unwrap_or_else(|| panic!("no audit event {ops}"));
                assert_eq!(
                    (
                        e.result.as_str(),
                        e.user_principal_name.as_deref(),
                        e.client_id.as_deref()
                    ),
                    (
                        "succeeded",
                        Some(ALICE_UPN),
                        Some(agentid_directory::builtin::CONSOLE_APP_ID)
                    ),
                    "{ops}"
                );
                e
            }
        };
        // Create a blueprint, then an agent identity of it.
        let bp = act(
            "/console/blueprints/new".into(),
            Some(("displayName", "Console blueprint")),
        )
        .await;
        let app = store
            .applications(&tid, true)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.display_name == "Console blueprint")
            .expect("blueprint created");
        assert!(bp.url.ends_with(&app.app_id.to_string()), "{}", bp.url);
        assert!(
            store
                .service_principal_by_app_id(&tid, &app.app_id)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            last_op("POST /applications").await.target,
            Some(app.id.to_string())
        );
        act(
            format!("/console/blueprints/{}/agents/new", app.app_id),
            Some(("displayName", "Console agent")),
        )
        .await;
        let agent = store
            .service_principals(&tid, Some(agentid_directory::model::SpKind::AgentIdentity))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.sp.display_name == "Console agent")
            .expect("agent created");
        assert_eq!(agent.sp.blueprint_app_id, Some(app.app_id));
        assert_eq!(
            last_op("POST /serviceprincipals/Microsoft.Graph.AgentIdentity")
                .await
                .target,
            Some(agent.sp.id.to_string())
        );
        // Disable and enable it.
        act(format!("/console/agents/{}/disable", agent.sp.id), None).await;
        let sp = |id: uuid::Uuid| {
            let store = store.clone();
            async move {
                store
                    .principal_by_object_id(&tid, &id)
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        assert!(!sp(agent.sp.id).await.account_enabled);
        last_op("PATCH /servicePrincipals/{id}").await;
        act(format!("/console/agents/{}/enable", agent.sp.id), None).await;
        assert!(sp(agent.sp.id).await.account_enabled);
        // Revoke a consent of the demo tenant.
        let grant = store.grants(&tid).await.unwrap().remove(0);
        act(format!("/console/consents/{}/revoke", grant.id), None).await;
        assert!(store.grant(&tid, &grant.id).await.unwrap().is_none());
        assert_eq!(
            last_op("DELETE /oauth2PermissionGrants/").await.result,
            "succeeded"
        );
        // Revoke Bob's sessions.
        act(format!("/console/users/{BOB_ID}/revoke-sessions"), None).await;
        let bob = store
            .user_by_id(&tid, &BOB_ID.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(bob.sessions_revoked_at.is_some());
        last_op("POST /users/{id}/revokeSignInSessions").await;
        // Remove the demo blueprint's secret.
        let demo_bp = store
            .application_by_app_id(&tid, &BLUEPRINT.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let key = store
            .password_credential_list(&demo_bp.id)
            .await
            .unwrap()
            .remove(0)
            .0;
        act(
            format!("/console/blueprints/{BLUEPRINT}/secrets/{key}/remove"),
            None,
        )
        .await;
        assert!(
            store
                .password_credential_list(&demo_bp.id)
                .await
                .unwrap()
                .is_empty()
        );
        last_op("POST /applications/{id}/removePassword").await;
        // The timeline shows the console's writes.
        let timeline = web.get("/console/audit").await;
        assert!(
            timeline.html.contains("removePassword"),
            "{}",
            timeline.html
        );
        sts.stop().await;
    }
);
