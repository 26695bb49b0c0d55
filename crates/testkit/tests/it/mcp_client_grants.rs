//! A client identified by a client ID metadata document (docs/sts.md §16.4) is bound only by its
//! redirect URIs, so it may use the authorization code and refresh-token grants and nothing
//! else: the device authorization endpoint and every other grant refuse it with
//! `unauthorized_client` even when its application exists, on both storage backends.

use agentid_directory::applications::{RedirectPlatform, RedirectUri};
use agentid_testkit::demo::DEMO_TENANT;
use agentid_testkit::{Db, TestSts, both_backends};

const URL: &str = "https://mcp.example.com/client.json";

both_backends!(
    a_document_client_gets_only_code_and_refresh,
    |db: Db| async move {
        let sts = TestSts::start(db, DEMO_TENANT).await;
        let store = sts.running.state.store.clone();
        let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
        let uris =
            [RedirectUri::parse("http://127.0.0.1/cb", RedirectPlatform::PublicClient).unwrap()];
        store
            .ensure_metadata_document_client(&tid, URL, "c (unverified, mcp.example.com)", &uris, 1)
            .await
            .unwrap();

        let devicecode = format!("{}/oauth2/v2.0/devicecode", sts.authority());
        let (status, body) = sts
            .post_form(
                &devicecode,
                &[("client_id", URL), ("scope", "openid profile")],
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "unauthorized_client", "{body}");
        assert_eq!(body["error_codes"][0], 82002, "{body}");

        let refused = [
            vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", "x"),
            ],
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
            vec![
                ("grant_type", "password"),
                ("username", "alice@contoso.test"),
                ("password", "x"),
                ("scope", "openid"),
            ],
            vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "x"),
                ("requested_token_use", "on_behalf_of"),
                ("scope", "openid"),
            ],
        ];
        for mut form in refused {
            form.push(("client_id", URL));
            let (status, body) = sts.token(&form).await;
            assert_eq!(
                (status, &body["error"]),
                (400, &serde_json::json!("unauthorized_client")),
                "{form:?}: {body}"
            );
            assert_eq!(body["error_codes"][0], 82002, "{form:?}: {body}");
        }
        // The grants it has are still reached (and fail for their own reasons here).
        for form in [
            vec![
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("redirect_uri", "http://127.0.0.1/cb"),
                ("code_verifier", "x"),
            ],
            vec![("grant_type", "refresh_token"), ("refresh_token", "x")],
        ] {
            let mut form = form;
            form.push(("client_id", URL));
            let (status, body) = sts.token(&form).await;
            assert_eq!(
                (status, &body["error"]),
                (400, &serde_json::json!("invalid_grant")),
                "{form:?}: {body}"
            );
        }
        sts.stop().await;
    }
);
