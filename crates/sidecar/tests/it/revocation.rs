//! The kill switch at the sidecar (docs/sidecar.md §18) against the real STS: once the agent is
//! disabled, the sidecar refuses to hand out its tokens within 5 s (even those it has cached)
//! and drops them from its cache; re-enabled, it serves again; a user whose sessions were
//! revoked gets no on-behalf-of token from an inbound token issued before, while the agent's
//! own token is unaffected.

use crate::support::*;
use agentid_claims::UnverifiedJwt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REVOCATION: [(&str, Option<&str>); 4] = [
    ("Sidecar__AllowedAgentIdentities__0", Some(AGENT)),
    ("Sidecar__Revocation__Enabled", Some("true")),
    ("Sidecar__Revocation__PollIntervalSeconds", Some("1")),
    ("Sidecar__Revocation__LongPollWaitSeconds", Some("20")),
];

/// Cached tokens whose client is `agent`.
fn cached_for(sc: &TestSidecar, agent: &str) -> usize {
    let n = AtomicUsize::new(0);
    sc.running.state.engine.cache().retain(|t| {
        let azp = UnverifiedJwt::parse(&t.token).ok().and_then(|j| {
            j.str_claim("azp")
                .or(j.str_claim("appid"))
                .map(str::to_string)
        });
        if azp.as_deref() == Some(agent) {
            n.fetch_add(1, Ordering::SeqCst);
        }
        true
    });
    n.load(Ordering::SeqCst)
}

async fn until_status(sc: &TestSidecar, path: &str, tc: Option<&str>, status: u16) -> Duration {
    let start = Instant::now();
    eventually(10, &format!("HTTP {status} from {path}"), || async {
        let r = match tc {
            Some(t) => sc.get_as(path, t).await,
            None => sc.get(path).await,
        };
        (r.status == status).then_some(())
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_agent_gets_no_token_within_five_seconds() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &REVOCATION).await;
    let gate = sc
        .running
        .state
        .engine
        .revocation()
        .expect("revocation on")
        .feed()
        .clone();
    eventually(10, "the first feed", || {
        let ready = gate.current().is_some();
        async move { ready.then_some(()) }
    })
    .await;
    let app = format!("/AuthorizationHeaderUnauthenticated/graph-app?AgentIdentity={AGENT}");
    let obo = format!(
        "/AuthorizationHeader/graph?optionsOverride.RequestAppToken=false&AgentIdentity={AGENT}"
    );
    let tc = alice_tc(&sts).await;
    assert_eq!(sc.get(&app).await.status, 200);
    assert_eq!(sc.get_as(&obo, &tc).await.status, 200);
    assert!(cached_for(&sc, AGENT) > 0, "the agent's tokens are cached");

    let store = &sts.running.state.store;
    let agent = AGENT.parse().unwrap();
    let patch = |enabled| agentid_directory::principals::PrincipalPatch {
        account_enabled: Some(enabled),
        ..Default::default()
    };
    store.update_principal(&agent, &patch(false)).await.unwrap();
    let took = until_status(&sc, &app, None, 401).await;
    assert!(
        took < Duration::from_secs(5),
        "served for {took:?} after the agent was disabled"
    );
    eprintln!("agent disabled → sidecar refuses after {took:?}");
    let r = sc.get(&app).await;
    assert!(
        r.detail().starts_with("revoked:agentDisabled"),
        "{}",
        r.text()
    );
    assert_eq!(sc.get_as(&obo, &tc).await.status, 401);
    eventually(5, "the agent's cached tokens dropped", || {
        let n = cached_for(&sc, AGENT);
        async move { (n == 0).then_some(()) }
    })
    .await;

    store.update_principal(&agent, &patch(true)).await.unwrap();
    let took = until_status(&sc, &app, None, 200).await;
    assert!(
        took < Duration::from_secs(5),
        "still refused {took:?} after re-enabling"
    );

    // Revoked sessions: alice's earlier inbound token yields nothing; the agent's own token
    // does.
    assert_eq!(sc.get_as(&obo, &tc).await.status, 200);
    store
        .revoke_sessions(&ALICE.parse().unwrap())
        .await
        .unwrap();
    until_status(&sc, &obo, Some(&tc), 401).await;
    let r = sc.get_as(&obo, &tc).await;
    assert!(
        r.detail().starts_with("revoked:userSessionsRevoked"),
        "{}",
        r.text()
    );
    assert_eq!(sc.get(&app).await.status, 200);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_settings_are_checked() {
    let sts = start_sts().await;
    for (key, value, expected) in [
        (
            "Sidecar__Revocation__PollIntervalSeconds",
            "0",
            "between 1 and 300",
        ),
        (
            "Sidecar__Revocation__LongPollWaitSeconds",
            "26",
            "at most 25",
        ),
        (
            "Sidecar__Revocation__FailureMode",
            "sometimes",
            "open or closed",
        ),
        ("Sidecar__Revocation__Bogus", "1", "Bogus"),
    ] {
        let mut env = base_env(&sts, sts.base());
        apply(&mut env, &REVOCATION);
        apply(&mut env, &[(key, Some(value))]);
        let err = agentid_sidecar::config::load(&agentid_sidecar::ConfigSources::from_vars(&env))
            .map(|_| ())
            .expect_err(key)
            .to_string();
        assert!(err.contains(expected), "{key}={value}: {err}");
    }
    sts.stop().await;
}
