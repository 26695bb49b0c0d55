//! The Kubernetes test bed is a real control plane: kube-apiserver and kube-controller-manager
//! v1.20.2 with etcd, built by `scripts/kube-testbed.sh` (no emulation in this file; the
//! emulated issuer is `KubeIssuer`). Each test works in a namespace of its own on the bed this
//! binary shares, except the key rotation and process tests, which start beds of their own
//! because they restart or kill them.

use agentid_testkit::kube::KubeCluster;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const AUDIENCE: &str = "api://AzureADTokenExchange";

async fn poll<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    agentid_testkit::poll::eventually(timeout, what, f).await
}

async fn service_account(cluster: &KubeCluster, ns: &str, name: &str) {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(cluster.client().await, ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create service account");
}

/// The issuer's JWKS, fetched as `system:anonymous`.
async fn anonymous_jwks(cluster: &KubeCluster) -> JwkSet {
    let response = cluster
        .anonymous_http()
        .get(format!("{}/openid/v1/jwks", cluster.api_url()))
        .send()
        .await
        .expect("GET /openid/v1/jwks");
    assert_eq!(response.status(), 200, "anonymous /openid/v1/jwks");
    response.json().await.expect("a JWKS")
}

/// Verifies a service-account token against a JWKS with jsonwebtoken (independent of agentid's
/// verifier), checking issuer and audience; returns its claims.
fn verify(token: &str, jwks: &JwkSet, issuer: &str) -> Result<Value, String> {
    let kid = jsonwebtoken::decode_header(token)
        .map_err(|e| e.to_string())?
        .kid
        .ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or(format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[AUDIENCE]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|t| t.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_gives_a_token_that_verifies_against_the_anonymous_jwks() {
    let cluster = KubeCluster::shared().await;
    let ns = cluster.namespace("token").await;
    service_account(cluster, &ns, "workload").await;
    let token = cluster.token_request(&ns, "workload", AUDIENCE, 3600).await;

    let jwks = anonymous_jwks(cluster).await;
    let claims = verify(&token, &jwks, cluster.issuer()).expect("the token verifies");
    assert_eq!(claims["iss"], cluster.issuer());
    assert_eq!(claims["aud"], json!([AUDIENCE]));
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{ns}:workload")
    );
    assert_eq!(claims["kubernetes.io"]["namespace"], ns.as_str());
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["name"],
        "workload"
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 3600);

    // The same checks refuse what they should: another audience, a changed payload.
    let other = cluster
        .token_request(&ns, "workload", "api://someone-else", 3600)
        .await;
    assert!(verify(&other, &jwks, cluster.issuer()).is_err());
    let (head, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged_claims = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&json!({"iss": cluster.issuer(), "aud": [AUDIENCE], "sub": "system:serviceaccount:kube-system:admin", "exp": 4102444800u64})).unwrap(),
    );
    assert!(
        verify(
            &format!("{head}.{forged_claims}.{sig}"),
            &jwks,
            cluster.issuer()
        )
        .is_err()
    );

    // The anonymous client really is anonymous: it may read the JWKS but not the API.
    let forbidden = cluster
        .anonymous_http()
        .get(format!(
            "{}/api/v1/namespaces/{ns}/serviceaccounts",
            cluster.api_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_serves_openid_discovery_naming_itself() {
    let cluster = KubeCluster::shared().await;
    let http = cluster.anonymous_http();
    let response = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            cluster.issuer()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["issuer"], cluster.issuer());
    let jwks_uri = doc["jwks_uri"].as_str().expect("jwks_uri");
    assert_eq!(jwks_uri, format!("{}/openid/v1/jwks", cluster.issuer()));
    assert!(
        doc["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );
    // The document's own jwks_uri is reachable (the API server advertises 127.0.0.1).
    let jwks: JwkSet = http
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks.keys.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_with_a_structural_schema_validates_and_prunes_its_resources() {
    let cluster = KubeCluster::shared().await;
    let client = cluster.client().await;
    let ns = cluster.namespace("crd").await;
    // CRDs are cluster-scoped: the group is made unique per run.
    let group = format!("{ns}.agentid.test");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "colour": {"type": "string", "enum": ["red", "blue"]}
                        }
                    }}
                }}
            }]
        }
    }))
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let name = format!("widgets.{group}");
    poll(
        "the CRD is established",
        Duration::from_secs(30),
        || async {
            let crd = crds.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Widget"));
    let widgets = Api::<DynamicObject>::namespaced_with(client, &ns, &resource);
    let object = |spec: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": "w"}, "spec": spec
        }))
        .unwrap()
    };
    // Creation can race the API server's discovery of the new type for a moment.
    let created = poll("the Widget is created", Duration::from_secs(30), || async {
        widgets
            .create(
                &PostParams::default(),
                &object(json!({"size": 3, "colour": "red", "unknown": true})),
            )
            .await
            .ok()
    })
    .await;
    assert_eq!(created.data["spec"]["size"], 3);
    assert_eq!(created.data["spec"]["colour"], "red");
    assert!(
        created.data["spec"].get("unknown").is_none(),
        "unknown fields are pruned: {:?}",
        created.data
    );
    for bad in [
        json!({"size": 0}),
        json!({"size": "three"}),
        json!({"colour": "red"}),
        json!({"size": 1, "colour": "green"}),
    ] {
        let mut o = object(bad.clone());
        o.metadata.name = Some("bad".into());
        match widgets.create(&PostParams::default(), &o).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{bad}: {e:?}"),
            other => panic!("{bad} was not refused: {other:?}"),
        }
    }
    crds.delete(&name, &Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_becomes_a_pending_pod_through_the_controller_manager() {
    let cluster = KubeCluster::shared().await;
    let client = cluster.client().await;
    let ns = cluster.namespace("deploy").await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "example.test/web:1",
                    "env": [{"name": "MODE", "value": "test"}]
                }]}
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(client, &ns);
    let list = poll(
        "the Deployment's two Pods",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            (list.items.len() == 2).then_some(list.items)
        },
    )
    .await;
    for pod in list {
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
        assert!(owner.name.starts_with("web-"), "{}", owner.name);
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("example.test/web:1")
        );
        assert_eq!(spec.containers[0].env.as_ref().unwrap()[0].name, "MODE");
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        // No scheduler, no kubelet: the Pod is stored and stays Pending.
        assert_eq!(spec.node_name, None);
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_signing_key_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key() {
    // A bed of its own: the API server restarts.
    let mut cluster = KubeCluster::start().await.expect("a bed of its own");
    let ns = cluster.namespace("rotate").await;
    service_account(&cluster, &ns, "workload").await;
    let before = cluster.token_request(&ns, "workload", AUDIENCE, 3600).await;
    let jwks_before = anonymous_jwks(&cluster).await;
    assert_eq!(jwks_before.keys.len(), 1);
    let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();

    let restarted = Instant::now();
    cluster.rotate_signing_key().await.expect("rotation");
    eprintln!(
        "API server restarted in {} ms",
        restarted.elapsed().as_millis()
    );
    assert_eq!(cluster.signing_key_count(), 2);

    let jwks_after = anonymous_jwks(&cluster).await;
    assert_eq!(jwks_after.keys.len(), 2, "the old key is still published");
    verify(&before, &jwks_after, cluster.issuer()).expect("the old token still verifies");
    let after = cluster.token_request(&ns, "workload", AUDIENCE, 3600).await;
    let new_kid = jsonwebtoken::decode_header(&after).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid, "new tokens are signed with the new key");
    verify(&after, &jwks_after, cluster.issuer()).expect("the new token verifies");
    assert!(
        verify(&after, &jwks_before, cluster.issuer()).is_err(),
        "a JWKS stored before the rotation does not verify new tokens"
    );

    // The API server itself accepts both (TokenReview).
    let reviews = Api::<TokenReview>::all(cluster.client().await);
    for token in [&before, &after] {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        let status = reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.authenticated, Some(true), "{:?}", status.error);
    }

    // Dropping a bed stops its processes and removes its files.
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    assert!(!dir.exists());
    assert!(processes_mentioning(&dir).is_empty());
}

/// pids of processes whose command line mentions `needle` (the beds' directories are in their
/// components' arguments).
fn processes_mentioning(needle: &std::path::Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A test process that dies without running any cleanup (abort) leaves no bed process behind:
/// this test runs itself as a child that starts a bed and aborts.
#[test]
fn an_aborted_test_process_leaves_no_bed_processes_behind() {
    const CHILD: &str = "AGENTID_KUBE_BED_ABORT_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let cluster = runtime.block_on(KubeCluster::start()).expect("a bed");
        println!("BED_DIR={}", cluster.dir().display());
        std::process::abort();
    }
    // The test's name as the harness knows it: its module path without the binary's name.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::an_aborted_test_process_leaves_no_bed_processes_behind");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name.as_str(), "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .find_map(|l| l.split_once("BED_DIR=").map(|(_, dir)| dir.trim()))
        .unwrap_or_else(|| {
            panic!(
                "the child printed no bed: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(!output.status.success(), "the child aborted");
    let dir = std::path::PathBuf::from(dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes of the aborted child's bed still run: {:?}",
            processes_mentioning(&dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its files stay until the next bed starts, which sweeps them.
    assert!(dir.exists());
    agentid_testkit::kube::sweep_stale_dirs();
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reaches_the_bed_with_its_kubeconfig() {
    let cluster = KubeCluster::shared().await;
    let ns = cluster.namespace("kubectl").await;
    let output = cluster
        .kubectl()
        .args(["get", "serviceaccount", "default", "-n", &ns, "-o", "name"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "serviceaccount/default"
    );
    let version = cluster
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .unwrap();
    let version: Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.20.2");
}
