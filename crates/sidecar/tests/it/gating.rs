//! Routes, overrides and agent parameters (docs/sidecar.md §2–§6, §16.B2/B7, D, E, F, G): what each
//! route accepts, which overrides are honoured where, the documented 400s, the allow-list, and
//! that nothing one request sets leaks into another.

use crate::support::relay::leg;
use crate::support::*;
use reqwest::Method;

const NO_ACCOUNT: &str = "No account or login hint was passed to the AcquireTokenSilent call. The request needs a user: send a bearer token, pass AgentUsername or AgentUserId, or request an app token.";

fn no_scopes(api: &str) -> String {
    format!(
        "No scopes found for the API '{api}' or in optionsOverride. 'scopes' needs to be either a single value or a list of values."
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_methods_and_unknown_apis() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let tc = alice_tc(&sts).await;
    // B2 / D4
    sc.get_as("/AuthorizationHeader/test-api", &tc)
        .await
        .assert_problem(400, &no_scopes("test-api"));
    sc.get("/AuthorizationHeaderUnauthenticated/test-api")
        .await
        .assert_problem(400, &no_scopes("test-api"));
    // …but override scopes work for an unconfigured name where overrides are allowed.
    let r = sc
        .get_as(
            &format!(
                "/AuthorizationHeader/test-api?optionsOverride.Scopes={}",
                enc(GRAPH_DEFAULT)
            ),
            &tc,
        )
        .await;
    assert_eq!(claim(&r.claims(), "aud"), "https://graph.microsoft.com");
    // B7
    let r = sc
        .send(
            Method::POST,
            "/AuthorizationHeader/test",
            Some(&tc),
            &[],
            None,
        )
        .await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    assert!(r.body.is_empty());
    let r = sc
        .send(Method::HEAD, "/DownstreamApi/x", Some(&tc), &[], None)
        .await;
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, POST, PUT, PATCH, DELETE"))
    );
    let r = sc.get("/nope").await;
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache, no-store, must-revalidate"),
        "every response"
    );
    let r = sc.get_as("/authorizationheader/GRAPH", &tc).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // /healthz, HEAD included; /openapi only when enabled.
    let r = sc.get("/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Healthy"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        sc.send(Method::HEAD, "/HEALTHZ", None, &[], None)
            .await
            .status,
        200
    );
    assert_eq!(sc.get("/openapi/v1.json").await.status, 404);
    let with_doc = TestSidecar::direct(&sts, &[("Sidecar__EnableOpenApi", Some("true"))]).await;
    let doc = with_doc.get("/openapi/v1.json").await.json();
    assert_eq!(doc["info"]["title"], "Microsoft.Identity.Web.Sidecar | v1");
    assert!(doc["paths"]["/DownstreamApi/{apiName}"]["patch"].is_object());
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_routes() {
    let sts = start_sts().await;
    let relay = Relay::for_sts(&sts).await;
    let sc = TestSidecar::relayed(&sts, &relay, &[]).await;
    // D1, D2: app token; an invalid bearer is treated as anonymous.
    let app = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(claim(&app.claims(), "appid"), BP);
    assert_eq!(
        sc.get_as("/AuthorizationHeaderUnauthenticated/graph-app", "garbage")
            .await
            .status,
        200
    );
    // D3: a delegated API without a user.
    sc.get("/AuthorizationHeaderUnauthenticated/graph")
        .await
        .assert_problem(401, NO_ACCOUNT);
    // …a valid bearer is used as the user there (OBO).
    let tc = alice_tc(&sts).await;
    let r = sc
        .get_as("/AuthorizationHeaderUnauthenticated/graph", &tc)
        .await;
    assert_eq!(claim(&r.claims(), "upn"), "alice@contoso.test");
    // D6 (issue #3643): RequestAppToken=true is honoured with the default gate.
    relay.clear();
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph?optionsOverride.RequestAppToken=true")
        .await;
    assert_eq!(claim(&r.claims(), "idtyp"), "app");
    assert_eq!(
        r.token(),
        app.token(),
        "the blueprint app token for the configured scopes"
    );
    assert!(relay.token_calls().iter().all(|c| leg(c) == "app"));
    // D7: other overrides are ignored there (configured scopes), with the warning.
    relay.clear();
    let id = cid();
    let r = sc
        .send(Method::GET, &format!("/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.Scopes={}&optionsOverride.AcquireTokenOptions.ForceRefresh=true", enc("api://x/.default")), None, &[("client-request-id", &id)], None)
        .await;
    assert_eq!(claim(&r.claims(), "aud"), "https://graph.microsoft.com");
    assert!(
        relay.token_calls().is_empty(),
        "ForceRefresh was ignored too: a cache hit"
    );
    assert!(logs::has_event(&id, "overrides_ignored"));
    // E3: configured RequestAppToken=true cannot be switched off by an override.
    let r = sc
        .get_as(
            "/AuthorizationHeader/graph-app?optionsOverride.RequestAppToken=false",
            &tc,
        )
        .await;
    assert_eq!(claim(&r.claims(), "idtyp"), "app");
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_gate_per_route_and_flipped() {
    // E1: a Scopes override on each route with default flags: honoured, ignored, honoured, ignored.
    let api = crate::support::downstream::MockApi::start().await;
    let sts = start_sts().await;
    let mcp = format!("api://{MCP}/.default");
    let common = |flip: bool| {
        let f = |default: bool| Some(if flip != default { "true" } else { "false" });
        vec![
            ("DownstreamApis__app__BaseUrl", Some(api.url.clone())),
            (
                "DownstreamApis__app__RelativePath",
                Some("echo".to_string()),
            ),
            (
                "DownstreamApis__app__Scopes__0",
                Some(GRAPH_DEFAULT.to_string()),
            ),
            (
                "DownstreamApis__app__RequestAppToken",
                Some("true".to_string()),
            ),
            (
                "Sidecar__AllowOverrides__GetAuthorizationHeader",
                f(true).map(str::to_string),
            ),
            (
                "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated",
                f(false).map(str::to_string),
            ),
            (
                "Sidecar__AllowOverrides__CallDownstreamApi",
                f(true).map(str::to_string),
            ),
            (
                "Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated",
                f(false).map(str::to_string),
            ),
        ]
    };
    let tc = alice_tc(&sts).await;
    for flip in [false, true] {
        let env = common(flip);
        let refs: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        let sc = TestSidecar::direct(&sts, &refs).await;
        let q = format!("?optionsOverride.Scopes={}", enc(&mcp));
        let aud = |token: &str| claim(&agentid_testkit::claims(token), "aud").to_string();
        let header = aud(&sc
            .get_as(&format!("/AuthorizationHeader/app{q}"), &tc)
            .await
            .token());
        let unauth = aud(&sc
            .get(&format!("/AuthorizationHeaderUnauthenticated/app{q}"))
            .await
            .token());
        let mut downstream = vec![];
        for path in ["/DownstreamApi/app", "/DownstreamApiUnauthenticated/app"] {
            let r = sc
                .send(Method::GET, &format!("{path}{q}"), Some(&tc), &[], None)
                .await;
            let echo: serde_json::Value =
                serde_json::from_str(r.json()["content"].as_str().unwrap()).unwrap();
            downstream.push(aud(echo["authorization"]
                .as_str()
                .unwrap()
                .strip_prefix("Bearer ")
                .unwrap()));
        }
        let honoured = format!("api://{MCP}");
        let ignored = "https://graph.microsoft.com".to_string();
        let expect = if flip {
            [&ignored, &honoured, &ignored, &honoured]
        } else {
            [&honoured, &ignored, &honoured, &ignored]
        };
        assert_eq!(
            [&header, &unauth, &downstream[0], &downstream[1]],
            expect,
            "flipped: {flip}"
        );
    }
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_checks() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let tc = alice_tc(&sts).await;
    // E6
    sc.get_as(
        "/AuthorizationHeader/graph?optionsOverride.AcquireTokenOptions.PopPublicKey=x",
        &tc,
    )
    .await
    .assert_problem(
        400,
        "Proof-of-possession (PoP) tokens are not supported by agentid-sidecar.",
    );
    sc.get_as(
        "/AuthorizationHeader/graph?optionsOverride.AcquireTokenOptions.Tenant=a%2Fb",
        &tc,
    )
    .await
    .assert_problem(400, "Invalid tenant override.");
    // E5: mixed-case prefix, last value wins, unknown keys and bad values ignored.
    let r = sc
        .get_as(
            &format!(
                "/AuthorizationHeader/graph?OPTIONSOVERRIDE.scopes={}&optionsOverride.RequestAppToken=yes&optionsOverride.Tenant=evil&optionsOverride.CustomHeader.X=1&optionsOverride.AcquireTokenOptions.CorrelationId=nope",
                enc(GRAPH_DEFAULT)
            ),
            &tc,
        )
        .await;
    assert_eq!(
        claim(&r.claims(), "idtyp"),
        "user",
        "RequestAppToken=yes is not a boolean"
    );
    let r = sc
        .get_as(
            &format!(
                "/AuthorizationHeader/graph?optionsOverride.Scopes={}",
                enc(&format!("{GRAPH_DEFAULT} api://{MCP}/.default"))
            ),
            &tc,
        )
        .await;
    // Two scopes of two resources: the STS refuses, which proves both were sent.
    assert_eq!(r.status, 401);
    assert!(r.detail().contains("AADSTS70011"), "{}", r.detail());
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_parameter_validation_and_authorization() {
    let sts = start_sts().await;
    let relay = Relay::for_sts(&sts).await;
    let sc = TestSidecar::relayed(&sts, &relay, &[]).await;
    let tc = alice_tc(&sts).await;
    // F1–F5, in the documented order.
    for (q, msg) in [
        (
            "AgentUsername=u%40x",
            "AgentUsername requires AgentIdentity to be specified",
        ),
        (
            &format!("AgentUserId={AGENT}")[..],
            "AgentUserId requires AgentIdentity to be specified",
        ),
        (
            "AgentIdentity=bad&AgentUsername=u&AgentUserId=x",
            "AgentUsername and AgentUserId are mutually exclusive",
        ),
        (
            &format!("AgentIdentity={AGENT}&AgentUserId=u%40x")[..],
            "AgentUserId must be a valid GUID",
        ),
        (
            "AgentIdentity=not-a-guid",
            "AgentIdentity must be a valid GUID",
        ),
    ] {
        sc.get_as(&format!("/AuthorizationHeader/graph?{q}"), &tc)
            .await
            .assert_problem(400, msg);
    }
    // Row 4: an agent without a user and without RequestAppToken.
    sc.get_as(
        &format!("/AuthorizationHeader/graph-app?AgentIdentity={AGENT}&AgentIdentity="),
        &tc,
    )
    .await
    .token();
    // F6: no allow-list, default flags, agent on an unauthenticated route: 403, no authority call.
    relay.clear();
    let id = cid();
    let r = sc
        .send(
            Method::GET,
            &format!("/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"),
            None,
            &[("client-request-id", &id)],
            None,
        )
        .await;
    r.assert_problem(403, "Agent identity parameters are not accepted on this route. Set Sidecar__AllowedAgentIdentities__0 (recommended) or Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated=true.");
    assert!(relay.token_calls().is_empty());
    assert!(logs::has_event(&id, "agent_parameters_rejected"));
    // F7: the flag set.
    let open = TestSidecar::relayed(
        &sts,
        &relay,
        &[(
            "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated",
            Some("true"),
        )],
    )
    .await;
    let r = open
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
        ))
        .await;
    assert_eq!(claim(&r.claims(), "appid"), AGENT);
    // …and the authenticated route with its flag off.
    let closed = TestSidecar::relayed(
        &sts,
        &relay,
        &[(
            "Sidecar__AllowOverrides__GetAuthorizationHeader",
            Some("false"),
        )],
    )
    .await;
    closed
        .get_as(&format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}"), &tc)
        .await
        .assert_problem(403, "Agent identity parameters are not accepted on this route. Set Sidecar__AllowedAgentIdentities__0 (recommended) or Sidecar__AllowOverrides__GetAuthorizationHeader=true.");
    // F8: allow-list [A] with every flag false: A honoured on all four routes, B refused.
    let api = crate::support::downstream::MockApi::start().await;
    let listed = TestSidecar::relayed(
        &sts,
        &relay,
        &[
            ("Sidecar__AllowedAgentIdentities__0", Some(AGENT)),
            (
                "Sidecar__AllowOverrides__GetAuthorizationHeader",
                Some("false"),
            ),
            ("Sidecar__AllowOverrides__CallDownstreamApi", Some("false")),
            ("DownstreamApis__graph-app__BaseUrl", Some(&api.url)),
        ],
    )
    .await;
    for route in [
        "AuthorizationHeader",
        "AuthorizationHeaderUnauthenticated",
        "DownstreamApi",
        "DownstreamApiUnauthenticated",
    ] {
        let method = if route.starts_with("Downstream") {
            Method::POST
        } else {
            Method::GET
        };
        let r = listed
            .send(
                method.clone(),
                &format!("/{route}/graph-app?AgentIdentity={}", AGENT.to_uppercase()),
                Some(&tc),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{route}: {}", r.text());
        let r = listed
            .send(
                method,
                &format!("/{route}/graph-app?AgentIdentity={AGENT_B}"),
                Some(&tc),
                &[],
                None,
            )
            .await;
        r.assert_problem(
            403,
            &format!("Agent identity '{AGENT_B}' is not in Sidecar:AllowedAgentIdentities."),
        );
    }
    // F9: an FmiPath override for an unlisted agent (the T1-for-any-agent path).
    let fmi = TestSidecar::relayed(
        &sts,
        &relay,
        &[("Sidecar__AllowedAgentIdentities__0", Some(AGENT))],
    )
    .await;
    relay.clear();
    fmi.get_as(
        &format!("/AuthorizationHeader/graph?optionsOverride.RequestAppToken=true&optionsOverride.Scopes={}&optionsOverride.AcquireTokenOptions.FmiPath={AGENT_B}", enc("api://AzureADTokenExchange/.default")),
        &tc,
    )
    .await
    .assert_problem(403, &format!("FmiPath '{AGENT_B}' is not in Sidecar:AllowedAgentIdentities."));
    assert!(relay.token_calls().is_empty());
    // A listed FmiPath goes through as fmi_path on the app request.
    let r = fmi
        .get_as(
            &format!("/AuthorizationHeader/graph?optionsOverride.RequestAppToken=true&optionsOverride.Scopes={}&optionsOverride.AcquireTokenOptions.FmiPath={AGENT}", enc("api://AzureADTokenExchange/.default")),
            &tc,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        relay.token_calls()[0].param("fmi_path").as_deref(),
        Some(AGENT)
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_leaks_between_requests() {
    let sts = start_sts().await;
    let relay = Relay::for_sts(&sts).await;
    let sc = TestSidecar::relayed(
        &sts,
        &relay,
        &[
            ("Sidecar__AllowedAgentIdentities__0", Some(AGENT)),
            ("Sidecar__AllowedAgentIdentities__1", Some(AGENT_B)),
            (
                "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated",
                Some("true"),
            ),
            (
                "DownstreamApis__graph-app__ExtraHeaderParameters__X-Config",
                Some("1"),
            ),
        ],
    )
    .await;
    let snapshot = sc.running.state.config.as_ref().clone();
    // G1: agent A with overrides, then a plain request.
    sc.get(&format!("/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}&optionsOverride.Scopes={}&optionsOverride.ExtraHeaderParameters.X-Leak=1", enc(&format!("api://{MCP}/.default")))).await.token();
    relay.clear();
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(claim(&r.claims(), "appid"), BP);
    let c = relay.token_calls();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].param("fmi_path"), None);
    assert_eq!(c[0].param("scope").as_deref(), Some(GRAPH_DEFAULT));
    // G2: 200 concurrent requests alternating agents and scopes.
    let sc = std::sync::Arc::new(sc);
    let mcp = format!("api://{MCP}/.default");
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let sc = sc.clone();
            let (agent, scope) = if i % 2 == 0 { (AGENT, GRAPH_DEFAULT.to_string()) } else { (AGENT_B, mcp.clone()) };
            tokio::spawn(async move {
                let r = sc
                    .get(&format!("/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={agent}&optionsOverride.Scopes={}", enc(&scope)))
                    .await;
                (agent, scope, r)
            })
        })
        .collect();
    for t in tasks {
        let (agent, scope, r) = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let c = r.claims();
        assert_eq!(claim(&c, "appid"), agent);
        let expected_aud = scope.trim_end_matches("/.default");
        assert_eq!(claim(&c, "aud"), expected_aud);
    }
    // G3
    assert_eq!(*sc.running.state.config, snapshot);
    sts.stop().await;
}
