//! Audit shipping (docs/audit.md §6): the gateway posts its decision events to the STS as its own
//! application; the STS joins them to the token's chain by `uti`. And `agentid.audit.ship` is
//! checked at load.

use crate::support::ship::{GW, ship_block, with_gateway_app};
use crate::support::*;
use agentid_testkit::poll::eventually;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_reach_the_sts_and_join_the_chain() {
    let sts = sts_with(with_gateway_app).await;
    let upstream = serve(axum::Router::new().fallback(|| async { "ok" })).await;
    let dir = tempfile::tempdir().unwrap();
    let (base, tid) = (sts.base(), &sts.tenant_id);
    let yaml = format!(
        "agentid:\n  audit:\n    stdout: false\n{ship}\
         binds:\n- port: 3000\n  listeners:\n  - routes:\n    - name: api\n      \
         backends: [{{host: \"{upstream}\"}}]\n      policies:\n        jwtAuth:\n          mode: strict\n          \
         issuer: {base}/{tid}/\n          audiences: [api://{MCP_APP}]\n          \
         jwks: {{url: \"{base}/{tid}/discovery/v2.0/keys\"}}\n        authorization:\n          \
         rules: [agent.onBehalfOfUser]\n",
        ship = ship_block(&sts, &dir.path().join("spool")),
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let gw = agentid_gateway::start(agentid_gateway::Options {
        source: agentid_gateway::Source::File(path),
        extra_roots: vec![sts.ca_file()],
        ephemeral_ports: true,
        serving_threads: 2,
    })
    .await
    .expect("gateway starts");
    let obo = agent_obo(&sts, &format!("api://{MCP_APP}/.default")).await;
    let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/tools", gw.addr(3000));
    let allowed = http.get(&url).bearer_auth(&obo).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    let denied = http
        .get(&url)
        .bearer_auth(&autonomous)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);

    let store = &sts.running.state.store;
    let tenant = uuid::Uuid::parse_str(tid).unwrap();
    let uti = claim(&obo, "uti").as_str().unwrap().to_string();
    let chain = eventually(
        Duration::from_secs(20),
        "the decision in the chain",
        || async {
            let c = agentid_directory::trail::chain(store, &tenant, &uti)
                .await
                .unwrap()?;
            c.hops
                .iter()
                .any(|h| h.kind == agentid_directory::trail::HopKind::Decision)
                .then_some(c)
        },
    )
    .await;
    let text = chain.to_text();
    assert!(
        text.contains("gateway allowed GET /tools on route api"),
        "{text}"
    );
    assert!(text.contains("upstream status: 200"), "{text}");
    let auto_uti = claim(&autonomous, "uti").as_str().unwrap().to_string();
    let refused = eventually(Duration::from_secs(20), "the refusal stored", || async {
        let c = agentid_directory::trail::chain(store, &tenant, &auto_uti)
            .await
            .unwrap()?;
        c.hops
            .iter()
            .find(|h| h.outcome == agentid_directory::trail::Outcome::Deny)
            .cloned()
    })
    .await;
    assert!(refused.title.contains("refused"), "{refused:?}");
    let shipper = gw.gateway.audit.shipper().expect("shipping is on");
    eventually(Duration::from_secs(10), "the spool to drain", || async {
        (shipper.spool().pending().unwrap() == 0).then_some(())
    })
    .await;
    assert!(shipper.shipped() >= 2);
    // The admin ring still answers from the same lines.
    let ring: serde_json::Value = http
        .get(format!(
            "http://{}/audit/events?decision=deny",
            gw.admin.unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ring["events"].as_array().unwrap().len(), 1, "{ring}");
    assert_eq!(ring["truncated"], false);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn ship_settings_are_checked_at_load() {
    let load = |ship: &str| {
        agentid_gateway::serve::load_offline(
            &agentid_gateway::Source::Inline(format!(
                "agentid:\n  audit:\n    ship: {ship}\nbinds: []\n"
            )),
            &[],
        )
        .map_err(|e| e.to_string())
    };
    let good = format!(
        "{{tokenEndpoint: \"https://sts/t/oauth2/v2.0/token\", clientId: {GW}, clientSecret: s, url: \"https://sts/agentid/v1/auditEvents\", spoolDir: /tmp/x"
    );
    let snap = load(&format!("{good}}}")).unwrap();
    let ship = snap.settings.audit.ship.expect("ship");
    assert_eq!(ship.batch_size, 500);
    assert_eq!(ship.flush_interval, Duration::from_secs(1));
    assert_eq!(ship.scope, "https://graph.microsoft.com/.default");
    assert!(format!("{ship:?}").contains("client_secret: <redacted>"));
    for (bad, at) in [
        (format!("{good}, batchSize: 0}}"), "batchSize"),
        (format!("{good}, batchSize: 1001}}"), "batchSize"),
        (format!("{good}, maxSpoolBytes: 10}}"), "maxSpoolBytes"),
        (format!("{good}, flushInterval: soon}}"), "flushInterval"),
        (format!("{good}, nope: 1}}"), "nope"),
        (format!("{good}, root: /does/not/exist}}"), "root"),
        (
            good.replace("https://sts/agentid", "ftp://sts/agentid") + "}",
            "url",
        ),
        (
            good.replace("https://sts/t/", "not a url/") + "}",
            "tokenEndpoint",
        ),
        (good.replace(GW, "gateway") + "}", "clientId"),
        (
            good.replace("spoolDir: /tmp/x", "spoolDir: \"\"") + "}",
            "spoolDir",
        ),
    ] {
        let e = load(&bad).unwrap_err();
        assert!(e.contains(at), "{bad}: {e}");
    }
}
