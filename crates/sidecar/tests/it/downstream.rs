//! `/DownstreamApi*` (docs/sidecar.md §10, §16.C, D5, I): the outbound request, the response
//! mapping, confinement under BaseUrl, reserved headers, redirects, timeouts and the claims
//! challenge, against a mock API with tokens from the real STS.

use crate::support::downstream::MockApi;
use crate::support::*;
use base64::Engine;
use reqwest::Method;

async fn setup(
    api: &MockApi,
    changes: &[(&str, Option<&str>)],
) -> (agentid_testkit::TestSts, TestSidecar) {
    let sts = start_sts().await;
    let mut all = vec![
        ("DownstreamApis__api__BaseUrl", Some(api.url.clone())),
        (
            "DownstreamApis__api__Scopes__0",
            Some(GRAPH_DEFAULT.to_string()),
        ),
        ("DownstreamApis__api__RelativePath", Some("ok".to_string())),
        ("DownstreamApis__app__BaseUrl", Some(api.url.clone())),
        (
            "DownstreamApis__app__Scopes__0",
            Some(GRAPH_DEFAULT.to_string()),
        ),
        (
            "DownstreamApis__app__RequestAppToken",
            Some("true".to_string()),
        ),
        (
            "Sidecar__AllowedAgentIdentities__0",
            Some(AGENT.to_string()),
        ),
        ("Sidecar__DownstreamTimeoutSeconds", Some("1".to_string())),
    ];
    all.extend(changes.iter().map(|(k, v)| (*k, v.map(str::to_string))));
    let refs: Vec<(&str, Option<&str>)> = all.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    let sc = TestSidecar::direct(&sts, &refs).await;
    (sts, sc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_mapping() {
    let api = MockApi::start().await;
    let (sts, sc) = setup(&api, &[]).await;
    let tc = alice_tc(&sts).await;
    // C1
    assert_eq!(
        sc.send(Method::POST, "/DownstreamApi/api", None, &[], None)
            .await
            .status,
        401
    );
    // C4
    let r = sc
        .send(Method::POST, "/DownstreamApi/api", Some(&tc), &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["statusCode"], 200);
    assert_eq!(
        b["headers"]["Content-Type"],
        serde_json::json!(["application/json; charset=utf-8"])
    );
    assert_eq!(b["headers"]["Content-Length"], serde_json::json!(["11"]));
    assert_eq!(b["content"], r#"{"ok":true}"#);
    assert!(b["headers"].get("Date").is_none(), "only content headers");
    assert!(b["headers"].get("Request-Id").is_none());
    // The downstream got the sidecar's token for the same API (plain OBO as the blueprint).
    let got = api.received();
    let auth = got[0].headers["authorization"].to_str().unwrap();
    let c = agentid_testkit::claims(auth.strip_prefix("Bearer ").unwrap());
    assert_eq!(
        (claim(&c, "appid"), claim(&c, "upn")),
        (BP, "alice@contoso.test")
    );
    assert_eq!(
        got[0].method, "GET",
        "the configured verb, whatever the inbound one"
    );
    assert_eq!(got[0].headers["accept"], "application/json");
    assert!(got[0].headers.get("accept-encoding").is_none());
    // C5: 204, chunked, 500.
    for (rel, status, content) in [
        ("empty", 204, serde_json::Value::Null),
        ("chunked", 200, serde_json::json!("chunk-1 chunk-2")),
        ("fail", 500, serde_json::json!("boom")),
    ] {
        let r = sc
            .send(
                Method::POST,
                &format!("/DownstreamApi/api?optionsOverride.RelativePath={rel}"),
                Some(&tc),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{rel}: {}", r.text());
        assert_eq!(r.json()["statusCode"], status, "{rel}");
        assert_eq!(r.json()["content"], content, "{rel}");
    }
    // Sidecar__DownstreamResponseHeaders adds named headers, in Title-Case.
    let extra = TestSidecar::direct(
        &sts,
        &[
            (
                "DownstreamApis__api__BaseUrl",
                Some(&format!("{}/ok", api.url)),
            ),
            ("DownstreamApis__api__Scopes__0", Some(GRAPH_DEFAULT)),
            ("Sidecar__DownstreamResponseHeaders__0", Some("request-id")),
        ],
    )
    .await;
    let r = extra
        .send(Method::GET, "/DownstreamApi/api", Some(&tc), &[], None)
        .await;
    assert_eq!(
        r.json()["headers"]["Request-Id"],
        serde_json::json!(["req-123"])
    );
    // D5: unauthenticated, 202 with a payload, autonomous agent.
    let r = sc
        .send(
            Method::POST,
            &format!("/DownstreamApiUnauthenticated/app?AgentIdentity={AGENT}"),
            None,
            &[],
            None,
        )
        .await;
    // Overrides are off there by default; RelativePath comes from nowhere, so BaseUrl itself.
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["statusCode"], 404);
    let sc2 = TestSidecar::direct(
        &sts,
        &[
            ("DownstreamApis__app__BaseUrl", Some(&api.url)),
            ("DownstreamApis__app__RelativePath", Some("/accepted")),
            ("DownstreamApis__app__Scopes__0", Some(GRAPH_DEFAULT)),
            ("DownstreamApis__app__RequestAppToken", Some("true")),
            ("Sidecar__AllowedAgentIdentities__0", Some(AGENT)),
        ],
    )
    .await;
    let r = sc2
        .send(
            Method::POST,
            &format!("/DownstreamApiUnauthenticated/app?AgentIdentity={AGENT}"),
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(r.json()["statusCode"], 202);
    assert_eq!(r.json()["content"], r#"{"queued":1}"#);
    let auth = api.received().last().unwrap().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let c = agentid_testkit::claims(auth.strip_prefix("Bearer ").unwrap());
    assert_eq!((claim(&c, "appid"), claim(&c, "idtyp")), (AGENT, "app"));
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_verbs_headers_and_query() {
    let api = MockApi::start().await;
    let (sts, sc) = setup(&api, &[("DownstreamApis__api__RelativePath", Some("echo"))]).await;
    let tc = alice_tc(&sts).await;
    // C6: bytes and Content-Type pass through unchanged.
    let body = br#"{"a": [1, 2, "\u00e9"]}"#.to_vec();
    let r = sc
        .send(
            Method::POST,
            "/DownstreamApi/api?optionsOverride.HttpMethod=POST",
            Some(&tc),
            &[],
            Some((body.clone(), Some("application/json"))),
        )
        .await;
    let echo: serde_json::Value =
        serde_json::from_str(r.json()["content"].as_str().unwrap()).unwrap();
    assert_eq!(echo["content_type"], "application/json");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(echo["body_b64"].as_str().unwrap())
            .unwrap(),
        body
    );
    // A body without Content-Type is sent with the effective ContentType.
    let r = sc
        .send(Method::PUT, "/DownstreamApi/api?optionsOverride.HttpMethod=PUT&optionsOverride.ContentType=text/plain", Some(&tc), &[], Some((b"hi".to_vec(), None)))
        .await;
    let echo: serde_json::Value =
        serde_json::from_str(r.json()["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        (echo["method"].as_str(), echo["content_type"].as_str()),
        (Some("PUT"), Some("text/plain"))
    );
    // C7: every inbound verb works; the outbound verb is the configured one.
    let sc_patch = TestSidecar::direct(
        &sts,
        &[
            ("DownstreamApis__api__BaseUrl", Some(&api.url)),
            ("DownstreamApis__api__Scopes__0", Some(GRAPH_DEFAULT)),
            ("DownstreamApis__api__RelativePath", Some("echo")),
            ("DownstreamApis__api__HttpMethod", Some("patch")),
        ],
    )
    .await;
    for m in [
        Method::GET,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::POST,
    ] {
        let r = sc_patch
            .send(m.clone(), "/DownstreamApi/api", Some(&tc), &[], None)
            .await;
        assert_eq!(r.status, 200, "{m}");
        let echo: serde_json::Value =
            serde_json::from_str(r.json()["content"].as_str().unwrap()).unwrap();
        assert_eq!(echo["method"], "PATCH", "{m}");
    }
    // C12: extra header and query; Authorization cannot be overridden.
    let id = cid();
    let r = sc
        .send(
            Method::GET,
            "/DownstreamApi/api?optionsOverride.ExtraHeaderParameters.X-Custom=1&optionsOverride.ExtraQueryParameters.a=b&optionsOverride.ExtraHeaderParameters.Authorization=evil",
            Some(&tc),
            &[("client-request-id", &id)],
            None,
        )
        .await;
    let echo: serde_json::Value =
        serde_json::from_str(r.json()["content"].as_str().unwrap()).unwrap();
    assert_eq!(echo["x_custom"], "1");
    assert_eq!(echo["query"], "a=b");
    assert!(
        echo["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer eyJ")
    );
    assert!(logs::has_event(&id, "reserved_header_ignored"));
    // 413: larger than Sidecar__MaxRequestBodyBytes.
    let small = TestSidecar::direct(
        &sts,
        &[
            ("DownstreamApis__api__BaseUrl", Some(&api.url)),
            ("DownstreamApis__api__Scopes__0", Some(GRAPH_DEFAULT)),
            ("Sidecar__MaxRequestBodyBytes", Some("10")),
        ],
    )
    .await;
    let r = small
        .send(
            Method::POST,
            "/DownstreamApi/api",
            Some(&tc),
            &[],
            Some((vec![b'x'; 11], Some("text/plain"))),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["title"], "Content Too Large");
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confinement_base_url_and_method_checks() {
    let api = MockApi::start().await;
    let evil = MockApi::start().await;
    let (sts, sc) = setup(&api, &[("DownstreamApis__nested__BaseUrl", None)]).await;
    let sc_nested = TestSidecar::direct(
        &sts,
        &[
            (
                "DownstreamApis__nested__BaseUrl",
                Some(&format!("{}/v1.0/", api.url)),
            ),
            ("DownstreamApis__nested__Scopes__0", Some(GRAPH_DEFAULT)),
        ],
    )
    .await;
    let tc = alice_tc(&sts).await;
    // C13
    for rel in ["../../admin", "..%2F..%2Fadmin", "%2e%2e/admin"] {
        let r = sc_nested
            .send(
                Method::GET,
                &format!("/DownstreamApi/nested?optionsOverride.RelativePath={rel}"),
                Some(&tc),
                &[],
                None,
            )
            .await;
        r.assert_problem(
            400,
            "optionsOverride.RelativePath must stay under the configured BaseUrl.",
        );
    }
    assert!(api.received().is_empty());
    // E2: BaseUrl overrides never take effect.
    let id = cid();
    let r = sc
        .send(
            Method::GET,
            &format!(
                "/DownstreamApi/api?optionsOverride.BaseUrl={}",
                enc(&evil.url)
            ),
            Some(&tc),
            &[("client-request-id", &id)],
            None,
        )
        .await;
    assert_eq!(r.json()["statusCode"], 200);
    assert!(evil.received().is_empty());
    assert!(logs::has_event(&id, "base_url_override_ignored"));
    assert!(!logs::has_event(&id, "overrides_ignored"));
    // No BaseUrl; a bad method.
    let r = sc
        .send(Method::GET, "/DownstreamApi/graph", Some(&tc), &[], None)
        .await;
    r.assert_problem(400, "No BaseUrl configured for the API 'graph'.");
    let r = sc
        .send(
            Method::GET,
            "/DownstreamApi/api?optionsOverride.HttpMethod=GE%20T",
            Some(&tc),
            &[],
            None,
        )
        .await;
    r.assert_problem(400, "Invalid HttpMethod 'GE T'.");
    // C2: no scopes, with and without an empty override.
    for q in ["", "?optionsOverride.Scopes="] {
        let r = sc
            .send(
                Method::GET,
                &format!("/DownstreamApi/unknown{q}"),
                Some(&tc),
                &[],
                None,
            )
            .await;
        r.assert_problem(
            400,
            "No scopes found for the API 'unknown' or in optionsOverride. 'scopes' needs to be either a single value or a list of values.",
        );
    }
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_slow_large_redirects_and_claims_challenge() {
    let api = MockApi::start().await;
    let other = MockApi::start().await;
    api.redirect_to(&other.url);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (sts, sc) = setup(
        &api,
        &[
            ("DownstreamApis__dead__BaseUrl", Some(&dead)),
            ("DownstreamApis__dead__Scopes__0", Some(GRAPH_DEFAULT)),
            ("Sidecar__MaxResponseBodyBytes", Some("1048576")),
        ],
    )
    .await;
    let tc = alice_tc(&sts).await;
    // C14
    let r = sc
        .send(Method::GET, "/DownstreamApi/dead", Some(&tc), &[], None)
        .await;
    r.assert_problem(
        502,
        "The downstream API 'dead' could not be reached: connection failed.",
    );
    let r = sc
        .send(
            Method::GET,
            "/DownstreamApi/api?optionsOverride.RelativePath=slow",
            Some(&tc),
            &[],
            None,
        )
        .await;
    r.assert_problem(504, "The downstream API 'api' did not respond within 1 s.");
    let r = sc
        .send(
            Method::GET,
            "/DownstreamApi/api?optionsOverride.RelativePath=big",
            Some(&tc),
            &[],
            None,
        )
        .await;
    r.assert_problem(502, "The downstream response exceeded 1048576 bytes.");
    // I1: a 302 is returned, not followed.
    let r = sc
        .send(
            Method::GET,
            "/DownstreamApi/api?optionsOverride.RelativePath=redirect",
            Some(&tc),
            &[],
            None,
        )
        .await;
    assert_eq!(r.json()["statusCode"], 302);
    assert!(other.received().is_empty());
    // I2: followed when allowed, without Authorization across origins.
    let follow = TestSidecar::direct(
        &sts,
        &[
            ("DownstreamApis__api__BaseUrl", Some(&api.url)),
            ("DownstreamApis__api__Scopes__0", Some(GRAPH_DEFAULT)),
            ("DownstreamApis__api__RelativePath", Some("redirect")),
            ("Sidecar__AllowOutboundRedirects", Some("true")),
        ],
    )
    .await;
    let r = follow
        .send(Method::GET, "/DownstreamApi/api", Some(&tc), &[], None)
        .await;
    assert_eq!(r.json()["statusCode"], 200);
    let hop = other.received();
    assert_eq!(hop.len(), 1);
    assert!(hop[0].headers.get("authorization").is_none());
    // C15: one re-acquisition with the challenge's claims, then the final answer.
    let relay = Relay::for_sts(&sts).await;
    let sc_r = TestSidecar::relayed(
        &sts,
        &relay,
        &[
            ("DownstreamApis__api__BaseUrl", Some(&api.url)),
            ("DownstreamApis__api__Scopes__0", Some(GRAPH_DEFAULT)),
            ("DownstreamApis__api__RelativePath", Some("challenge")),
        ],
    )
    .await;
    let r = sc_r
        .send(Method::GET, "/DownstreamApi/api", Some(&tc), &[], None)
        .await;
    assert_eq!(r.json()["statusCode"], 200, "{}", r.text());
    assert_eq!(r.json()["content"], r#"{"stepped_up":true}"#);
    let calls = relay.token_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].param("claims"), None);
    assert_eq!(
        calls[1].param("claims").as_deref(),
        Some(crate::support::downstream::CHALLENGE_CLAIMS)
    );
    logs::assert_no_secrets(&[crate::support::downstream::CHALLENGE_CLAIMS, &tc]);
    sts.stop().await;
}
