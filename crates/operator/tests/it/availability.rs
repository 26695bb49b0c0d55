//! Availability (docs/operator.md §5): two replicas share a Lease, the leader is killed and the
//! other takes over within the lease duration; a replica started with the webhook certificate
//! Secret gone makes a new one and patches the `caBundle`, and the API server then reaches the
//! webhook with it.

use crate::support::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;
use std::time::{Duration, Instant};

async fn holder(bed: &Bed, name: &str) -> Option<String> {
    bed.api::<Lease>()
        .get_opt(name)
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_takeover_and_certificate_recreation() {
    let bed = Bed::start("operator-ha").await;
    let cfg = bed.config("x");
    let lease = cfg.lease_name();
    let a = bed.operator("replica-a").await;
    let b = bed.operator("replica-b").await;
    let first = eventually("a leader", Duration::from_secs(30), || holder(&bed, &lease)).await;
    let (leader, other) = if first == "replica-a" {
        (&a, "replica-b")
    } else {
        (&b, "replica-a")
    };
    // The leader reconciles: a blueprint becomes Ready.
    bed.service_account("worker").await;
    bed.apply_yaml("apiVersion: agentid.dev/v1alpha1\nkind: AgentBlueprint\nmetadata: {name: one}\nspec: {directoryRef: directory, displayName: One, serviceAccounts: [worker]}\n").await;
    bed.ready("AgentBlueprint", "one").await;

    // Kill the leader (no release): the other replica takes over within the lease duration
    // (plus one retry interval, a fifth of it).
    let killed = Instant::now();
    leader.kill();
    let next = eventually("a new leader", cfg.lease_duration * 3, || async {
        holder(&bed, &lease).await.filter(|h| h != &first)
    })
    .await;
    let took = killed.elapsed();
    eprintln!(
        "leader {first} killed; {next} took over in {} ms",
        took.as_millis()
    );
    assert_eq!(next, other);
    assert!(
        took <= cfg.lease_duration + cfg.lease_duration / 5 + Duration::from_secs(2),
        "took over in {took:?}"
    );
    // And the new leader reconciles.
    bed.apply_yaml("apiVersion: agentid.dev/v1alpha1\nkind: AgentBlueprint\nmetadata: {name: two}\nspec: {directoryRef: directory, displayName: Two, serviceAccounts: [worker]}\n").await;
    bed.ready("AgentBlueprint", "two").await;

    // The webhook certificate Secret is gone; a replica (re)started makes a new one and patches
    // the caBundle.
    let secrets = bed.api::<Secret>();
    let old_ca = secrets.get(&cfg.cert_secret()).await.unwrap().data.unwrap()["ca.crt"]
        .0
        .clone();
    a.kill();
    b.kill();
    secrets
        .delete(&cfg.cert_secret(), &DeleteParams::default())
        .await
        .unwrap();
    let c = bed.operator("replica-c").await;
    let new_ca = secrets
        .get(&cfg.cert_secret())
        .await
        .expect("re-created")
        .data
        .unwrap()["ca.crt"]
        .0
        .clone();
    assert_ne!(new_ca, old_ca, "a new CA");
    let m = Api::<MutatingWebhookConfiguration>::all(bed.client.clone())
        .get(&cfg.instance)
        .await
        .unwrap();
    for w in m.webhooks.unwrap() {
        assert_eq!(
            w.client_config.ca_bundle.unwrap().0,
            new_ca,
            "caBundle of {}",
            w.name
        );
    }
    // The API server reaches the new replica's webhook with the new CA: a labelled Pod for a
    // missing agent is refused by the webhook itself (failurePolicy Fail would say "failed
    // calling webhook" if it could not reach it).
    let e = bed
        .try_create::<Pod>(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"agentid.dev/agent": "missing"}},
            "spec": {"serviceAccountName": "worker", "containers": [{"name": "app", "image": "example.test/app:1"}]}}))
        .await
        .expect_err("refused");
    assert!(
        e.to_string().contains("AgentIdentity") && e.to_string().contains("does not exist"),
        "{e}"
    );
    c.kill();
}
