//! The trail (docs/audit.md §2–§3): every issued token names its parent in its own audit row, and
//! the chain of a token walks up to the sign-in and the blueprint's credential, down to the
//! gateway decisions made with it.

use agentid_directory::trail::{self, GatewayEvent, HopKind, Outcome};
use agentid_testkit::chain::Chain;
use agentid_testkit::demo::{self, DEMO_TENANT};
use agentid_testkit::{Db, TestSts, both_backends, claims};

fn uti(jwt: &str) -> String {
    claims(jwt)["uti"].as_str().expect("uti").to_string()
}

fn event(sts: &TestSts, id: &str, token: &str, decision: &str, tool: &str) -> GatewayEvent {
    GatewayEvent {
        tenant_id: sts.tenant_id.clone(),
        event_id: id.into(),
        time: chrono::Utc::now().timestamp(),
        received_at: chrono::Utc::now().timestamp(),
        gateway_client_id: demo::GRAPH_CLI.into(),
        kind: "mcp".into(),
        route: Some("mcp<route>".into()),
        token_id: Some(token.into()),
        decision: decision.into(),
        tool: Some(tool.into()),
        upstream_status: Some(200),
        event: "{}".into(),
        ..Default::default()
    }
}

both_backends!(obo_chain_names_every_hop, |db: Db| async move {
    let sts = TestSts::start(db, DEMO_TENANT).await;
    let store = &sts.running.state.store;
    let c = Chain::demo();
    let scope = format!("api://{}/.default", demo::MCP_APP);
    let obo = c.agent_obo(&sts, &scope).await;
    let obo_uti = uti(&obo);

    // The parent is in the token's own row: one write per token.
    let rows = sts.token_events().await;
    let row = rows
        .iter()
        .find(|r| r.token_id.as_deref() == Some(obo_uti.as_str()))
        .expect("row of the OBO token");
    assert_eq!(row.parent_kind.as_deref(), Some("user_assertion"));
    let tc = rows
        .iter()
        .find(|r| r.token_id == row.parent_uti)
        .expect("parent row");
    assert_eq!(tc.parent_kind.as_deref(), Some("password"));
    let t1 = rows
        .iter()
        .find(|r| r.token_id == row.credential_id)
        .expect("T1 row");
    assert_eq!(t1.parent_kind.as_deref(), Some("secret"));

    let new = store
        .insert_gateway_events(&[
            event(&sts, "e1", &obo_uti, "allow", "whoami"),
            event(&sts, "e2", &obo_uti, "deny", "<script>x</script>"),
        ])
        .await
        .unwrap();
    assert_eq!(new, 2);
    // A batch sent again stores nothing.
    let again = store
        .insert_gateway_events(&[event(&sts, "e1", &obo_uti, "allow", "whoami")])
        .await
        .unwrap();
    assert_eq!(again, 0);

    let tenant = uuid::Uuid::parse_str(&sts.tenant_id).unwrap();
    let chain = trail::chain(store, &tenant, &obo_uti)
        .await
        .unwrap()
        .expect("chain");
    let kinds: Vec<HopKind> = chain.hops.iter().map(|h| h.kind).collect();
    for k in [
        HopKind::SignIn,
        HopKind::Consent,
        HopKind::Credential,
        HopKind::ExchangeToken,
        HopKind::UserToken,
        HopKind::AgentToken,
        HopKind::Decision,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing in {kinds:?}");
    }
    let pos = |k: HopKind| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos(HopKind::SignIn) < pos(HopKind::UserToken));
    assert!(pos(HopKind::ExchangeToken) < pos(HopKind::AgentToken));
    assert!(pos(HopKind::AgentToken) < pos(HopKind::Decision));
    let text = chain.to_text();
    assert!(text.contains(demo::ALICE_UPN), "{text}");
    assert!(
        text.contains("Blog Agent") || text.contains(demo::AGENT),
        "{text}"
    );
    assert!(text.contains("whoami") && text.contains("[deny]"), "{text}");
    let decisions: Vec<Outcome> = chain
        .hops
        .iter()
        .filter(|h| h.kind == HopKind::Decision)
        .map(|h| h.outcome)
        .collect();
    assert_eq!(decisions, vec![Outcome::Allow, Outcome::Deny]);

    let svg = agentid_sts::trail::svg::render(&chain);
    assert!(!svg.contains("<script"), "{svg}");
    assert!(svg.contains("&lt;script&gt;"));

    // Another tenant's uti, or an unknown one, has no chain.
    assert!(
        trail::chain(store, &uuid::Uuid::new_v4(), &obo_uti)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        trail::chain(store, &tenant, "nope")
            .await
            .unwrap()
            .is_none()
    );
    sts.stop().await;
});

both_backends!(t1_chain_reaches_descendants, |db: Db| async move {
    let sts = TestSts::start(db, DEMO_TENANT).await;
    let store = &sts.running.state.store;
    let c = Chain::demo();
    let t1 = c.t1(&sts).await;
    let t2 = sts
        .token_ok(&[
            ("grant_type", "client_credentials"),
            ("client_id", demo::AGENT),
            ("scope", "https://graph.microsoft.com/.default"),
            ("client_assertion_type", demo::CLIENT_ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await;
    let t2_uti = uti(&t2);
    store
        .insert_gateway_events(&[event(&sts, "d1", &t2_uti, "allow", "search")])
        .await
        .unwrap();
    let tenant = uuid::Uuid::parse_str(&sts.tenant_id).unwrap();
    let chain = trail::chain(store, &tenant, &uti(&t1))
        .await
        .unwrap()
        .expect("chain");
    let kinds: Vec<HopKind> = chain.hops.iter().map(|h| h.kind).collect();
    assert_eq!(
        kinds,
        vec![
            HopKind::Credential,
            HopKind::ExchangeToken,
            HopKind::AgentToken,
            HopKind::Decision
        ],
        "{}",
        chain.to_text()
    );
    assert!(chain.hops[2].title.contains("autonomously"));
    sts.stop().await;
});
