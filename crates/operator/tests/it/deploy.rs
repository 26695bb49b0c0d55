//! `deploy/operator` applied for real: `kubectl apply -k` against the test bed's
//! kube-apiserver v1.20.2 (its own, since the manifests are cluster-wide: CRDs, webhook
//! configurations, ClusterRole). The API server accepts every object, the CRDs become
//! Established, the Deployment becomes Pods (no kubelet runs them), and the webhook
//! configurations are stored with the failurePolicy the manifests explain.

use agentid_testkit::KubeCluster;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_of_deploy_operator_is_accepted() {
    // Its own control plane: the webhook configurations this applies are cluster-scoped and
    // would intercept the other operator tests' resources.
    let kube = KubeCluster::start().await.expect("a Kubernetes test bed");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/operator");
    let output = kube
        .kubectl()
        .args(["apply", "-k"])
        .arg(&dir)
        // Client-side apply: 1.20 refuses server-side apply of v1 CRDs ("per-version schemas may
        // not all be set to identical values").
        .args(["--validate=false"])
        .output()
        .expect("run kubectl");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "kubectl apply: {stderr}\n{stdout}");
    let client = kube.client().await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in ["directoryconnections", "agentblueprints", "agentidentities"] {
        let full = format!("{name}.agentid.dev");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = crds.get(&full).await.expect("the CRD is stored");
            let established = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            assert!(Instant::now() < deadline, "{full} not Established");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let m = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get("agentid-operator")
        .await
        .expect("stored");
    let policies: Vec<(String, String)> = m
        .webhooks
        .unwrap()
        .into_iter()
        .map(|w| (w.name, w.failure_policy.unwrap_or_default()))
        .collect();
    assert_eq!(
        policies,
        [
            ("labelled.pods.agentid.dev".to_string(), "Fail".to_string()),
            (
                "service-account.pods.agentid.dev".to_string(),
                "Ignore".to_string()
            )
        ]
    );
    let d = Api::<Deployment>::namespaced(client, "agentid-system")
        .get("agentid-operator")
        .await
        .expect("the Deployment is stored");
    assert_eq!(d.spec.unwrap().replicas, Some(2));
}
