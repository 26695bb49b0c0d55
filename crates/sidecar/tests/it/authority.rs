//! What the sidecar sends to the authority and how it treats the answers (docs/sidecar.md §9,
//! §16.B, §16.J): the form bodies byte for byte, headers, tenant override, the cache (reuse
//! across scopes, refresh before expiry, single flight, LRU bound, key isolation), credential
//! fallback, retries, stale tokens during an outage. The authority is the real STS behind a
//! recording relay that can also script failures.

use crate::support::relay::leg;
use crate::support::*;
use std::time::{Duration, Instant};

const JB: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
const GRAPH: &str = "https%3A%2F%2Fgraph.microsoft.com%2F.default";
const EXCHANGE: &str = "api%3A%2F%2FAzureADTokenExchange%2F.default";
const OBO_GRANT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

async fn setup(changes: &[(&str, Option<&str>)]) -> (agentid_testkit::TestSts, Relay, TestSidecar) {
    let sts = start_sts().await;
    let relay = Relay::for_sts(&sts).await;
    let mut all = vec![
        ("Sidecar__AllowedAgentIdentities__0", Some(AGENT)),
        ("Sidecar__AllowedAgentIdentities__1", Some(AGENT_B)),
    ];
    all.extend_from_slice(changes);
    let sc = TestSidecar::relayed(&sts, &relay, &all).await;
    (sts, relay, sc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_bodies_byte_for_byte_for_every_flow() {
    let (sts, relay, sc) = setup(&[]).await;
    let tc = alice_tc(&sts).await;
    let secret = format!("client_secret={BP_SECRET}");

    // Blueprint app token (B3).
    sc.get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await
        .token();
    let c = relay.token_calls();
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].body,
        format!("client_id={BP}&scope={GRAPH}&grant_type=client_credentials&{secret}")
    );
    assert_eq!(c[0].path, format!("/{}/oauth2/v2.0/token", sts.tenant_id));
    let h = |n: &str| {
        c[0].headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        h("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(h("accept").as_deref(), Some("application/json"));
    assert_eq!(h("return-client-request-id").as_deref(), Some("true"));
    assert!(uuid::Uuid::parse_str(&h("client-request-id").unwrap()).is_ok());
    assert_eq!(
        h("user-agent").as_deref(),
        Some(concat!("agentid-sidecar/", env!("CARGO_PKG_VERSION")))
    );
    assert!(h("authorization").is_none(), "never HTTP Basic");

    // Autonomous agent: T1 then T2.
    relay.clear();
    sc.get(&format!(
        "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
    ))
    .await
    .token();
    let c = relay.token_calls();
    assert_eq!(c.len(), 2);
    assert_eq!(
        c[0].body,
        format!(
            "client_id={BP}&scope={EXCHANGE}&grant_type=client_credentials&fmi_path={AGENT}&{secret}"
        )
    );
    let t1 = c[0].access_token().unwrap();
    assert_eq!(
        c[1].body,
        format!(
            "client_id={AGENT}&scope={GRAPH}&grant_type=client_credentials&client_assertion_type={JB}&client_assertion={t1}"
        )
    );

    // Agent OBO, with the lower-case parameter name (C8): T1 is reused.
    relay.clear();
    sc.get_as(
        &format!("/AuthorizationHeader/graph?agentidentity={AGENT}"),
        &tc,
    )
    .await
    .token();
    let c = relay.token_calls();
    assert_eq!(c.len(), 1, "T1 reused across flows");
    assert_eq!(
        c[0].body,
        format!(
            "client_id={AGENT}&scope={GRAPH}&grant_type={OBO_GRANT}&requested_token_use=on_behalf_of&assertion={tc}&client_assertion_type={JB}&client_assertion={t1}"
        )
    );

    // Agent user (C9): T2′ then user_fic, by UPN and by object id.
    relay.clear();
    let oid = sts.id("agentUsers", "blog-agent");
    sc.get(&format!(
        "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}&AgentUsername=blog-agent%40contoso.test"
    ))
    .await
    .token();
    sc.get(&format!(
        "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}&AgentUserId={oid}"
    ))
    .await
    .token();
    let c = relay.token_calls();
    assert_eq!(c.len(), 3, "T2′ reused by the second agent-user request");
    assert_eq!(
        c[0].body,
        format!(
            "client_id={AGENT}&scope={EXCHANGE}&grant_type=client_credentials&client_assertion_type={JB}&client_assertion={t1}"
        )
    );
    let t2x = c[0].access_token().unwrap();
    assert_eq!(
        c[1].body,
        format!(
            "client_id={AGENT}&scope={GRAPH}&grant_type=user_fic&client_assertion_type={JB}&client_assertion={t1}&user_federated_identity_credential={t2x}&username=blog-agent%40contoso.test"
        )
    );
    assert_eq!(
        c[2].body,
        format!(
            "client_id={AGENT}&scope={GRAPH}&grant_type=user_fic&client_assertion_type={JB}&client_assertion={t1}&user_federated_identity_credential={t2x}&user_id={oid}"
        )
    );

    // Plain OBO as the blueprint (B4).
    relay.clear();
    sc.get_as("/AuthorizationHeader/graph", &tc).await.token();
    let c = relay.token_calls();
    assert_eq!(
        c[0].body,
        format!(
            "client_id={BP}&scope={GRAPH}&grant_type={OBO_GRANT}&requested_token_use=on_behalf_of&assertion={tc}&{secret}"
        )
    );
    logs::assert_no_secrets(&[BP_SECRET, &tc, &t1, &t2x]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_id_tenant_override_and_repeated_scopes() {
    let (sts, relay, sc) = setup(&[(
        "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated",
        Some("true"),
    )])
    .await;
    let tc = alice_tc(&sts).await;
    // P3: the caller's client-request-id is the correlation id end to end.
    let id = cid();
    let r = sc
        .send(
            reqwest::Method::GET,
            "/AuthorizationHeaderUnauthenticated/graph-app",
            None,
            &[("client-request-id", &id)],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-correlation-id"), Some(id.as_str()));
    assert_eq!(
        relay.token_calls()[0].headers["client-request-id"],
        id.as_str()
    );
    assert!(
        logs::lines_with(&id)
            .iter()
            .any(|l| l["event"] == "request")
    );
    // A non-GUID header is ignored; an override CorrelationId wins over the header.
    let over = cid();
    let r = sc
        .send(
            reqwest::Method::GET,
            &format!("/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.AcquireTokenOptions.CorrelationId={over}&optionsOverride.AcquireTokenOptions.ForceRefresh=true"),
            None,
            &[("client-request-id", &id), ("x-ms-client-request-id", "not-a-guid")],
            None,
        )
        .await;
    assert_eq!(r.header("x-correlation-id"), Some(over.as_str()));
    assert_eq!(
        relay.token_calls().last().unwrap().headers["client-request-id"],
        over.as_str()
    );

    // C10: the tenant override applies to every leg.
    relay.clear();
    let r = sc
        .get_as(
            &format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}&optionsOverride.AcquireTokenOptions.Tenant=contoso.test"),
            &tc,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = relay.token_calls();
    assert_eq!(c.len(), 2);
    assert!(
        c.iter()
            .all(|x| x.path == "/contoso.test/oauth2/v2.0/token"),
        "{:?}",
        c.iter().map(|x| &x.path).collect::<Vec<_>>()
    );

    // C11: repeated Scopes are joined by single spaces (the authority answer is scripted).
    relay.clear();
    relay.script([Step::token(serde_json::json!({"scp": "x"}))]);
    let r = sc
        .get_as("/AuthorizationHeader/graph?optionsOverride.Scopes=user.read&optionsOverride.Scopes=user.write", &tc)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        relay.token_calls()[0].param("scope").as_deref(),
        Some("user.read user.write")
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_is_reused_across_scopes_and_force_refresh_skips_only_the_final_leg() {
    let (sts, relay, sc) = setup(&[
        (
            "DownstreamApis__mcp-app__Scopes__0",
            Some(&format!("api://{MCP}/.default")),
        ),
        ("DownstreamApis__mcp-app__RequestAppToken", Some("true")),
    ])
    .await;
    // J2
    sc.get(&format!(
        "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
    ))
    .await
    .token();
    let mcp = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/mcp-app?AgentIdentity={AGENT}"
        ))
        .await;
    assert_eq!(claim(&mcp.claims(), "aud"), format!("api://{MCP}"));
    let calls = relay.token_calls();
    assert_eq!(calls.iter().filter(|c| leg(c) == "t1").count(), 1);
    assert_eq!(calls.iter().filter(|c| leg(c) == "agent_app").count(), 2);
    // J5 (on the authenticated route, where overrides are allowed by default)
    let tc = alice_tc(&sts).await;
    relay.clear();
    let first = sc
        .get_as(
            &format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}"),
            &tc,
        )
        .await
        .token();
    let again = sc
        .get_as(
            &format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}"),
            &tc,
        )
        .await
        .token();
    assert_eq!(first, again);
    let forced = sc
        .get_as(&format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}&optionsOverride.AcquireTokenOptions.ForceRefresh=true"), &tc)
        .await
        .token();
    assert_ne!(first, forced);
    let calls = relay.token_calls();
    assert_eq!(calls.iter().filter(|c| leg(c) == "agent_obo").count(), 2);
    assert_eq!(calls.iter().filter(|c| leg(c) == "t1").count(), 0);
    // The forced token replaced the entry.
    let after = sc
        .get_as(
            &format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}"),
            &tc,
        )
        .await
        .token();
    assert_eq!(after, forced);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_before_expiry() {
    // J3
    let (sts, relay, sc) = setup(&[]).await;
    let path = "/AuthorizationHeaderUnauthenticated/graph-app";
    let first = sc.get(path).await.token();
    assert_eq!(sc.get(path).await.token(), first);
    assert_eq!(relay.token_calls().len(), 1);
    let exp = agentid_testkit::claims(&first)["exp"].as_i64().unwrap();
    sc.clock.set(exp - 301);
    assert_eq!(
        sc.get(path).await.token(),
        first,
        "still inside the reuse window"
    );
    assert_eq!(relay.token_calls().len(), 1);
    sc.clock.set(exp - 299);
    let third = sc.get(path).await.token();
    assert_ne!(third, first);
    assert_eq!(relay.token_calls().len(), 2);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_call() {
    // J4
    let (sts, relay, sc) = setup(&[]).await;
    relay.script([Step::Delay(Duration::from_millis(500))]);
    let sc = std::sync::Arc::new(sc);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let sc = sc.clone();
            tokio::spawn(async move {
                sc.get("/AuthorizationHeaderUnauthenticated/graph-app")
                    .await
            })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().token());
    }
    assert_eq!(tokens.len(), 1, "50 identical answers");
    assert_eq!(relay.token_calls().len(), 1, "exactly one authority call");
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_least_recently_used() {
    // J6: four keys (scopes a, b, c, d) with room for three.
    let (sts, relay, sc) = setup(&[
        ("Sidecar__TokenCache__MaxEntries", Some("3")),
        (
            "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated",
            Some("true"),
        ),
    ])
    .await;
    let get = |s: &'static str| {
        let sc = &sc;
        async move {
            sc.get(&format!(
                "/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.Scopes={s}"
            ))
            .await
            .token()
        }
    };
    relay.script((0..6).map(|i| Step::token(serde_json::json!({"n": i}))));
    let a = get("a").await;
    get("b").await;
    get("c").await;
    assert_eq!(
        get("a").await,
        a,
        "a is a hit and becomes most recently used"
    );
    get("d").await;
    assert_eq!(sc.metric("agentid_sidecar_token_cache_entries").await, 3.0);
    assert_eq!(relay.token_calls().len(), 4);
    assert_eq!(get("a").await, a, "a survived");
    get("b").await;
    assert_eq!(relay.token_calls().len(), 5, "b was evicted");
    assert!(sc.metric("agentid_sidecar_token_cache_entries").await <= 3.0);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_tenants_and_agents_get_distinct_entries() {
    // J7
    let (sts, relay, sc) = setup(&[]).await;
    let alice = alice_tc(&sts).await;
    let bob = user_token_for(&sts, BP, "bob@contoso.test", "bob-builds-agents").await;
    let path = format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}");
    let a = sc.get_as(&path, &alice).await.claims();
    let b = sc.get_as(&path, &bob).await.claims();
    assert_eq!(claim(&a, "upn"), "alice@contoso.test");
    assert_eq!(claim(&b, "upn"), "bob@contoso.test");
    let tenant = sc
        .get_as(
            &format!("{path}&optionsOverride.AcquireTokenOptions.Tenant=contoso.test"),
            &alice,
        )
        .await;
    assert_eq!(tenant.status, 200);
    let other_agent = sc
        .get_as(
            &format!("/AuthorizationHeader/graph?AgentIdentity={AGENT_B}"),
            &alice,
        )
        .await
        .claims();
    assert_eq!(claim(&other_agent, "appid"), AGENT_B);
    let upn = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}&AgentUsername={}",
            enc(AGENT_USER_UPN)
        ))
        .await
        .token();
    let oid = sts.id("agentUsers", "blog-agent");
    let by_oid = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}&AgentUserId={oid}"
        ))
        .await
        .token();
    assert_ne!(upn, by_oid);
    let finals = relay.count(|c| matches!(leg(c), "agent_obo" | "agent_user"));
    assert_eq!(finals, 6, "each distinct identity got its own token");
    // Repeating any of them is a hit.
    sc.get_as(&path, &bob).await.token();
    assert_eq!(
        relay.count(|c| matches!(leg(c), "agent_obo" | "agent_user")),
        6
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credential_falls_back_and_is_demoted() {
    // J10
    let (sts, relay, sc) = setup(&[
        (
            "AzureAd__ClientCredentials__0__ClientSecret",
            Some("wrong-secret"),
        ),
        (
            "AzureAd__ClientCredentials__1__SourceType",
            Some("ClientSecret"),
        ),
        (
            "AzureAd__ClientCredentials__1__ClientSecret",
            Some(BP_SECRET),
        ),
    ])
    .await;
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(claim(&r.claims(), "appid"), BP);
    let secrets: Vec<String> = relay
        .token_calls()
        .iter()
        .map(|c| c.param("client_secret").unwrap())
        .collect();
    assert_eq!(secrets, vec!["wrong-secret", BP_SECRET]);
    assert!(relay.token_calls()[0].response.contains("AADSTS7000215"));
    // Demoted: the next acquisition starts with credential 1.
    relay.clear();
    sc.get(&format!(
        "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
    ))
    .await
    .token();
    let secrets: Vec<String> = relay
        .token_calls()
        .iter()
        .filter_map(|c| c.param("client_secret"))
        .collect();
    assert_eq!(secrets, vec![BP_SECRET]);
    // Every credential rejected: 401 with the last refusal.
    let sc2 = TestSidecar::relayed(
        &sts,
        &relay,
        &[(
            "AzureAd__ClientCredentials__0__ClientSecret",
            Some("wrong-secret"),
        )],
    )
    .await;
    let r = sc2
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(r.status, 401);
    assert!(r.detail().starts_with("AADSTS7000215"), "{}", r.detail());
    logs::assert_no_secrets(&[BP_SECRET, "wrong-secret"]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_backoff_and_retry_after() {
    // J11
    let (sts, relay, sc) = setup(&[(
        "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated",
        Some("true"),
    )])
    .await;
    relay.script([Step::status(503)]);
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = relay.token_calls();
    assert_eq!((c.len(), c[0].status, c[1].status), (2, 503, 200));
    let gap = c[1].at - c[0].at;
    assert!(
        gap >= Duration::from_millis(190),
        "backoff of about 250 ms, was {gap:?}"
    );
    relay.clear();
    relay.script([Step::Respond {
        status: 429,
        body: String::new(),
        retry_after: Some("1".into()),
    }]);
    let r = sc.get("/AuthorizationHeaderUnauthenticated/graph-app?optionsOverride.AcquireTokenOptions.ForceRefresh=true").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = relay.token_calls();
    assert_eq!(c.len(), 2);
    assert!(
        c[1].at - c[0].at >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    // A slow authority: each attempt times out, three attempts, then 503.
    let sc = TestSidecar::relayed(
        &sts,
        &relay,
        &[("Sidecar__AuthorityTimeoutSeconds", Some("1"))],
    )
    .await;
    relay.clear();
    relay.script([
        Step::Delay(Duration::from_secs(3)),
        Step::Delay(Duration::from_secs(3)),
        Step::Delay(Duration::from_secs(3)),
    ]);
    let started = Instant::now();
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    r.assert_problem(
        503,
        "The token authority 127.0.0.1 is unavailable (no response within 1 s) and no cached token can be used.",
    );
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(started.elapsed() >= Duration::from_secs(3));
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_serves_a_still_valid_token_but_never_after_a_refusal() {
    let (sts, relay, sc) = setup(&[]).await;
    let path = "/AuthorizationHeaderUnauthenticated/graph-app";
    let first = sc.get(path).await.token();
    let exp = agentid_testkit::claims(&first)["exp"].as_i64().unwrap();
    // J12: past the reuse window, more than 60 s left, authority down.
    sc.clock.set(exp - 200);
    relay.set_down(true);
    let id = cid();
    let r = sc
        .send(
            reqwest::Method::GET,
            path,
            None,
            &[("client-request-id", &id)],
            None,
        )
        .await;
    assert_eq!(r.token(), first);
    assert!(logs::has_event(&id, "stale_token_served"));
    assert!(
        sc.metric(
            "agentid_sidecar_token_cache_lookups_total{flow=\"app\",leg=\"final\",result=\"stale\"}"
        )
        .await
            >= 1.0
    );
    // Held for 30 s: no further authority calls.
    let calls = relay.token_calls().len();
    assert_eq!(sc.get(path).await.token(), first);
    assert_eq!(relay.token_calls().len(), calls);
    // J13: nothing cached for this key (another API) → 503 with the authority's Retry-After.
    relay.set_down(false);
    relay.script([
        Step::Respond {
            status: 503,
            body: String::new(),
            retry_after: Some("2".into()),
        },
        Step::Respond {
            status: 503,
            body: String::new(),
            retry_after: Some("2".into()),
        },
        Step::Respond {
            status: 503,
            body: String::new(),
            retry_after: Some("2".into()),
        },
    ]);
    let r = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
        ))
        .await;
    r.assert_problem(
        503,
        "The token authority 127.0.0.1 is unavailable (HTTP 503) and no cached token can be used.",
    );
    assert_eq!(r.header("retry-after"), Some("2"));
    // J14: an OAuth refusal is final even with a stale token in the cache: 401, one call.
    sc.clock.set(exp - 100);
    relay.clear();
    relay.script([Step::oauth(
        400,
        "invalid_grant",
        "AADSTS7000112: Application is disabled.",
        7000112,
    )]);
    let r = sc.get(path).await;
    r.assert_problem(401, "AADSTS7000112: Application is disabled.");
    assert_eq!(relay.token_calls().len(), 1);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_answers() {
    let (sts, relay, sc) = setup(&[]).await;
    // B6: 200 with a body that is not JSON.
    relay.script([Step::Respond {
        status: 200,
        body: "<html>hello</html>".into(),
        retry_after: None,
    }]);
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    r.assert_problem(500, "An unexpected error occurred.");
    // A 4xx without an OAuth body.
    relay.script([Step::status(404)]);
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    r.assert_problem(401, "The token endpoint returned HTTP 404.");
    // An OAuth error without a description: its error code.
    relay.script([Step::Respond {
        status: 400,
        body: r#"{"error":"invalid_scope"}"#.into(),
        retry_after: None,
    }]);
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    r.assert_problem(401, "invalid_scope");
    // C3: AADSTS50076 (MFA required) from the authority.
    let tc = alice_tc(&sts).await;
    relay.script([Step::oauth(400, "invalid_grant", "AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication.", 50076)]);
    let r = sc.get_as("/AuthorizationHeader/graph", &tc).await;
    assert_eq!(r.status, 401);
    assert!(r.detail().contains("AADSTS50076"));
    sts.stop().await;
}
