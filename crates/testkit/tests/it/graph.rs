//! The guide's Graph provisioning sequence (G1–G21) as raw HTTP calls, then tokens for what it
//! created — no propagation waits — and the refusals around it.

use agentid_testkit::{Db, KubeIssuer, TestSts, both_backends, claims};
use serde_json::{Value, json};

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
const ADMIN_SCOPES: &str = "User.Read AgentIdentityBlueprint.Create AgentIdentityBlueprintPrincipal.Create AgentIdentityBlueprint.AddRemoveCreds.All \
AgentIdentityBlueprint.ReadWrite.All Application.ReadWrite.All DelegatedPermissionGrant.ReadWrite.All AgentIdUser.ReadWrite.All AppRoleAssignment.ReadWrite.All AuditLog.Read.All Policy.ReadWrite.ApplicationConfiguration User.ReadWrite.All";

fn tenant() -> String {
    // The admin client (the Graph CLI) is pre-consented for the Graph permissions the guide's scripts use.
    let scopes: Vec<&str> = ADMIN_SCOPES.split(' ').collect();
    DEMO.replace("\nappRoleAssignments:", &format!("  - client: graph-cli\n    resource: graph\n    scopes: [{}]\n    consentType: Principal\n    principal: alice\n  - client: graph-cli\n    resource: graph\n    scopes: [User.Read, {}]\n    consentType: Principal\n    principal: bob\n\nappRoleAssignments:", scopes.join(", "), scopes[1..].join(", ")))
}

struct Graph<'a> {
    sts: &'a TestSts,
    token: String,
}

impl Graph<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.sts.base());
        let mut r = self
            .sts
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token)
            .header("OData-Version", "4.0");
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

async fn user_token(sts: &TestSts, user: &str, password: &str) -> String {
    let (st, b) = sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", user),
            ("password", password),
            ("scope", ADMIN_SCOPES),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    b["access_token"].as_str().unwrap().to_string()
}

async fn app_token(sts: &TestSts, client: &str, secret: &str) -> String {
    let (st, b) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    b["access_token"].as_str().unwrap().to_string()
}

both_backends!(guide_provisioning_sequence, |db: Db| async move {
    let sts = TestSts::start(db, &tenant()).await;
    let admin = Graph {
        sts: &sts,
        token: user_token(&sts, "alice@contoso.test", "correct-horse-battery").await,
    };
    // G1
    let (st, me) = admin.call("GET", "/v1.0/me", None).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["userPrincipalName"], "alice@contoso.test");
    let uid = me["id"].as_str().unwrap().to_string();
    // G2: the guide's body, trailing slash and all
    let (st, bp) = admin
        .call("POST", "/beta/applications/", Some(json!({"@odata.type": "Microsoft.Graph.AgentIdentityBlueprint", "displayName": "Graph Blueprint",
            "sponsors@odata.bind": [format!("https://graph.microsoft.com/v1.0/users/{uid}")], "owners@odata.bind": [format!("https://graph.microsoft.com/v1.0/users/{uid}")]})))
        .await;
    assert_eq!(st, 201, "{bp}");
    assert_eq!(bp["@odata.type"], "#microsoft.graph.agentIdentityBlueprint");
    let (bp_obj, bp_app) = (
        bp["id"].as_str().unwrap().to_string(),
        bp["appId"].as_str().unwrap().to_string(),
    );
    // G3, immediately (no sleep)
    let (st, bpsp) = admin
        .call(
            "POST",
            "/beta/serviceprincipals/graph.agentIdentityBlueprintPrincipal",
            Some(json!({"appId": bp_app})),
        )
        .await;
    assert_eq!(st, 201, "{bpsp}");
    assert_eq!(
        bpsp["@odata.type"],
        "#microsoft.graph.agentIdentityBlueprintPrincipal"
    );
    let (st, _) = admin
        .call(
            "POST",
            "/beta/serviceprincipals",
            Some(json!({"appId": bp_app})),
        )
        .await;
    assert_eq!(st, 409, "one principal per application");
    // G4
    let (st, pw) = admin
        .call(
            "POST",
            &format!("/beta/applications/{bp_obj}/addPassword"),
            Some(json!({"passwordCredential": {"displayName": "Agent Identity CLI Secret"}})),
        )
        .await;
    assert_eq!(st, 200, "{pw}");
    let secret = pw["secretText"].as_str().unwrap().to_string();
    assert_eq!(
        (secret.len(), pw["hint"].as_str().unwrap()),
        (40, &secret[..3])
    );
    // G5
    let scope_id = uuid::Uuid::new_v4().to_string();
    let (st, b) = admin
        .call("PATCH", &format!("/beta/applications/{bp_obj}"), Some(json!({"identifierUris": [format!("api://{bp_app}")], "api": {"oauth2PermissionScopes": [{"id": scope_id,
            "value": "access_as_user", "type": "User", "isEnabled": true, "adminConsentDisplayName": "Access", "adminConsentDescription": "Access",
            "userConsentDisplayName": "Access", "userConsentDescription": "Access"}]}})))
        .await;
    assert_eq!(st, 204, "{b}");
    // G6, G8
    let (_, list) = admin
        .call(
            "GET",
            "/beta/applications/graph.agentIdentityBlueprint",
            None,
        )
        .await;
    assert!(
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["appId"] == bp_app.as_str()),
        "{list}"
    );
    let (_, f) = admin
        .call(
            "GET",
            &format!("/beta/applications?$filter=appId%20eq%20'{bp_app}'"),
            None,
        )
        .await;
    assert_eq!(f["value"][0]["id"], bp_obj.as_str());
    assert_eq!(f["value"][0]["secretText"], Value::Null);
    assert!(f["value"][0]["passwordCredentials"][0]["secretText"].is_null());
    // G9 with the blueprint's own token (not the user's)
    let bp_token = app_token(&sts, &bp_app, &secret).await;
    assert!(
        claims(&bp_token)["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "AgentIdentity.CreateAsManager")
    );
    let body = json!({"displayName": "Graph Agent", "agentIdentityBlueprintId": bp_app, "sponsors@odata.bind": [format!("https://graph.microsoft.com/v1.0/users/{uid}")]});
    let (st, e) = admin
        .call(
            "POST",
            "/beta/serviceprincipals/Microsoft.Graph.AgentIdentity",
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("Authorization_RequestDenied")),
        "delegated tokens cannot create agents"
    );
    let bpg = Graph {
        sts: &sts,
        token: bp_token,
    };
    let (st, agent) = bpg
        .call(
            "POST",
            "/beta/serviceprincipals/Microsoft.Graph.AgentIdentity",
            Some(body),
        )
        .await;
    assert_eq!(st, 201, "{agent}");
    let agent_id = agent["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            agent["appId"].as_str(),
            agent["agentIdentityBlueprintId"].as_str()
        ),
        (Some(agent_id.as_str()), Some(bp_app.as_str()))
    );
    // G10 (the blueprint sees its agents), G12
    let (_, agents) = bpg
        .call("GET", "/beta/servicePrincipals/graph.agentIdentity", None)
        .await;
    assert_eq!(agents["value"].as_array().unwrap().len(), 1, "{agents}");
    let (_, g) = admin
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals?$filter=appId eq '{GRAPH}'"),
            None,
        )
        .await;
    let graph_sp = g["value"][0]["id"].as_str().unwrap().to_string();
    // G13, and a duplicate is a conflict
    let grant = json!({"clientId": agent_id, "consentType": "AllPrincipals", "resourceId": graph_sp, "scope": "User.Read openid profile offline_access"});
    let (st, gr) = admin
        .call("POST", "/v1.0/oauth2PermissionGrants", Some(grant.clone()))
        .await;
    assert_eq!(st, 201, "{gr}");
    assert_eq!(gr["id"].as_str().unwrap().len(), 43);
    let (st, dup) = admin
        .call("POST", "/v1.0/oauth2PermissionGrants", Some(grant))
        .await;
    assert_eq!(
        (st, dup["error"]["message"].as_str()),
        (409, Some("Permission entry already exists."))
    );
    // G19
    let fic = json!({"name": "kind-workload-identity", "issuer": "https://oidc.example/oidc", "subject": "system:serviceaccount:entra-demo:sidecar-sa",
        "audiences": ["api://AzureADTokenExchange"], "description": "Workload identity for Kind cluster sidecar"});
    let (st, f) = admin
        .call(
            "POST",
            &format!("/beta/applications/{bp_obj}/federatedIdentityCredentials"),
            Some(fic.clone()),
        )
        .await;
    assert_eq!(st, 201, "{f}");
    let (st, _) = admin
        .call(
            "POST",
            &format!("/beta/applications/{bp_obj}/federatedIdentityCredentials"),
            Some(json!({"name": "other", "issuer": fic["issuer"], "subject": fic["subject"]})),
        )
        .await;
    assert_eq!(st, 409, "(issuer, subject) unique per application");
    let (st, got) = admin
        .call(
            "GET",
            &format!(
                "/beta/applications/{bp_obj}/federatedIdentityCredentials/kind-workload-identity"
            ),
            None,
        )
        .await;
    assert_eq!(
        (st, got["subject"].as_str()),
        (200, fic["subject"].as_str())
    );
    let (st, _) = admin
        .call(
            "PATCH",
            &format!(
                "/beta/applications/{bp_obj}/federatedIdentityCredentials/kind-workload-identity"
            ),
            Some(json!({"subject": "system:serviceaccount:entra-demo:ai-agent-cli-sa"})),
        )
        .await;
    assert_eq!(st, 204);
    for i in 0..19 {
        let (st, b) = admin
            .call("POST", &format!("/beta/applications/{bp_obj}/federatedIdentityCredentials"), Some(json!({"name": format!("fic-{i}"), "issuer": "https://oidc.example/oidc", "subject": format!("s{i}")})))
            .await;
        assert_eq!(st, 201, "{b}");
    }
    let (st, b) = admin
        .call(
            "POST",
            &format!("/beta/applications/{bp_obj}/federatedIdentityCredentials"),
            Some(
                json!({"name": "fic-21", "issuer": "https://oidc.example/oidc", "subject": "s21"}),
            ),
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (400, Some("Request_BadRequest")),
        "the 21st credential"
    );

    // Tokens for what was just created: T1 → T2, and the agent's OBO consent works at once.
    let (st, t1) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &bp_app),
            ("client_secret", &secret),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", &agent_id),
        ])
        .await;
    assert_eq!(st, 200, "{t1}");
    let t1 = t1["access_token"].as_str().unwrap().to_string();
    let (st, t2) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &agent_id),
            ("scope", "https://graph.microsoft.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{t2}");
    assert_eq!(
        claims(t2["access_token"].as_str().unwrap())["xms_par_app_azp"],
        bp_app.as_str()
    );

    // G20: an application permission for the agent on the MCP server, seen in its next T2.
    let mcp = "ec791040-80f8-4129-bf34-96a0e0672c96";
    let (_, m) = admin
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals?$filter=appId eq '{mcp}'"),
            None,
        )
        .await;
    let (mcp_sp, role_id) = (
        m["value"][0]["id"].as_str().unwrap().to_string(),
        m["value"][0]["appRoles"][0]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let (st, a) = admin
        .call(
            "POST",
            &format!("/v1.0/servicePrincipals/{agent_id}/appRoleAssignments"),
            Some(json!({"principalId": agent_id, "resourceId": mcp_sp, "appRoleId": role_id})),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["principalType"], "ServicePrincipal");
    let (_, assigned) = admin
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals/{mcp_sp}/appRoleAssignedTo"),
            None,
        )
        .await;
    assert!(
        assigned["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["principalId"] == agent_id.as_str()),
        "{assigned}"
    );
    let (st, t2) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &agent_id),
            ("scope", &format!("api://{mcp}/.default")),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{t2}");
    assert_eq!(
        claims(t2["access_token"].as_str().unwrap())["roles"],
        json!(["Tools.Invoke"])
    );
    let (st, _) = admin
        .call(
            "POST",
            &format!("/v1.0/servicePrincipals/{agent_id}/appRoleAssignments"),
            Some(json!({"principalId": agent_id, "resourceId": mcp_sp, "appRoleId": role_id})),
        )
        .await;
    assert_eq!(st, 409, "the same assignment twice");

    // G21: the agent's own user account.
    let (st, au) = admin
        .call("POST", "/beta/users", Some(json!({"@odata.type": "microsoft.graph.agentUser", "displayName": "Graph Agent (user)", "userPrincipalName": "graph-agent@contoso.test",
            "identityParentId": agent_id, "mailNickname": "graph-agent", "accountEnabled": true})))
        .await;
    assert_eq!(st, 201, "{au}");
    assert_eq!(au["@odata.type"], "#microsoft.graph.agentUser");

    // Owners and sponsors: the creator owns the blueprint; sponsors are added and removed by $ref.
    let (_, owners) = admin
        .call("GET", &format!("/beta/applications/{bp_obj}/owners"), None)
        .await;
    assert_eq!(
        owners["value"][0]["userPrincipalName"], "alice@contoso.test",
        "{owners}"
    );
    let (_, bob) = admin
        .call("GET", "/v1.0/users/bob@contoso.test", None)
        .await;
    let bob_ref = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", bob["id"].as_str().unwrap())});
    let (st, _) = admin
        .call(
            "POST",
            &format!(
                "/beta/applications/{bp_obj}/microsoft.graph.agentIdentityBlueprint/sponsors/$ref"
            ),
            Some(bob_ref.clone()),
        )
        .await;
    assert_eq!(st, 204);
    let (_, sponsors) = admin
        .call(
            "GET",
            &format!("/beta/applications/{bp_obj}/sponsors"),
            None,
        )
        .await;
    assert_eq!(sponsors["value"].as_array().unwrap().len(), 2, "{sponsors}");
    let (st, _) = admin
        .call(
            "DELETE",
            &format!(
                "/beta/applications/{bp_obj}/sponsors/{}/$ref",
                bob["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = admin.call("POST", &format!("/beta/applications/{bp_obj}/sponsors/$ref"), Some(json!({"@odata.id": "https://graph.microsoft.com/v1.0/users/00000000-0000-4000-8000-000000000000"}))).await;
    assert_eq!(st, 404);

    // Deleting a blueprint cascades (as Entra does): its principal and every agent go with it.
    let (_, spare) = bpg
        .call(
            "POST",
            "/beta/serviceprincipals/Microsoft.Graph.AgentIdentity",
            Some(
                json!({"displayName": "Spare", "agentIdentityBlueprintId": bp_app,
            "sponsors@odata.bind": [format!("https://graph.microsoft.com/v1.0/users/{uid}")]}),
            ),
        )
        .await;
    let spare_id = spare["id"].as_str().unwrap().to_string();

    // G11: the blueprint deletes its agent; it gets no more tokens.
    let (st, _) = bpg
        .call(
            "DELETE",
            &format!("/beta/serviceprincipals/{agent_id}"),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, b) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &bp_app),
            ("client_secret", &secret),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", &agent_id),
        ])
        .await;
    assert_eq!((st, b["error_codes"][0].as_u64()), (400, Some(700016)));
    let (st, _) = admin
        .call("DELETE", &format!("/beta/applications/{bp_obj}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = admin
        .call("GET", &format!("/beta/servicePrincipals/{spare_id}"), None)
        .await;
    assert_eq!(st, 404, "the blueprint's agents were deleted with it");
    let (_, left) = admin
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals?$filter=appId eq '{bp_app}'"),
            None,
        )
        .await;
    assert_eq!(left["value"].as_array().unwrap().len(), 0);
    sts.stop().await;
});

both_backends!(graph_refusals, |db: Db| async move {
    let sts = TestSts::start(db, &tenant()).await;
    let admin = Graph {
        sts: &sts,
        token: user_token(&sts, "alice@contoso.test", "correct-horse-battery").await,
    };
    let bob = Graph {
        sts: &sts,
        token: user_token(&sts, "bob@contoso.test", "bob-builds-agents").await,
    };
    let nobody = Graph {
        sts: &sts,
        token: "not-a-token".into(),
    };
    let (st, e) = nobody.call("GET", "/v1.0/me", None).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken"))
    );
    assert!(e["error"]["innerError"]["request-id"].is_string());
    // A token for another audience is not a Graph token.
    let t1 = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "85075aa5-1d73-42de-812a-95348218e4b2"),
            ("client_secret", "demo-blueprint-secret-change-me"),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", "f3897825-fd03-45f5-90eb-fdbf26135650"),
        ])
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = Graph {
        sts: &sts,
        token: t1,
    }
    .call("GET", "/v1.0/applications", None)
    .await;
    assert_eq!(st, 401);
    // Bob is no administrator: he cannot create blueprints or grants.
    let (st, e) = bob.call("POST", "/beta/applications", Some(json!({"@odata.type": "#microsoft.graph.agentIdentityBlueprint", "displayName": "x"}))).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("Authorization_RequestDenied"))
    );
    // App-only tokens cannot create blueprints.
    let app = Graph {
        sts: &sts,
        token: app_token(
            &sts,
            "85075aa5-1d73-42de-812a-95348218e4b2",
            "demo-blueprint-secret-change-me",
        )
        .await,
    };
    let (st, e) = app.call("POST", "/beta/applications", Some(json!({"@odata.type": "#microsoft.graph.agentIdentityBlueprint", "displayName": "x"}))).await;
    assert_eq!(
        (st, e["error"]["message"].as_str()),
        (
            403,
            Some("This operation cannot be performed for the specified calling identity type.")
        )
    );
    // Malformed JSON, unknown properties, unknown ids and paths, unsupported queries.
    let resp = sts
        .http
        .post(format!("{}/v1.0/applications", sts.base()))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let (st, e) = admin
        .call(
            "POST",
            "/v1.0/applications",
            Some(json!({"displayName": "x", "colour": "blue"})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["message"].as_str()),
        (
            400,
            Some("Property 'colour' does not exist on type 'microsoft.graph.application'.")
        )
    );
    let (st, _) = admin
        .call(
            "GET",
            &format!("/v1.0/applications/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = admin.call("GET", "/v1.0/groups", None).await;
    assert_eq!(st, 404);
    let (st, e) = admin
        .call("GET", "/v1.0/applications?$expand=owners", None)
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("Request_UnsupportedQuery"))
    );
    let (st, e) = admin
        .call(
            "GET",
            "/v1.0/applications?$search=\"displayName:demo\"",
            None,
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("Request_UnsupportedQuery")),
        "$search needs ConsistencyLevel"
    );
    // Built-in principals are read-only; /me needs a delegated token.
    let (_, g) = admin
        .call(
            "GET",
            &format!("/v1.0/servicePrincipals?$filter=appId eq '{GRAPH}'"),
            None,
        )
        .await;
    let (st, _) = admin
        .call(
            "DELETE",
            &format!(
                "/v1.0/servicePrincipals/{}",
                g["value"][0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, e) = app.call("GET", "/v1.0/me", None).await;
    assert_eq!(
        (st, e["error"]["message"].as_str()),
        (
            400,
            Some("/me request is only valid with delegated authentication flow.")
        )
    );
    // A blueprint cannot have redirect URIs; an enabled scope cannot be removed.
    let (_, bps) = admin
        .call(
            "GET",
            "/v1.0/applications?$filter=appId eq '85075aa5-1d73-42de-812a-95348218e4b2'",
            None,
        )
        .await;
    let bp_obj = bps["value"][0]["id"].as_str().unwrap().to_string();
    let (st, e) = admin
        .call(
            "PATCH",
            &format!("/v1.0/applications/{bp_obj}"),
            Some(json!({"web": {"redirectUris": ["https://x"]}})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("AgentBlueprint_IncompatibleProperty"))
    );
    let (st, e) = admin
        .call(
            "PATCH",
            &format!("/v1.0/applications/{bp_obj}"),
            Some(json!({"api": {"oauth2PermissionScopes": []}})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["message"].as_str()),
        (
            400,
            Some("Permission (scope or role) cannot be deleted or updated unless disabled first.")
        )
    );
    // Nothing above changed the blueprint.
    let (_, again) = admin
        .call("GET", &format!("/v1.0/applications/{bp_obj}"), None)
        .await;
    assert_eq!(
        again["api"]["oauth2PermissionScopes"][0]["value"],
        "access_as_user"
    );
    sts.stop().await;
});

both_backends!(trusted_issuers_and_directory_audit, |db: Db| async move {
    let sts = TestSts::start(db, &tenant()).await;
    let admin = Graph {
        sts: &sts,
        token: user_token(&sts, "alice@contoso.test", "correct-horse-battery").await,
    };
    let kube = KubeIssuer::start().await;
    let jwks: Value = serde_json::from_str(&kube.jwks_json()).unwrap();
    // A cluster's issuer, trusted with its JWKS stored (air-gapped: nothing is fetched).
    let (st, ti) = admin.call("POST", "/agentid/v1/trustedIssuers", Some(json!({"issuer": kube.issuer, "jwks": jwks, "allowHttp": true, "description": "kind"}))).await;
    assert_eq!(st, 201, "{ti}");
    // A CA bundle for its endpoints: PEM certificates only.
    let ti_url = format!("/agentid/v1/trustedIssuers/{}", ti["id"].as_str().unwrap());
    for bad in [
        json!("not PEM"),
        json!(12),
        json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    ] {
        let (st, e) = admin
            .call("PATCH", &ti_url, Some(json!({"caBundle": bad})))
            .await;
        assert_eq!(st, 400, "{bad}: {e}");
    }
    let ca = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    };
    let (st, _) = admin
        .call("PATCH", &ti_url, Some(json!({"caBundle": ca})))
        .await;
    assert_eq!(st, 204);
    let (_, got) = admin.call("GET", &ti_url, None).await;
    assert_eq!(got["caBundle"], json!(ca));
    let (st, _) = admin
        .call("PATCH", &ti_url, Some(json!({"caBundle": null})))
        .await;
    assert_eq!(st, 204);
    let (st, _) = admin
        .call(
            "POST",
            "/agentid/v1/trustedIssuers",
            Some(json!({"issuer": kube.issuer, "allowHttp": true})),
        )
        .await;
    assert_eq!(st, 409);
    let (st, e) = admin
        .call(
            "POST",
            "/agentid/v1/trustedIssuers",
            Some(json!({"issuer": "http://plain.example"})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("Request_BadRequest"))
    );
    // Its http issuer is now acceptable in a federated credential of the demo blueprint.
    let (_, bps) = admin
        .call(
            "GET",
            "/v1.0/applications?$filter=appId eq '85075aa5-1d73-42de-812a-95348218e4b2'",
            None,
        )
        .await;
    let bp_obj = bps["value"][0]["id"].as_str().unwrap().to_string();
    let (st, f) = admin
        .call("POST", &format!("/beta/applications/{bp_obj}/federatedIdentityCredentials"), Some(json!({"name": "kind", "issuer": kube.issuer, "subject": "system:serviceaccount:agents:blog-agent"})))
        .await;
    assert_eq!(st, 201, "{f}");
    let sa = kube.mint("agents", "blog-agent", "api://AzureADTokenExchange", 3600);
    let (st, b) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "85075aa5-1d73-42de-812a-95348218e4b2"),
            ("scope", "https://graph.microsoft.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &sa),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    // Removing the trusted issuer's keys: the federated assertion can no longer be verified.
    let (st, _) = admin
        .call(
            "DELETE",
            &format!("/agentid/v1/trustedIssuers/{}", ti["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, b) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "85075aa5-1d73-42de-812a-95348218e4b2"),
            ("scope", "https://graph.microsoft.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &sa),
        ])
        .await;
    assert_eq!(
        (st, b["error_codes"][0].as_u64()),
        (401, Some(700027)),
        "http discovery is not allowed without the record: {b}"
    );

    // Every write above is in the directory audit, with no secret in it.
    let (_, pw) = admin
        .call(
            "POST",
            &format!("/beta/applications/{bp_obj}/addPassword"),
            Some(json!({})),
        )
        .await;
    let secret = pw["secretText"].as_str().unwrap().to_string();
    let (st, events) = admin
        .call("GET", "/agentid/v1/auditEvents?category=directory", None)
        .await;
    assert_eq!(st, 200, "{events}");
    let ops: Vec<&str> = events["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"POST /applications/{id}/addPassword"),
        "{ops:?}"
    );
    assert!(
        ops.contains(&"POST /trustedIssuers") && ops.contains(&"DELETE /trustedIssuers/{id}"),
        "{ops:?}"
    );
    let refused = events["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["result"] == "refused")
        .count();
    assert_eq!(
        refused, 5,
        "three bad CA bundles, the duplicate and the plain-http issuer"
    );
    assert!(
        !events.to_string().contains(&secret),
        "no secret in the audit log"
    );
    let add = events["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["operation"] == "POST /applications/{id}/addPassword")
        .unwrap();
    assert_eq!(add["target"], pw["keyId"]);
    assert_eq!(add["userPrincipalName"], "alice@contoso.test");
    // Token events are another category.
    let (_, tokens) = admin
        .call("GET", "/agentid/v1/auditEvents?category=token&$top=5", None)
        .await;
    assert!(
        tokens["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["category"].is_null())
    );
    sts.stop().await;
});

both_backends!(
    users_sessions_and_inheritable_permissions,
    |db: Db| async move {
        let sts = TestSts::start(db, &tenant()).await;
        let admin = Graph {
            sts: &sts,
            token: user_token(&sts, "alice@contoso.test", "correct-horse-battery").await,
        };
        // A new person: created, signs in, is revoked, changes nothing else.
        let (st, u) = admin
        .call("POST", "/v1.0/users", Some(json!({"accountEnabled": true, "displayName": "Carol", "mailNickname": "carol", "userPrincipalName": "carol@contoso.test",
            "passwordProfile": {"password": "carol-password-1", "forceChangePasswordNextSignIn": false}})))
        .await;
        assert_eq!(st, 201, "{u}");
        let (st, e) = admin.call("POST", "/v1.0/users", Some(json!({"accountEnabled": true, "displayName": "X", "mailNickname": "x", "userPrincipalName": "x@elsewhere.example", "passwordProfile": {"password": "12345678"}}))).await;
        assert_eq!(st, 400, "{e}");
        let scope = "api://85075aa5-1d73-42de-812a-95348218e4b2/access_as_user offline_access";
        let (st, tok) = sts
            .token(&[
                ("grant_type", "password"),
                ("client_id", GRAPH_CLI),
                ("username", "carol@contoso.test"),
                ("password", "carol-password-1"),
                ("scope", scope),
            ])
            .await;
        assert_eq!(st, 200, "{tok}");
        let rt = tok["refresh_token"].as_str().unwrap().to_string();
        let uid = u["id"].as_str().unwrap().to_string();
        let (st, r) = admin
            .call(
                "POST",
                &format!("/v1.0/users/{uid}/revokeSignInSessions"),
                None,
            )
            .await;
        assert_eq!((st, r["value"].as_bool()), (200, Some(true)));
        let (st, b) = sts
            .token(&[
                ("grant_type", "refresh_token"),
                ("client_id", GRAPH_CLI),
                ("refresh_token", &rt),
            ])
            .await;
        assert_eq!(
            (st, b["error_codes"][0].as_u64()),
            (400, Some(50173)),
            "{b}"
        );
        let (st, _) = admin.call("PATCH", &format!("/v1.0/users/{uid}"), Some(json!({"passwordProfile": {"password": "carol-password-2"}, "displayName": "Carol C."}))).await;
        assert_eq!(st, 204);
        let (st, _) = sts
            .token(&[
                ("grant_type", "password"),
                ("client_id", GRAPH_CLI),
                ("username", "carol@contoso.test"),
                ("password", "carol-password-1"),
                ("scope", scope),
            ])
            .await;
        assert_eq!(st, 400, "the old password is gone");
        let (st, _) = admin
            .call("DELETE", &format!("/v1.0/users/{uid}"), None)
            .await;
        assert_eq!(st, 204);
        let (st, _) = admin.call("GET", &format!("/v1.0/users/{uid}"), None).await;
        assert_eq!(st, 404);

        // Paging: $top with @odata.nextLink until the collection is exhausted.
        let (_, all) = admin.call("GET", "/v1.0/users", None).await;
        let total = all["value"].as_array().unwrap().len();
        assert!(total >= 3);
        let (_, mut page) = admin
            .call(
                "GET",
                "/v1.0/users?$top=1&$select=id,userPrincipalName",
                None,
            )
            .await;
        let mut seen = vec![];
        loop {
            assert_eq!(page["value"].as_array().unwrap().len(), 1);
            seen.push(page["value"][0]["id"].as_str().unwrap().to_string());
            assert!(
                page["value"][0].get("displayName").is_none(),
                "$select kept across pages"
            );
            let Some(next) = page["@odata.nextLink"].as_str() else {
                break;
            };
            page = sts
                .http
                .get(next)
                .bearer_auth(&admin.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        }
        assert_eq!(seen.len(), total);
        seen.dedup();
        assert_eq!(seen.len(), total, "no user twice");

        // Inheritance: a fresh agent of the demo blueprint has no grant of its own; it inherits the
        // blueprint's, filtered by the blueprint's inheritable permissions.
        let bp = "85075aa5-1d73-42de-812a-95348218e4b2";
        let bpg = Graph {
            sts: &sts,
            token: app_token(&sts, bp, "demo-blueprint-secret-change-me").await,
        };
        let (_, me) = admin.call("GET", "/v1.0/me", None).await;
        let (_, agent) = bpg
        .call("POST", "/beta/serviceprincipals/Microsoft.Graph.AgentIdentity", Some(json!({"displayName": "Heir", "agentIdentityBlueprintId": bp,
            "sponsors@odata.bind": [format!("https://graph.microsoft.com/v1.0/users/{}", me["id"].as_str().unwrap())]})))
        .await;
        let agent_id = agent["id"].as_str().unwrap().to_string();
        let (_, g) = admin
            .call(
                "GET",
                &format!("/v1.0/servicePrincipals?$filter=appId eq '{GRAPH}'"),
                None,
            )
            .await;
        let (_, bpsp) = admin
            .call(
                "GET",
                &format!("/v1.0/servicePrincipals?$filter=appId eq '{bp}'"),
                None,
            )
            .await;
        let (st, _) = admin
        .call("POST", "/v1.0/oauth2PermissionGrants", Some(json!({"clientId": bpsp["value"][0]["id"], "consentType": "AllPrincipals", "resourceId": g["value"][0]["id"], "scope": "User.Read openid profile"})))
        .await;
        assert_eq!(st, 201);
        assert_eq!(
            obo_scp(&sts, &agent_id).await,
            Ok("User.Read openid profile".to_string()),
            "inherited through the blueprint's allAllowed rule"
        );
        let (_, bps) = admin
            .call(
                "GET",
                &format!("/v1.0/applications?$filter=appId eq '{bp}'"),
                None,
            )
            .await;
        let bp_obj = bps["value"][0]["id"].as_str().unwrap().to_string();
        let path = format!(
            "/beta/applications/{bp_obj}/microsoft.graph.agentIdentityBlueprint/inheritablePermissions"
        );
        let (st, p) = admin.call("POST", &path, Some(json!({"resourceAppId": GRAPH, "inheritableScopes": {"@odata.type": "microsoft.graph.enumeratedScopes", "scopes": ["openid"]}}))).await;
        assert_eq!(st, 201, "{p}");
        assert_eq!(
            obo_scp(&sts, &agent_id).await,
            Ok("openid".to_string()),
            "only the enumerated scopes"
        );
        let (st, _) = admin
            .call(
                "PATCH",
                &format!("{path}/{GRAPH}"),
                Some(json!({"inheritableScopes": {"@odata.type": "#microsoft.graph.noScopes"}})),
            )
            .await;
        assert_eq!(st, 204);
        assert_eq!(
            obo_scp(&sts, &agent_id).await,
            Err(65001),
            "nothing inherited: consent required"
        );
        let (_, list) = admin.call("GET", &path, None).await;
        assert!(
            list["value"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["inheritableScopes"]["kind"] == "none"),
            "{list}"
        );
        sts.stop().await;
    }
);

/// T1 → agent OBO for Alice on Graph: the `scp` issued, or the AADSTS code of the refusal.
async fn obo_scp(sts: &TestSts, agent_id: &str) -> Result<String, u64> {
    let bp = "85075aa5-1d73-42de-812a-95348218e4b2";
    let (_, t1) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", bp),
            ("client_secret", "demo-blueprint-secret-change-me"),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", agent_id),
        ])
        .await;
    let (_, tc) = sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", &format!("api://{bp}/access_as_user")),
        ])
        .await;
    let (st, b) = sts
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", agent_id),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", tc["access_token"].as_str().unwrap()),
            ("scope", "https://graph.microsoft.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", t1["access_token"].as_str().unwrap()),
        ])
        .await;
    if st == 200 {
        Ok(claims(b["access_token"].as_str().unwrap())["scp"]
            .as_str()
            .unwrap()
            .to_string())
    } else {
        Err(b["error_codes"][0].as_u64().unwrap())
    }
}
