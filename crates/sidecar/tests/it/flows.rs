//! Every flow of docs/sidecar.md §9.1 against agentid's real STS over HTTPS, with the claims of the
//! returned token checked (the STS's CA is trusted through Sidecar__ExtraCaBundlePath).

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_app_token() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    let c = r.claims();
    assert_eq!(
        (claim(&c, "appid"), claim(&c, "idtyp"), claim(&c, "aud")),
        (BP, "app", "https://graph.microsoft.com")
    );
    assert_eq!(
        c["roles"],
        serde_json::json!(["AgentIdentity.CreateAsManager"])
    );
    logs::assert_no_secrets(&[BP_SECRET, &r.token()]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autonomous_agent_t1_then_t2() {
    let sts = start_sts().await;
    let sc =
        TestSidecar::direct(&sts, &[("Sidecar__AllowedAgentIdentities__0", Some(AGENT))]).await;
    let r = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}"
        ))
        .await;
    let c = r.claims();
    assert_eq!(
        (
            claim(&c, "appid"),
            claim(&c, "sub"),
            claim(&c, "xms_par_app_azp"),
            claim(&c, "idtyp")
        ),
        (AGENT, AGENT, BP, "app")
    );
    assert_eq!(claim(&c, "xms_act_fct"), "3 11 9");
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_on_behalf_of_the_inbound_user() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let tc = alice_tc(&sts).await;
    // What the seed's Python agent sends.
    let r = sc
        .get_as(
            &format!("/AuthorizationHeader/graph?optionsOverride.RequestAppToken=false&AgentIdentity={AGENT}"),
            &tc,
        )
        .await;
    let c = r.claims();
    assert_eq!(
        (claim(&c, "appid"), claim(&c, "idtyp"), claim(&c, "upn")),
        (AGENT, "user", "alice@contoso.test")
    );
    assert_eq!(
        (
            claim(&c, "xms_act_fct"),
            claim(&c, "xms_par_app_azp"),
            claim(&c, "oid")
        ),
        ("11 9 3", BP, ALICE)
    );
    logs::assert_no_secrets(&[BP_SECRET, &tc, &r.token()]);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_user_by_upn_and_by_object_id() {
    let sts = start_sts().await;
    let sc =
        TestSidecar::direct(&sts, &[("Sidecar__AllowedAgentIdentities__0", Some(AGENT))]).await;
    let agent_user = sts.id("agentUsers", "blog-agent");
    for q in [
        format!("AgentUsername={}", enc(AGENT_USER_UPN)),
        format!("AgentUserId={agent_user}"),
    ] {
        let r = sc
            .get(&format!(
                "/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}&{q}"
            ))
            .await;
        let c = r.claims();
        assert_eq!(
            (claim(&c, "appid"), claim(&c, "upn"), claim(&c, "oid")),
            (AGENT, AGENT_USER_UPN, agent_user.as_str())
        );
        assert_eq!(
            (claim(&c, "xms_act_fct"), claim(&c, "xms_sub_fct")),
            ("1 9 11", "1 13")
        );
    }
    // F10: the agent user wins over a configured RequestAppToken=true.
    let r = sc
        .get(&format!(
            "/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}&AgentUsername={}",
            enc(AGENT_USER_UPN)
        ))
        .await;
    assert_eq!(claim(&r.claims(), "upn"), AGENT_USER_UPN);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_on_behalf_of_as_the_blueprint() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let tc = alice_tc(&sts).await;
    let r = sc.get_as("/AuthorizationHeader/graph", &tc).await;
    let c = r.claims();
    assert_eq!(
        (claim(&c, "appid"), claim(&c, "idtyp"), claim(&c, "upn")),
        (BP, "user", "alice@contoso.test")
    );
    assert!(!c.contains_key("xms_par_app_azp"));
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_refusal_is_401_with_its_description() {
    let sts = start_sts().await;
    // A blueprint id the tenant does not know: AADSTS700016 from the real STS (B5).
    let sc = TestSidecar::direct(
        &sts,
        &[(
            "AzureAd__ClientId",
            Some("11111111-2222-3333-4444-555555555555"),
        )],
    )
    .await;
    let r = sc
        .get("/AuthorizationHeaderUnauthenticated/graph-app")
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.detail().starts_with("AADSTS700016"), "{}", r.detail());
    // A missing consent for an agent OBO: the STS's AADSTS65001, as 401 (C3's kind of refusal).
    let sc = TestSidecar::direct(&sts, &[]).await;
    let tc = alice_tc(&sts).await;
    let r = sc
        .get_as(
            &format!("/AuthorizationHeader/graph?AgentIdentity={AGENT}&optionsOverride.Scopes=https://cognitiveservices.azure.com/.default"),
            &tc,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.detail().contains("AADSTS65001"), "{}", r.detail());
    sts.stop().await;
}
