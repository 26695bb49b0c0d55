//! The sidecar's drain (docs/architecture.md §7; what `agentid sidecar` does on SIGTERM, whose
//! signal path is tested on a real process in crates/cli/tests/drain.rs): the main listener
//! stops accepting, `/healthz` on the health listener answers 503 while the in-flight request
//! finishes, then everything stops.

use crate::support::*;
use agentid_listener::Drained;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_finishes_the_in_flight_request_and_fails_health_meanwhile() {
    let sts = start_sts().await;
    let relay = Relay::for_sts(&sts).await;
    let sc = TestSidecar::relayed(
        &sts,
        &relay,
        &[("Sidecar__HealthListenUrl", Some("http://127.0.0.1:0"))],
    )
    .await;
    let health = format!(
        "{}/healthz",
        sc.running.health_url().expect("a health listener")
    );
    let http = http_client();
    assert_eq!(http.get(&health).send().await.unwrap().status(), 200);

    // A token request that the authority answers slowly: in flight when the drain begins.
    relay.script([Step::Delay(Duration::from_secs(3))]);
    let in_flight = {
        let (http, url) = (
            http.clone(),
            format!("{}/AuthorizationHeaderUnauthenticated/graph-app", sc.url),
        );
        tokio::spawn(async move { http.get(url).send().await })
    };
    eventually(30, "the token request to reach the authority", || async {
        (relay.scripted() == 0).then_some(())
    })
    .await;

    let started = Instant::now();
    let draining = {
        let running = &sc.running;
        running.drain(Duration::from_secs(20))
    };
    tokio::pin!(draining);
    // While the request is in flight: health fails, new connections are refused.
    tokio::select! {
        d = &mut draining => panic!("the drain ended with a request in flight: {d:?}"),
        _ = async {
            eventually(10, "/healthz to answer 503", || async {
                let r = http.get(&health).send().await.ok()?;
                (r.status() == 503).then_some(())
            })
            .await;
            let fresh = http_client();
            eventually(10, "the main listener to refuse connections", || async {
                fresh.get(format!("{}/healthz", sc.url)).send().await.is_err().then_some(())
            })
            .await;
        } => {}
    }
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200, "it finishes normally");
    assert_eq!(draining.await, Drained::Finished);
    assert!(started.elapsed() < Duration::from_secs(20));
    // Then the health listener stops too.
    eventually(10, "the health listener to close", || async {
        http_client()
            .get(&health)
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    sts.stop().await;
}
