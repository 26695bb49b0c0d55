//! The operator's test bed: the real kube-apiserver (testkit), an in-process STS, and operator
//! replicas running in this process whose webhooks the API server calls over https.

#![allow(dead_code)]

use agentid_graphclient::GraphClient;
use agentid_operator::{Config, Running, WebhookEndpoint};
use agentid_testkit::{Db, KubeCluster, TestSts};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};

pub const DEMO: &str = include_str!("../../../../../examples/demo-tenant.yaml");
pub const ADMIN: &str = "alice@contoso.test";
pub const PASSWORD: &str = "correct-horse-battery";
/// The label that scopes one test's webhooks to its namespace (the bed is shared).
pub const SCOPE_LABEL: &str = "agentid.dev/test-operator";

pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTID_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `f` until it returns Some, or panics after `timeout` saying what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    agentid_testkit::poll::eventually(timeout, what, f).await
}

/// The CRDs, as `agentid operator crds` prints them, applied and established.
pub async fn install_crds(client: &kube::Client) {
    use agentid_operator::crd::{AgentBlueprint, AgentIdentity, DirectoryConnection};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in [
        DirectoryConnection::crd(),
        AgentBlueprint::crd(),
        AgentIdentity::crd(),
    ] {
        let name = crd.metadata.name.clone().unwrap();
        // A create, not server-side apply: kube-apiserver 1.20 refuses server-side apply of a
        // v1 CRD ("per-version schemas may not all be set to identical values").
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create CRD {name}: {e}"),
        }
        eventually(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || async {
                let c = api.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

pub struct Bed {
    pub kube: KubeCluster,
    pub client: kube::Client,
    pub sts: TestSts,
    pub ns: String,
    pub graph: GraphClient,
}

impl Bed {
    /// A namespace of the test's own with a DirectoryConnection `directory` to a fresh STS.
    pub async fn start(prefix: &str) -> Bed {
        logs();
        // A control plane of the test's own: the operator's webhook configurations are
        // cluster-scoped, so two tests that register them must not share a cluster.
        let kube = KubeCluster::start().await.expect("a Kubernetes test bed");
        let client = kube.client().await;
        // The operator registers the cluster issuer: a policy change its sign-in client must be
        // consented for (docs/operator.md §2.1).
        let tenant = DEMO.replace(
            "AgentIdUser.ReadWrite.All]",
            "AgentIdUser.ReadWrite.All, Policy.ReadWrite.ApplicationConfiguration]",
        );
        assert_ne!(tenant, DEMO, "the demo tenant's admin grant changed shape");
        let sts = TestSts::start(Db::Sqlite, &tenant).await;
        install_crds(&client).await;
        let ns = kube.namespace(prefix).await;
        Api::<Namespace>::all(client.clone())
            .patch(
                &ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {SCOPE_LABEL: ns}}})),
            )
            .await
            .expect("label the namespace");
        let ca = std::fs::read_to_string(sts.ca_file()).expect("the STS CA");
        let bed = Bed {
            kube,
            graph: GraphClient::new(&sts.authority(), None, Some(ca.as_bytes())).expect("client"),
            client,
            sts,
            ns,
        };
        bed.create::<Secret>(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "directory-admin"},
            "stringData": {"username": ADMIN, "password": PASSWORD}}),
        )
        .await;
        bed.create::<ConfigMap>(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "directory-ca"},
            "data": {"ca.crt": ca}}),
        )
        .await;
        bed.apply_yaml(&format!(
            r#"
apiVersion: agentid.dev/v1alpha1
kind: DirectoryConnection
metadata: {{name: directory}}
spec:
  authority: {}
  caConfigMap: {{name: directory-ca, key: ca.crt}}
  credential: {{kind: Password, secretName: directory-admin}}
"#,
            bed.sts.authority()
        ))
        .await;
        bed
    }

    pub fn config(&self, identity: &str) -> Config {
        Config {
            watch_namespace: Some(self.ns.clone()),
            operator_namespace: self.ns.clone(),
            identity: identity.into(),
            instance: format!("op-{}", self.ns),
            lease_duration: Duration::from_secs(4),
            resync: Duration::from_secs(2),
            sidecar_image: "ghcr.io/agentid/agentid:test".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            endpoint: WebhookEndpoint::Listener,
            namespace_label: Some((SCOPE_LABEL.into(), self.ns.clone())),
            cluster_ca_pem: Some(self.kube.ca_pem().to_string()),
        }
    }

    pub async fn operator(&self, identity: &str) -> Running {
        agentid_operator::start(self.client.clone(), self.config(identity))
            .await
            .expect("the operator starts")
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn create<K>(&self, v: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        self.try_create(v).await.expect("create")
    }

    pub async fn try_create<K>(&self, v: Value) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(v).expect("a valid object");
        self.api::<K>().create(&PostParams::default(), &obj).await
    }

    /// Creates a custom resource from YAML (as `kubectl create` would).
    pub async fn apply_yaml(&self, yaml: &str) -> Value {
        self.try_apply_yaml(yaml).await.expect("create")
    }

    pub async fn try_apply_yaml(&self, yaml: &str) -> Result<Value, kube::Error> {
        let v: Value = serde_yaml_ng::from_str(yaml).expect("YAML");
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let api = self.dynamic(&kind);
        let obj: kube::core::DynamicObject = serde_json::from_value(v).expect("an object");
        api.create(&PostParams::default(), &obj)
            .await
            .map(|o| serde_json::to_value(o).unwrap())
    }

    pub fn dynamic(&self, kind: &str) -> Api<kube::core::DynamicObject> {
        let plural = match kind {
            "DirectoryConnection" => "directoryconnections",
            "AgentBlueprint" => "agentblueprints",
            "AgentIdentity" => "agentidentities",
            k => panic!("no plural for {k}"),
        };
        let ar = kube::core::ApiResource {
            group: "agentid.dev".into(),
            version: "v1alpha1".into(),
            api_version: "agentid.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        Api::namespaced_with(self.client.clone(), &self.ns, &ar)
    }

    /// A resource's stored form, or None when it is gone.
    pub async fn get(&self, kind: &str, name: &str) -> Option<Value> {
        self.dynamic(kind)
            .get_opt(name)
            .await
            .expect("read")
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Waits for the resource's `Ready` condition to be True; returns its status.
    pub async fn ready(&self, kind: &str, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let v = self.get(kind, name).await.unwrap_or_default();
            let ready = v["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if ready {
                return v["status"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{kind} {name} not Ready: {}",
                v["status"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn service_account(&self, name: &str) {
        self.create::<ServiceAccount>(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
        )
        .await;
    }

    /// The operator's view of the directory: the administrator's token.
    pub async fn admin_token(&self) -> String {
        self.graph
            .access_token(&[
                ("grant_type", "password"),
                ("client_id", agentid_claims::wellknown::GRAPH_CLI_APP_ID),
                ("username", ADMIN),
                ("password", PASSWORD),
                ("scope", &agentid_graphclient::admin_scope(&[])),
            ])
            .await
            .expect("admin token")
    }

    /// The blueprint's own token, from the Secret the operator keeps.
    pub async fn blueprint_token(&self, secret: &str) -> String {
        let s = self
            .api::<Secret>()
            .get(secret)
            .await
            .expect("the blueprint secret");
        let data = s.data.unwrap();
        let get = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        self.graph
            .blueprint_token(&get("clientId"), &get("clientSecret"))
            .await
            .expect("blueprint token")
    }
}
