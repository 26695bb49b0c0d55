//! `deploy/` applied for real: `kubectl apply -k` (server-side, a real create) against the test
//! bed's kube-apiserver v1.20.2 with kube-controller-manager (testkit's `KubeCluster`, no
//! emulation), into a namespace of the test's own.
//!
//! What this proves on top of `deploy_manifests.rs` (which checks the manifests against each
//! other on disk): the API server accepts every object and stores what the manifests say; the
//! controllers turn the Deployments and the StatefulSet into Pods whose spec is the template's
//! (env, projected token volume, mounts, probes); every ConfigMap, Secret and key a Pod refers to
//! exists as stored; the Service DNS names in the stored configuration name stored Services whose
//! ports lead to container ports of stored Pods; and a token the API server mints for the agent's
//! stored service account, with the stored projected volume's audience, has exactly the subject
//! and audience of the tenant file's federated credential and verifies against the JWKS exported
//! the way the README says.
//!
//! Namespace: `deploy/` names its namespace (`agentid`) in the kustomization and in the Service
//! DNS names and the federated credential's subject it embeds. The test applies it through a
//! generated overlay that sets the test's namespace (kustomize renames the Namespace object too),
//! and compares the embedded names with `agentid` mapped to that namespace.
//!
//! Kubernetes 1.20 predates native sidecars, and the agent Deployment's token sidecar is one (an
//! init container with `restartPolicy: Always`, with probes). 1.20 refuses that Deployment:
//! server-side apply because `restartPolicy` is not in its schema, a plain create because, with
//! the field pruned, probes on an init container are invalid. The test asserts exactly that
//! refusal, then applies the agent Deployment in its pre-1.29 form ([`classic_sidecar`]: the
//! same container moved to `containers`) to check everything else about the agent pod against
//! the real API server and controllers; `deploy_types.rs` checks the native-sidecar fields
//! against current `k8s-openapi` types instead.
//!
//! Left unchecked: what only a kubelet, a scheduler or a newer API server does — the native
//! sidecar's validation by a 1.29+ API server (the types accept any string as `restartPolicy`),
//! its start ordering and restarts, probes answering, images existing, PodSecurity `restricted`
//! enforcement of the namespace label (admission from 1.23), NetworkPolicy enforcement (no network
//! plugin), PVC binding (no provisioner); and the cluster issuer: `deploy/tenant.yaml` names
//! kubeadm's `https://kubernetes.default.svc.cluster.local`, the bed's issuer is its own URL.

use crate::deploy_support::{id, missing_from, repo_root, yaml_docs};
use agentid_testkit::KubeCluster;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The namespace `deploy/` is written for.
const MANIFEST_NAMESPACE: &str = "agentid";
const DNS_SUFFIX: &str = ".agentid.svc.cluster.local";
/// The one object of `deploy/` kube-apiserver 1.20 refuses, and what its server-side apply says.
const AGENT: &str = "Deployment/agentid-agent";
const REFUSED_BY_1_20_APPLY: &str = r#".spec.template.spec.initContainers[name="agentid-sidecar"].restartPolicy: field not declared in schema"#;
/// What its validation says once `restartPolicy` is pruned (a plain create).
const REFUSED_BY_1_20_CREATE: &str = "must not be set for init containers";

/// A manifest as the API server stores it: `stringData` becomes base64 `data`.
fn as_stored(mut v: Value) -> Value {
    if v["kind"] == "Secret"
        && let Some(Value::Object(string_data)) =
            v.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        let data = v["data"].as_object().cloned().unwrap_or_default();
        let mut data = data;
        for (k, s) in string_data {
            data.insert(
                k,
                Value::String(STANDARD.encode(s.as_str().unwrap_or_default())),
            );
        }
        v["data"] = Value::Object(data);
    }
    v
}

/// The agent Deployment as it would be written before native sidecars (Kubernetes < 1.29): the
/// sidecar init container, without `restartPolicy`, becomes the first regular container.
fn classic_sidecar(deployment: &Value) -> Value {
    let mut d = deployment.clone();
    let spec = &mut d["spec"]["template"]["spec"];
    let mut init = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        init.len(),
        1,
        "the agent pod has one init container, the sidecar"
    );
    let mut sidecar = init.remove(0);
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    sidecar.as_object_mut().unwrap().remove("restartPolicy");
    spec.as_object_mut().unwrap().remove("initContainers");
    spec["containers"]
        .as_array_mut()
        .unwrap()
        .insert(0, sidecar);
    d
}

/// The spec a workload's Pod should have: its template's, and for a StatefulSet the volumes of
/// its claims (`CLAIM-POD`), which the controller puts first.
fn expected_pod_spec(workload: &Value, pod_name: &str) -> Value {
    let mut spec = workload["spec"]["template"]["spec"].clone();
    let claims: Vec<Value> = workload["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c["metadata"]["name"].as_str().unwrap();
            json!({"name": name, "persistentVolumeClaim": {"claimName": format!("{name}-{pod_name}")}})
        })
        .collect();
    if !claims.is_empty() {
        let mut volumes = claims;
        volumes.extend(spec["volumes"].as_array().cloned().unwrap_or_default());
        spec["volumes"] = Value::Array(volumes);
    }
    spec
}

struct Kubectl<'a> {
    cluster: &'a KubeCluster,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> String {
        let output = self
            .cluster
            .kubectl()
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            output.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 from kubectl")
    }
}

/// The objects `deploy/` refers to but leaves to the operator (README "Kubernetes", steps 2 and
/// 3), made the way the README makes them.
fn create_external_objects(kubectl: &Kubectl, ns: &str, dir: &Path) {
    let cert = agentid_testkit::certs::ClientCert::generate("agentid-sts");
    std::fs::write(dir.join("tls.crt"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &cert.key_pem).unwrap();
    std::fs::write(dir.join("ca.crt"), &cert.cert_pem).unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    kubectl.run(&[
        "-n",
        ns,
        "create",
        "secret",
        "tls",
        "agentid-sts-tls",
        &format!("--cert={}", path("tls.crt")),
        &format!("--key={}", path("tls.key")),
    ]);
    kubectl.run(&[
        "-n",
        ns,
        "create",
        "configmap",
        "agentid-sts-ca",
        &format!("--from-file={}", path("ca.crt")),
    ]);
    let jwks = kubectl.run(&["get", "--raw", "/openid/v1/jwks"]);
    std::fs::write(dir.join("cluster-jwks.json"), jwks).unwrap();
    kubectl.run(&[
        "-n",
        ns,
        "create",
        "configmap",
        "agentid-cluster-jwks",
        &format!("--from-file={}", path("cluster-jwks.json")),
    ]);
}

/// An overlay of `deploy/` that only changes the namespace, in `dir`.
fn overlay(dir: &Path, ns: &str) -> PathBuf {
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    let deploy = std::fs::canonicalize(repo_root().join("deploy")).unwrap();
    // kustomize wants the base as a path relative to the overlay.
    let up = overlay
        .canonicalize()
        .unwrap()
        .components()
        .skip(1)
        .map(|_| "..")
        .collect::<Vec<_>>()
        .join("/");
    let base = format!("{up}{}", deploy.display());
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             namespace: {ns}\nresources:\n  - {base}\n"
        ),
    )
    .unwrap();
    overlay
}

async fn pods_of(pods: &Api<Pod>, workload: &Value) -> Vec<Value> {
    let selector = workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    let replicas = workload["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list pods");
        if list.items.len() == replicas {
            return list
                .items
                .into_iter()
                .map(|p| serde_json::to_value(p).unwrap())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{}: {} of {replicas} Pods after 90 s",
            id(workload),
            list.items.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every ConfigMap, Secret and key a Pod refers to (volumes, env, envFrom) exists as stored.
fn references_resolve(pod: &Value, stored: &BTreeMap<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |kind: &str, name: &str, key: Option<&str>, what: &str| {
        let Some(object) = stored.get(&format!("{kind}/{name}")) else {
            problems.push(format!("{what}: {kind} {name} is not stored"));
            return;
        };
        if let Some(key) = key
            && object["data"].get(key).is_none()
        {
            problems.push(format!("{what}: {kind} {name} has no key {key}"));
        }
    };
    let spec = &pod["spec"];
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let vname = volume["name"].as_str().unwrap_or("?");
        let sources: Vec<(&str, &Value)> = if let Some(cm) = volume.get("configMap") {
            vec![("ConfigMap", cm)]
        } else if let Some(secret) = volume.get("secret") {
            vec![("Secret", secret)]
        } else {
            volume["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    s.get("configMap")
                        .map(|c| ("ConfigMap", c))
                        .or_else(|| s.get("secret").map(|c| ("Secret", c)))
                })
                .collect()
        };
        for (kind, source) in sources {
            let name = source["name"]
                .as_str()
                .or(source["secretName"].as_str())
                .unwrap_or("?");
            let items: Vec<&str> = source["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["key"].as_str())
                .collect();
            if items.is_empty() {
                need(kind, name, None, &format!("volume {vname}"));
            }
            for key in items {
                need(kind, name, Some(key), &format!("volume {vname}"));
            }
        }
    }
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten();
    for c in containers {
        let cname = c["name"].as_str().unwrap_or("?");
        for from in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = from["configMapRef"]["name"].as_str() {
                need("ConfigMap", name, None, &format!("{cname} envFrom"));
            }
            if let Some(name) = from["secretRef"]["name"].as_str() {
                need("Secret", name, None, &format!("{cname} envFrom"));
            }
        }
        for env in c["env"].as_array().into_iter().flatten() {
            let from = &env["valueFrom"];
            for (kind, field) in [("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")] {
                if let (Some(name), Some(key)) =
                    (from[field]["name"].as_str(), from[field]["key"].as_str())
                {
                    need(kind, name, Some(key), &format!("{cname} env"));
                }
            }
        }
    }
    problems
}

/// Service DNS names (`SERVICE.agentid.svc.cluster.local[:port]`) in `text`, with the port the
/// URL names or its scheme implies (none for a bare name).
fn service_names(text: &str) -> Vec<(String, Option<u16>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(DNS_SUFFIX) {
        let before = &rest[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(0, |i| i + 1);
        let service = before[start..].to_string();
        let after = &rest[at + DNS_SUFFIX.len()..];
        let digits: String = after
            .strip_prefix(':')
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let port = digits.parse().ok().or_else(|| {
            let scheme = &before[..start];
            if scheme.ends_with("https://") {
                Some(443)
            } else if scheme.ends_with("http://") {
                Some(80)
            } else {
                None
            }
        });
        found.push((service, port));
        rest = after;
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_is_accepted_by_a_real_api_server_and_becomes_the_pods_it_describes() {
    let cluster = KubeCluster::shared().await;
    let ns = cluster.namespace("agentid").await;
    let kubectl = Kubectl { cluster };
    let dir = tempfile::tempdir().unwrap();
    create_external_objects(&kubectl, &ns, dir.path());
    let overlay = overlay(dir.path(), &ns).display().to_string();

    let rendered = render(&kubectl, &overlay, &ns);
    let applied = apply(cluster, &kubectl, &ns, dir.path(), &overlay, rendered).await;
    let stored = read_back(&kubectl, &ns, &applied);
    let pods = workload_pods(cluster, &ns, &applied, &stored).await;
    statefulset_claim(&kubectl, &ns, &pods);
    probes_name_container_ports(&pods);
    agent_identity(cluster, &ns, &pods, &stored).await;
    service_names_resolve(&pods, &stored);
}

/// What kustomize makes of the overlay (the same kubectl applies it).
fn render(kubectl: &Kubectl, overlay: &str, ns: &str) -> Vec<Value> {
    let rendered = yaml_docs(&kubectl.run(&["kustomize", overlay]), "kubectl kustomize");
    assert!(rendered.len() >= 20, "{} objects", rendered.len());
    for object in &rendered {
        let expected_ns = if object["kind"] == "Namespace" {
            &object["metadata"]["name"]
        } else {
            &object["metadata"]["namespace"]
        };
        assert_eq!(
            expected_ns,
            &json!(ns),
            "{} is not in the test namespace",
            id(object)
        );
    }

    rendered
}

/// Applies the overlay server-side; returns the objects as applied, the agent Deployment in its
/// pre-1.29 form.
async fn apply(
    cluster: &KubeCluster,
    kubectl: &Kubectl<'_>,
    ns: &str,
    dir: &Path,
    overlay: &str,
    rendered: Vec<Value>,
) -> Vec<Value> {
    // The real thing: a server-side apply, no dry run. kubectl's client-side schema check is
    // off: it reads 1.20's OpenAPI schema, which predates native sidecars, and would refuse the
    // whole directory before sending anything; the API server checks every object itself.
    let output = cluster
        .kubectl()
        .args(["apply", "-k", overlay, "--server-side"])
        .args(["--field-manager=agentid-deploy-test", "--validate=false"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error")).collect();
    assert_eq!(
        errors,
        [format!(
            "Error from server: failed to create typed patch object: {REFUSED_BY_1_20_APPLY}"
        )],
        "only the native sidecar is refused"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Every other object is applied (and read back below).
    let applied = stdout
        .lines()
        .filter(|l| l.ends_with(" serverside-applied"))
        .count();
    assert_eq!(applied, rendered.len() - 1, "{stdout}");

    // The agent Deployment as written is invalid for 1.20 however it is sent.
    let agent_as_written = rendered.iter().find(|o| id(o) == AGENT).unwrap();
    let deployments =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(cluster.client().await, ns);
    match deployments
        .create(
            &Default::default(),
            &serde_json::from_value(agent_as_written.clone()).unwrap(),
        )
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(e.message.contains(REFUSED_BY_1_20_CREATE), "{}", e.message);
        }
        other => panic!("1.20 accepted a native sidecar: {other:?}"),
    }
    // Its pre-1.29 form is accepted, and stands for it below.
    let agent_classic = classic_sidecar(agent_as_written);
    let classic_file = dir.join("agent-classic.json");
    std::fs::write(&classic_file, agent_classic.to_string()).unwrap();
    kubectl.run(&[
        "apply",
        "--server-side",
        "--field-manager=agentid-deploy-test",
        "-f",
        &classic_file.display().to_string(),
    ]);
    let rendered: Vec<Value> = rendered
        .into_iter()
        .map(|o| {
            if id(&o) == AGENT {
                agent_classic.clone()
            } else {
                o
            }
        })
        .collect();

    rendered
}

/// What the API server stored (and the three objects made outside `deploy/`), checked to hold
/// everything the manifests say.
fn read_back(kubectl: &Kubectl, ns: &str, rendered: &[Value]) -> BTreeMap<String, Value> {
    // What the API server stored holds everything the manifests say.
    let mut stored = BTreeMap::new();
    for (kind, name) in rendered
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .chain([
            ("Secret", "agentid-sts-tls"),
            ("ConfigMap", "agentid-sts-ca"),
            ("ConfigMap", "agentid-cluster-jwks"),
        ])
    {
        let object: Value =
            serde_json::from_str(&kubectl.run(&["-n", ns, "get", kind, name, "-o", "json"]))
                .unwrap();
        stored.insert(format!("{kind}/{name}"), object);
    }
    for object in rendered {
        let key = id(object);
        let mut missing = Vec::new();
        missing_from(&as_stored(object.clone()), &stored[&key], "", &mut missing);
        assert!(
            missing.is_empty(),
            "{key} is not stored as written: {missing:#?}"
        );
    }

    stored
}

/// The controllers make the Pods, and each Pod's spec is its template's.
async fn workload_pods(
    cluster: &KubeCluster,
    ns: &str,
    rendered: &[Value],
    stored: &BTreeMap<String, Value>,
) -> Vec<(String, Value)> {
    let pods = Api::<Pod>::namespaced(cluster.client().await, ns);
    let mut all_pods = Vec::new();
    for workload in rendered
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
    {
        let key = id(workload);
        let template = &workload["spec"]["template"];
        for pod in pods_of(&pods, workload).await {
            let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
            let mut missing = Vec::new();
            missing_from(
                &expected_pod_spec(workload, &pod_name),
                &pod["spec"],
                "spec.template.spec",
                &mut missing,
            );
            missing_from(
                &template["metadata"]["labels"],
                &pod["metadata"]["labels"],
                "spec.template.metadata.labels",
                &mut missing,
            );
            assert!(
                missing.is_empty(),
                "Pod {pod_name} of {key} is not its template: {missing:#?}"
            );
            let owner = &pod["metadata"]["ownerReferences"][0];
            let owner_kind = if workload["kind"] == "Deployment" {
                "ReplicaSet"
            } else {
                "StatefulSet"
            };
            assert_eq!(owner["kind"], owner_kind, "{pod_name}");
            assert!(
                owner["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(workload["metadata"]["name"].as_str().unwrap())
            );
            assert_eq!(pod["status"]["phase"], "Pending", "no kubelet here");
            let problems = references_resolve(&pod, stored);
            assert!(problems.is_empty(), "Pod {pod_name}: {problems:?}");
            all_pods.push((key.clone(), pod));
        }
    }
    let count = |k: &str| all_pods.iter().filter(|(key, _)| key == k).count();
    assert_eq!(count("Deployment/agentid-sts"), 2);
    assert_eq!(count("Deployment/agentid-gateway"), 1);
    assert_eq!(count("Deployment/agentid-agent"), 1);
    assert_eq!(count("StatefulSet/agentid-postgres"), 1);

    all_pods
}

/// The StatefulSet's claim was made from its template and is what the Pod mounts.
fn statefulset_claim(kubectl: &Kubectl, ns: &str, all_pods: &[(String, Value)]) {
    let postgres = pod_of(all_pods, "StatefulSet/agentid-postgres");
    assert_eq!(postgres["metadata"]["name"], "agentid-postgres-0");
    let claim: Value = serde_json::from_str(&kubectl.run(&[
        "-n",
        ns,
        "get",
        "pvc",
        "data-agentid-postgres-0",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "5Gi");
    let data_volume = postgres["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .expect("the claim's volume");
    assert_eq!(
        data_volume["persistentVolumeClaim"]["claimName"],
        "data-agentid-postgres-0"
    );
}

/// Probes name ports the stored Pods' containers have.
fn probes_name_container_ports(all_pods: &[(String, Value)]) {
    for (key, pod) in all_pods {
        let containers = pod["spec"]["containers"].as_array().unwrap().iter().chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        );
        for c in containers {
            let ports: BTreeSet<&str> = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let p = &c[probe];
                let port = p["httpGet"]["port"]
                    .as_str()
                    .or(p["tcpSocket"]["port"].as_str());
                if let Some(port) = port {
                    assert!(
                        ports.contains(port),
                        "{key} {} {probe}: port {port}",
                        c["name"]
                    );
                }
            }
        }
    }
}

/// The agent pod's identity: the projected token the sidecar reads; the API server's own token
/// for that stored service account, with that stored audience, is what the tenant file's
/// federated credential accepts, and verifies against the JWKS exported as the README says.
async fn agent_identity(
    cluster: &KubeCluster,
    ns: &str,
    all_pods: &[(String, Value)],
    stored: &BTreeMap<String, Value>,
) {
    let agent = pod_of(all_pods, AGENT);
    let volume = agent["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "azure-identity-token")
        .expect("the projected token volume");
    let projected = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(projected["audience"], "api://AzureADTokenExchange");
    assert_eq!(projected["expirationSeconds"], 3600);
    let sidecar = agent["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agentid-sidecar")
        .expect("the token sidecar");
    let mount = sidecar["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "azure-identity-token")
        .expect("the sidecar mounts the token");
    let sidecar_env = &stored["ConfigMap/agentid-agent-sidecar"]["data"];
    assert_eq!(
        sidecar_env["AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath"]
            .as_str()
            .unwrap(),
        format!(
            "{}/{}",
            mount["mountPath"].as_str().unwrap(),
            projected["path"].as_str().unwrap()
        ),
        "the sidecar reads the token where it is projected"
    );

    let service_account = agent["spec"]["serviceAccountName"].as_str().unwrap();
    let token = cluster
        .token_request(
            ns,
            service_account,
            projected["audience"].as_str().unwrap(),
            projected["expirationSeconds"].as_i64().unwrap(),
        )
        .await;
    let claims = agentid_testkit::claims(&token);
    let tenant: Value = serde_yaml_ng::from_str(
        stored["ConfigMap/agentid-tenant"]["data"]["tenant.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let credentials: Vec<&Value> = tenant["blueprints"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["federatedCredentials"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(credentials.len(), 1);
    let credential = credentials[0];
    let manifest_prefix = format!("system:serviceaccount:{MANIFEST_NAMESPACE}:");
    let subject = credential["subject"].as_str().unwrap();
    assert_eq!(
        claims["sub"].as_str().unwrap(),
        subject.replacen(&manifest_prefix, &format!("system:serviceaccount:{ns}:"), 1),
        "the federated credential's subject is the agent pod's service account"
    );
    let audiences = credential["audiences"].as_array().unwrap();
    assert_eq!(claims["aud"], json!(audiences), "audiences");
    let trusted = tenant["trustedIssuers"].as_array().unwrap();
    assert_eq!(trusted.len(), 1);
    assert_eq!(trusted[0]["issuer"], credential["issuer"]);
    assert_eq!(claims["iss"], cluster.issuer());
    // The stored JWKS the tenant file names is the projected ConfigMap the README makes.
    let jwks_file = trusted[0]["jwks"]["file"].as_str().unwrap();
    let sts = pod_of(all_pods, "Deployment/agentid-sts");
    let tenant_sources = sts["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tenant")
        .unwrap()["projected"]["sources"]
        .clone();
    assert!(
        tenant_sources.as_array().unwrap().iter().any(|s| {
            s["configMap"]["name"] == "agentid-cluster-jwks"
                && s["configMap"]["items"][0]["path"] == jwks_file.trim_start_matches("./")
        }),
        "{jwks_file} is projected next to tenant.yaml: {tenant_sources}"
    );
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(
        stored["ConfigMap/agentid-cluster-jwks"]["data"]["cluster-jwks.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).expect("kid in the stored JWKS"))
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[audiences[0].as_str().unwrap()]);
    validation.set_issuer(&[cluster.issuer()]);
    jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .expect("verifies with the stored JWKS");
}

/// Service DNS names in the stored configuration (ConfigMaps, command lines, env) name stored
/// Services whose port leads to a named container port of a Pod they select. The names say
/// `agentid` (the manifests' namespace); the Services are looked up in the test's.
fn service_names_resolve(all_pods: &[(String, Value)], stored: &BTreeMap<String, Value>) {
    let mut texts: Vec<String> = stored
        .values()
        .filter(|o| o["kind"] == "ConfigMap")
        .flat_map(|o| o["data"].as_object().into_iter().flatten())
        .filter_map(|(_, v)| v.as_str().map(str::to_string))
        .collect();
    for (_, pod) in all_pods {
        texts.push(pod["spec"].to_string());
    }
    let mut checked = BTreeSet::new();
    for text in &texts {
        for (service, port) in service_names(text) {
            if !checked.insert((service.clone(), port)) {
                continue;
            }
            let svc = stored
                .get(&format!("Service/{service}"))
                .unwrap_or_else(|| panic!("{service}{DNS_SUFFIX} names no stored Service"));
            let Some(port) = port else { continue };
            let svc_port = svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["port"] == port)
                .unwrap_or_else(|| panic!("Service {service} has no port {port}"));
            let selector = svc["spec"]["selector"].as_object().unwrap();
            let backends: Vec<&Value> = all_pods
                .iter()
                .map(|(_, p)| p)
                .filter(|p| {
                    selector
                        .iter()
                        .all(|(k, v)| &p["metadata"]["labels"][k] == v)
                })
                .collect();
            assert!(!backends.is_empty(), "Service {service} selects no Pod");
            for pod in backends {
                let target = &svc_port["targetPort"];
                let has = pod["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .any(|p| &p["name"] == target || &p["containerPort"] == target);
                assert!(
                    has,
                    "Service {service} port {port} → {target}: not a container port"
                );
            }
        }
    }
    for expected in ["agentid-sts", "agentid-gateway", "agentid-postgres"] {
        assert!(
            checked.iter().any(|(s, _)| s == expected),
            "no reference to {expected} was found: {checked:?}"
        );
    }
}

/// The first Pod of a workload (`Kind/name`).
fn pod_of<'a>(all_pods: &'a [(String, Value)], workload: &str) -> &'a Value {
    &all_pods
        .iter()
        .find(|(k, _)| k == workload)
        .unwrap_or_else(|| panic!("no Pod of {workload}"))
        .1
}
