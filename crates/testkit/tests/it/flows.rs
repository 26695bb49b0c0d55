//! The agent token chain end to end over HTTPS: blueprint token, T1, T2, user token, OBO,
//! refresh — with the claims of docs/sts.md §8 checked on each.

use agentid_testkit::{Db, TestSts, both_backends, claims, header};
use serde_json::Value;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const MCP: &str = "ec791040-80f8-4129-bf34-96a0e0672c96";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const ALICE: &str = "0501a526-79e4-46ff-bd07-6605a752287b";
const CC: &str = "client_credentials";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn s<'a>(c: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    c.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("claim {k} missing in {c:?}"))
}

async fn t1(sts: &TestSts) -> String {
    let (st, body) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", AGENT),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn user_token(sts: &TestSts) -> Value {
    let scope = format!("api://{BP}/access_as_user openid profile offline_access");
    let (st, body) = sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", &scope),
            ("client_info", "1"),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    body
}

both_backends!(blueprint_token_has_entra_claims, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let (st, body) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], body["ext_expires_in"]);
    let jwt = body["access_token"].as_str().unwrap();
    let h = header(jwt);
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["kid"], h["x5t"]);
    let c = claims(jwt);
    let tid = &sts.tenant_id;
    assert_eq!(s(&c, "aud"), "https://graph.microsoft.com");
    assert_eq!(s(&c, "iss"), format!("{}/{tid}/", sts.base()));
    assert_eq!(s(&c, "ver"), "1.0");
    assert_eq!(s(&c, "idtyp"), "app");
    assert_eq!(s(&c, "appid"), BP);
    assert_eq!(s(&c, "appidacr"), "1");
    assert_eq!(s(&c, "oid"), s(&c, "sub"));
    assert_eq!(
        c["roles"],
        serde_json::json!(["AgentIdentity.CreateAsManager"])
    );
    assert_eq!(
        (
            s(&c, "xms_act_fct"),
            s(&c, "xms_sub_fct"),
            s(&c, "xms_idrel"),
            s(&c, "xms_tnt_fct")
        ),
        ("9 3", "9 3", "7 6", "2 3")
    );
    assert!(!c.contains_key("scp") && !c.contains_key("xms_par_app_azp"));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(s(&c, "uti").len(), 22);
    sts.stop().await;
});

both_backends!(t1_t2_and_agent_obo_chain, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let tid = sts.tenant_id.clone();
    // T1
    let t1 = t1(&sts).await;
    let c = claims(&t1);
    assert_eq!(s(&c, "aud"), "fb60f99c-7a34-4190-8149-302f77469936");
    assert_eq!(s(&c, "iss"), format!("{}/{tid}/v2.0", sts.base()));
    assert_eq!(s(&c, "azp"), BP);
    assert_eq!(s(&c, "idtyp"), "app");
    let le = |g: &str| agentid_claims::guid::to_b64_le(&g.parse().unwrap());
    assert_eq!(
        s(&c, "sub"),
        format!("/eid1/c/pub/t/{}/a/{}/{AGENT}", le(&tid), le(BP))
    );
    assert_eq!(
        (
            s(&c, "xms_act_fct"),
            s(&c, "xms_sub_fct"),
            s(&c, "xms_idrel")
        ),
        ("3 9", "3 9", "7 24")
    );
    assert!(!c.contains_key("xms_tnt_fct"));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);

    // T2 autonomous
    let (st, body) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", AGENT),
            ("scope", &format!("api://{MCP}/.default")),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(s(&c, "aud"), format!("api://{MCP}"));
    assert_eq!(
        (s(&c, "appid"), s(&c, "oid"), s(&c, "sub")),
        (AGENT, AGENT, AGENT)
    );
    assert_eq!(s(&c, "appidacr"), "2");
    assert_eq!(s(&c, "app_displayname"), "My Blog Agent");
    assert_eq!(s(&c, "xms_par_app_azp"), BP);
    assert_eq!(
        (
            s(&c, "xms_act_fct"),
            s(&c, "xms_sub_fct"),
            s(&c, "xms_idrel"),
            s(&c, "xms_tnt_fct")
        ),
        ("3 11 9", "3 11 9", "7 8", "6 3")
    );
    assert_eq!(c["roles"], serde_json::json!(["Tools.Invoke"]));

    // Tc: the user's token for the blueprint API
    let tc = user_token(&sts).await;
    assert!(
        tc["refresh_token"].is_string()
            && tc["id_token"].is_string()
            && tc["client_info"].is_string(),
        "{tc}"
    );
    assert_eq!(
        tc["scope"],
        format!("api://{BP}/access_as_user openid profile offline_access")
    );
    let tcc = claims(tc["access_token"].as_str().unwrap());
    assert_eq!(s(&tcc, "aud"), format!("api://{BP}"));
    assert_eq!(s(&tcc, "idtyp"), "user");
    assert_eq!(s(&tcc, "scp"), "access_as_user");
    assert_eq!(s(&tcc, "upn"), "alice@contoso.test");
    assert_eq!(
        tcc["wids"],
        serde_json::json!(["62e90394-69f5-4237-9190-012177145e10"])
    );
    assert_eq!(tcc["amr"], serde_json::json!(["pwd"]));
    let id = claims(tc["id_token"].as_str().unwrap());
    assert_eq!(s(&id, "aud"), GRAPH_CLI);
    assert_eq!(s(&id, "sub"), s(&tcc, "sub"));
    assert_eq!(s(&id, "sub").len(), 43);

    // Agent OBO for Graph
    let (st, obo) = sts
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", AGENT),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", tc["access_token"].as_str().unwrap()),
            (
                "scope",
                "https://graph.microsoft.com/.default offline_access openid profile",
            ),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{obo}");
    let c = claims(obo["access_token"].as_str().unwrap());
    assert_eq!(s(&c, "aud"), "https://graph.microsoft.com");
    assert_eq!(s(&c, "idtyp"), "user");
    assert_eq!(s(&c, "appid"), AGENT);
    assert_eq!(s(&c, "oid"), ALICE);
    assert_ne!(
        s(&c, "sub"),
        s(&tcc, "sub"),
        "pairwise sub differs per client"
    );
    assert_eq!(s(&c, "scp"), "User.Read openid profile");
    assert_eq!(s(&c, "xms_par_app_azp"), BP);
    assert_eq!(
        (
            s(&c, "xms_act_fct"),
            s(&c, "xms_sub_fct"),
            s(&c, "xms_idrel"),
            s(&c, "xms_tnt_fct")
        ),
        ("11 9 3", "2 3", "1 8", "3 8")
    );
    assert_eq!(s(&c, "name"), "Alice Example");
    let rt = obo["refresh_token"]
        .as_str()
        .expect("offline_access honoured")
        .to_string();

    // Refresh (rotation) for the MCP resource: consent re-evaluated per resource
    let (st, r1) = sts
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", AGENT),
            ("refresh_token", &rt),
            ("scope", &format!("api://{MCP}/access_as_user openid")),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{r1}");
    let c = claims(r1["access_token"].as_str().unwrap());
    assert_eq!(s(&c, "aud"), format!("api://{MCP}"));
    assert_eq!(s(&c, "scp"), "access_as_user");
    assert_ne!(r1["refresh_token"], obo["refresh_token"]);
    sts.stop().await;
});

both_backends!(discovery_documents_and_jwks, |db: Db| async move {
    let sts = TestSts::start(db, DEMO).await;
    let base = sts.base().to_string();
    let tid = sts.tenant_id.clone();
    for seg in [
        tid.as_str(),
        "contoso.test",
        "CONTOSO.TEST",
        &tid.to_uppercase(),
    ] {
        let (st, d) = sts
            .get_json(&format!(
                "{base}/{seg}/v2.0/.well-known/openid-configuration"
            ))
            .await;
        assert_eq!(st, 200);
        assert_eq!(d["issuer"], format!("{base}/{tid}/v2.0"));
        assert_eq!(
            d["token_endpoint"],
            format!("{base}/{tid}/oauth2/v2.0/token")
        );
    }
    let (_, v1) = sts
        .get_json(&format!("{base}/{tid}/.well-known/openid-configuration"))
        .await;
    assert_eq!(v1["issuer"], format!("{base}/{tid}/"));
    assert_eq!(v1["microsoft_multi_refresh_token"], true);
    let (_, jwks) = sts
        .get_json(&format!("{base}/{tid}/discovery/v2.0/keys"))
        .await;
    let (_, jwks1) = sts.get_json(&format!("{base}/{tid}/discovery/keys")).await;
    assert_eq!(jwks, jwks1);
    let k = &jwks["keys"][0];
    assert_eq!(
        (k["kty"].as_str(), k["alg"].as_str(), k["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert_eq!(k["kid"], k["x5t"]);
    assert!(k.get("issuer").is_none());
    let (st, err) = sts
        .get_json(&format!(
            "{base}/common/v2.0/.well-known/openid-configuration"
        ))
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error_codes"][0], 90002);
    let (st, inst) = sts.get_json(&format!("{base}/common/discovery/instance?api-version=1.1&authorization_endpoint={base}/{tid}/oauth2/v2.0/authorize")).await;
    assert_eq!(st, 200, "{inst}");
    assert_eq!(
        inst["tenant_discovery_endpoint"],
        format!("{base}/{tid}/v2.0/.well-known/openid-configuration")
    );
    let (st, inst) = sts.get_json(&format!("{base}/common/discovery/instance?authorization_endpoint=https://login.microsoftonline.com/x/oauth2/v2.0/authorize")).await;
    assert_eq!(
        (st, inst["error"].as_str()),
        (400, Some("invalid_instance"))
    );
    sts.stop().await;
});

both_backends!(
    v2_resources_get_v2_tokens_and_userinfo_answers,
    |db: Db| async move {
        let yaml = DEMO.replace(
            "    appRoles: [Tools.Invoke]\n",
            "    appRoles: [Tools.Invoke]\n    accessTokenVersion: 2\n",
        );
        assert_ne!(yaml, DEMO);
        let sts = TestSts::start(db, &yaml).await;
        let tid = sts.tenant_id.clone();
        let t1 = t1(&sts).await;
        let (st, body) = sts
            .token(&[
                ("grant_type", CC),
                ("client_id", AGENT),
                ("scope", &format!("api://{MCP}/.default")),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &t1),
            ])
            .await;
        assert_eq!(st, 200, "{body}");
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!(
            (s(&c, "aud"), s(&c, "ver"), s(&c, "azp"), s(&c, "azpacr")),
            (MCP, "2.0", AGENT, "2")
        );
        assert_eq!(s(&c, "iss"), format!("{}/{tid}/v2.0", sts.base()));
        assert!(!c.contains_key("appid"));
        // A user token for a v2 resource: preferred_username, no v1 name claims or amr.
        let tc = user_token(&sts).await;
        let (st, obo) = sts
            .token(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("client_id", AGENT),
                ("requested_token_use", "on_behalf_of"),
                ("assertion", tc["access_token"].as_str().unwrap()),
                ("scope", &format!("api://{MCP}/access_as_user")),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &t1),
            ])
            .await;
        assert_eq!(st, 200, "{obo}");
        let c = claims(obo["access_token"].as_str().unwrap());
        assert_eq!(
            (s(&c, "preferred_username"), s(&c, "scp"), s(&c, "idtyp")),
            ("alice@contoso.test", "access_as_user", "user")
        );
        assert!(!c.contains_key("upn") && !c.contains_key("amr"));
        assert_eq!(obo["scope"], format!("api://{MCP}/access_as_user"));

        // userinfo: a Graph token with openid answers; one without openid, or for another API, does not.
        let (_, g) = sts
            .token(&[
                ("grant_type", "password"),
                ("client_id", GRAPH_CLI),
                ("username", "alice@contoso.test"),
                ("password", "correct-horse-battery"),
                ("scope", "User.Read openid profile"),
            ])
            .await;
        let graph_token = g["access_token"].as_str().unwrap();
        let resp = sts
            .http
            .get(format!("{}/oidc/userinfo", sts.base()))
            .bearer_auth(graph_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let info: Value = resp.json().await.unwrap();
        assert_eq!(info["sub"], claims(graph_token)["sub"]);
        assert_eq!(
            (
                info["name"].as_str(),
                info["email"].as_str(),
                info["given_name"].as_str()
            ),
            (
                Some("Alice Example"),
                Some("alice@contoso.test"),
                Some("Alice")
            )
        );
        let resp = sts
            .http
            .get(format!("{}/oidc/userinfo", sts.base()))
            .bearer_auth(tc["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        let resp = sts
            .http
            .get(format!("{}/oidc/userinfo", sts.base()))
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        sts.stop().await;
    }
);

both_backends!(es256_for_resources_that_opt_in, |db: Db| async move {
    let yaml = DEMO.replace(
        "    appRoles: [Tools.Invoke]\n",
        "    appRoles: [Tools.Invoke]\n    tokenSigningAlgorithm: ES256\n",
    );
    let sts = TestSts::start(db, &yaml).await;
    let (_, jwks) = sts
        .get_json(&format!("{}/discovery/v2.0/keys", sts.authority()))
        .await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kty"] == "RSA"),
        "no EC key before a resource needs one"
    );
    let t1 = t1(&sts).await;
    assert_eq!(header(&t1)["alg"], "RS256");
    let (st, body) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", AGENT),
            ("scope", &format!("api://{MCP}/.default")),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let h = header(token);
    assert_eq!(h["alg"], "ES256");
    // The EC key is now published, and the token verifies with it.
    let (_, jwks) = sts
        .get_json(&format!("{}/discovery/v2.0/keys", sts.authority()))
        .await;
    let set: agentid_claims::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let ec = set
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == h["kid"].as_str())
        .expect("the signing key is published");
    assert_eq!(
        (ec.kty.as_str(), ec.crv.as_deref(), ec.alg.as_deref()),
        ("EC", Some("P-256"), Some("ES256"))
    );
    let jwt = agentid_claims::UnverifiedJwt::parse(token).unwrap();
    use agentid_claims::verify::{Alg, VerificationKey, Verifier};
    let key = std::sync::Arc::new(VerificationKey::from_jwk(ec).unwrap());
    Verifier::new(&[Alg::ES256])
        .verify_signature(&jwt, Alg::ES256, None, &[key])
        .expect("valid ES256 signature");
    // Everything else stays RS256.
    let (_, g) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(header(g["access_token"].as_str().unwrap())["alg"], "RS256");
    // Each algorithm rotates on its own schedule.
    let s = &sts.running.state.settings;
    let later = chrono::Utc::now().timestamp() + s.key_rotation_interval;
    sts.running
        .state
        .keys
        .rotate_if_due(
            &sts.tenant_id.parse().unwrap(),
            later,
            s.key_rotation_interval,
            s.key_prepublish,
            s.clock_skew,
        )
        .await
        .unwrap();
    let rows = sts
        .running
        .state
        .store
        .signing_keys(Some(&sts.tenant_id))
        .await
        .unwrap();
    for alg in ["RS256", "ES256"] {
        assert!(
            rows.iter().any(|k| k.alg == alg && k.publish_at == later),
            "next {alg} key scheduled"
        );
    }
    sts.stop().await;
});
