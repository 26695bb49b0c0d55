//! What an application may register (issue 10, defect 5 and item 9): identifier URIs follow
//! Entra's restrictions (no claiming another application's `api://{appId}`), redirect URIs are
//! https, http on loopback, or a public client's own scheme — in Graph and in tenant files.

use agentid_directory::tenant_file::{TenantFile, TenantFileError};
use agentid_testkit::{Db, TestSts, both_backends};
use serde_json::{Value, json};

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const TENANT: &str = "5e7d8166-7876-4755-a1a4-b476d4a344f6";
const SCOPES: &str = "User.Read Application.ReadWrite.All";

/// The demo tenant with the Graph CLI consented for Application.ReadWrite.All for alice (an
/// admin) and bob (an ordinary user who owns what he creates).
fn tenant() -> String {
    DEMO.replace(
        "\nappRoleAssignments:",
        "  - client: graph-cli\n    resource: graph\n    scopes: [User.Read, Application.ReadWrite.All]\n    consentType: Principal\n    principal: alice\n  - client: graph-cli\n    resource: graph\n    scopes: [User.Read, Application.ReadWrite.All]\n    consentType: Principal\n    principal: bob\n\nappRoleAssignments:",
    )
}

struct Graph<'a> {
    sts: &'a TestSts,
    token: String,
}

impl Graph<'_> {
    async fn sign_in<'a>(sts: &'a TestSts, user: &str, password: &str) -> Graph<'a> {
        let (st, b) = sts
            .token(&[
                ("grant_type", "password"),
                ("client_id", GRAPH_CLI),
                ("username", user),
                ("password", password),
                ("scope", SCOPES),
            ])
            .await;
        assert_eq!(st, 200, "{b}");
        Graph {
            sts,
            token: b["access_token"].as_str().unwrap().to_string(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.sts.base());
        let mut r = self
            .sts
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Creates an application; returns (object id, appId).
    async fn create_app(&self, name: &str) -> (String, String) {
        let (st, app) = self
            .call(
                "POST",
                "/v1.0/applications",
                Some(json!({"displayName": name})),
            )
            .await;
        assert_eq!(st, 201, "{app}");
        (
            app["id"].as_str().unwrap().to_string(),
            app["appId"].as_str().unwrap().to_string(),
        )
    }

    async fn patch(&self, obj: &str, body: Value) -> (u16, Value) {
        self.call("PATCH", &format!("/v1.0/applications/{obj}"), Some(body))
            .await
    }
}

both_backends!(
    owner_cannot_claim_another_apps_app_id_uri,
    |db: Db| async move {
        let sts = TestSts::start(db, &tenant()).await;
        let alice = Graph::sign_in(&sts, "alice@contoso.test", "correct-horse-battery").await;
        let bob = Graph::sign_in(&sts, "bob@contoso.test", "bob-builds-agents").await;
        // Alice's application has not claimed its api://{appId} yet.
        let (_, victim) = alice.create_app("Victim API").await;
        let (mine, my_app) = bob.create_app("Bob's app").await;

        let (st, b) = bob
            .patch(
                &mine,
                json!({"identifierUris": [format!("api://{victim}")]}),
            )
            .await;
        assert_eq!(st, 400, "{b}");
        assert_eq!(b["error"]["code"], "HostNameNotOnVerifiedDomain", "{b}");
        assert_eq!(
            b["error"]["message"],
            format!(
                "Values of identifierUris property must use a verified domain of the organization or its subdomain: 'api://{victim}'"
            )
        );
        for refused in [
            format!("api://{victim}/files"),
            format!("api://anything/{victim}"),
            "https://evil.test/api".to_string(),
            "https://contoso.test.evil.test/api".to_string(),
            "api://bobs-api".to_string(),
            // Another tenant's id.
            "api://00000000-0000-0000-0000-000000000001/api".to_string(),
        ] {
            let (st, b) = bob
                .patch(&mine, json!({"identifierUris": [refused.clone()]}))
                .await;
            assert_eq!(
                (st, b["error"]["code"].as_str()),
                (400, Some("HostNameNotOnVerifiedDomain")),
                "{refused}: {b}"
            );
        }
        // Nothing was written by the refused requests.
        let (_, app) = bob
            .call("GET", &format!("/v1.0/applications/{mine}"), None)
            .await;
        assert_eq!(app["identifierUris"], json!([]), "{app}");
        // Entra's secure patterns are accepted.
        for allowed in [
            json!([format!("api://{my_app}")]),
            json!([format!("api://{TENANT}/bobs-api")]),
            json!([format!("api://bobs-api/{my_app}")]),
            json!(["https://contoso.test/bobs-api", "https://api.contoso.test"]),
        ] {
            let (st, b) = bob
                .patch(&mine, json!({"identifierUris": allowed.clone()}))
                .await;
            assert_eq!(st, 204, "{allowed}: {b}");
        }
        // The victim can still claim its own URI.
        let (victim_obj, _) = {
            let (_, list) = alice
                .call(
                    "GET",
                    &format!("/v1.0/applications?$filter=appId eq '{victim}'"),
                    None,
                )
                .await;
            (
                list["value"][0]["id"].as_str().unwrap().to_string(),
                victim.clone(),
            )
        };
        let (st, b) = alice
            .patch(
                &victim_obj,
                json!({"identifierUris": [format!("api://{victim}")]}),
            )
            .await;
        assert_eq!(st, 204, "{b}");
        sts.stop().await;
    }
);

both_backends!(
    redirect_uris_refuse_dangerous_schemes,
    |db: Db| async move {
        let sts = TestSts::start(db, &tenant()).await;
        let bob = Graph::sign_in(&sts, "bob@contoso.test", "bob-builds-agents").await;
        let (mine, _) = bob.create_app("Bob's web app").await;
        for (platform, uri) in [
            ("web", "javascript:alert(document.cookie)"),
            ("publicClient", "javascript:alert(1)"),
            ("publicClient", "data:text/html,<script>alert(1)</script>"),
            ("publicClient", "file:///etc/passwd"),
            ("publicClient", "vbscript:msgbox(1)"),
            ("web", "http://app.example.com/callback"),
            ("spa", "http://127.0.0.1.evil.test/cb"),
            ("web", "myapp://callback"),
            ("web", "https://app.example.com/cb#fragment"),
        ] {
            let (st, b) = bob
                .patch(&mine, json!({platform: {"redirectUris": [uri]}}))
                .await;
            assert_eq!(st, 400, "{platform} {uri}: {b}");
            assert!(
                b["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("property '{platform}'")),
                "{b}"
            );
        }
        let (_, app) = bob
            .call("GET", &format!("/v1.0/applications/{mine}"), None)
            .await;
        assert_eq!(
            app["web"]["redirectUris"],
            json!([]),
            "nothing written: {app}"
        );
        for (platform, uri) in [
            ("web", "https://app.example.com/callback"),
            ("web", "http://localhost:8400/callback"),
            ("spa", "http://[::1]:3000/"),
            ("publicClient", "myapp://callback"),
            ("publicClient", "http://127.0.0.1/callback"),
        ] {
            let (st, b) = bob
                .patch(&mine, json!({platform: {"redirectUris": [uri]}}))
                .await;
            assert_eq!(st, 204, "{platform} {uri}: {b}");
        }
        sts.stop().await;
    }
);

async fn apply(sts: &TestSts, yaml: &str) -> Result<(), TenantFileError> {
    let file = TenantFile::parse(yaml, sts.dir.path())?;
    agentid_directory::tenant_file::apply(&sts.running.state.store, &file)
        .await
        .map(|_| ())
}

both_backends!(tenant_files_follow_the_same_rules, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let victim = "ec791040-80f8-4129-bf34-96a0e0672c96"; // the demo MCP server
    let base = format!("tenant: {{id: {TENANT}, domain: contoso.test}}\napplications:\n");
    let cases = [
        (
            format!("  - {{name: thief, identifierUris: ['api://{victim}/x']}}\n"),
            "applications[0].identifierUris[0]",
            "must use a verified domain of the organization",
        ),
        (
            "  - {name: thief, identifierUris: ['api://{appId}', 'https://evil.test/api']}\n"
                .to_string(),
            "applications[0].identifierUris[1]",
            "must use a verified domain of the organization",
        ),
        (
            "  - {name: web, redirectUris: ['javascript:alert(1)']}\n".to_string(),
            "applications[0].redirectUris[0]",
            "scheme",
        ),
        (
            "  - {name: web, redirectUris: ['https://ok.example.com', 'myapp://cb']}\n".to_string(),
            "applications[0].redirectUris[1]",
            "public clients",
        ),
        (
            "  - {name: web, redirectUris: ['http://evil.example.com/cb']}\n".to_string(),
            "applications[0].redirectUris[0]",
            "https",
        ),
    ];
    for (apps, path, text) in cases {
        let e = apply(&sts, &format!("{base}{apps}"))
            .await
            .expect_err(&apps)
            .to_string();
        assert!(e.contains(path) && e.contains(text), "{apps}: {e}");
    }
    // What Entra allows applies.
    apply(
        &sts,
        &format!(
            "{base}  - {{name: ok-api, identifierUris: ['api://{{appId}}', 'api://{{tenantId}}/ok', 'https://ok.contoso.test']}}\n  - {{name: native, publicClient: true, redirectUris: ['myapp://cb', 'http://localhost/cb']}}\n"
        ),
    )
    .await
    .expect("allowed URIs apply");
    sts.stop().await;
});

both_backends!(
    stored_dangerous_redirect_uris_are_never_used,
    |db: Db| async move {
        // A row written before the registration rule existed (or by hand in the database).
        let sts = TestSts::start(db, DEMO).await;
        let mcp = "ec791040-80f8-4129-bf34-96a0e0672c96";
        sqlx::query(
            "UPDATE applications SET redirect_uris = $1, is_public_client = 1 WHERE app_id = $2",
        )
        .bind(r#"["javascript:alert(document.domain)//"]"#)
        .bind(mcp)
        .execute(sts.running.state.store.pool())
        .await
        .unwrap();
        // An error that would go back to the client as a form post: the form's action would run
        // script in the STS's origin.
        let url = format!(
            "{}/oauth2/v2.0/authorize?client_id={mcp}&redirect_uri={}&response_type=token&response_mode=form_post&scope=openid&code_challenge=x&code_challenge_method=S256",
            sts.authority(),
            "javascript%3Aalert(document.domain)%2F%2F"
        );
        let r = sts.http.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let html = r.text().await.unwrap();
        assert_eq!(status, 400, "{html}");
        assert!(html.contains("AADSTS50011"), "{html}");
        assert!(!html.contains("action=\"javascript:"), "{html}");
        sts.stop().await;
    }
);
