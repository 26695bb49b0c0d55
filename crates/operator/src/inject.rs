//! The mutating webhook for Pods (docs/operator.md §4): a Pod bound to an AgentIdentity of its
//! own namespace — by the `agentid.dev/agent` label or annotation on the Pod, or the annotation
//! on its service account — gets the token sidecar configured for that agent only, the
//! projected token volume where Azure workload identity puts it, and the `AZURE_*` environment
//! of Azure workload identity. Injection is computed from the Pod with any earlier injection
//! removed, so running it twice (reinvocation) changes nothing.

use crate::AdmissionContext as State;
use crate::crd::{AgentBlueprint, AgentIdentity, DirectoryConnection, is_true};
use crate::directory::{AZURE_TOKEN_DIR, AZURE_TOKEN_FILE};
use crate::model;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::{Value, json};

/// The label or annotation binding a Pod (or a service account's Pods) to an agent.
pub const AGENT_KEY: &str = "agentid.dev/agent";
/// Set on injected Pods: the agent identity's id.
pub const INJECTED_KEY: &str = "agentid.dev/injected-agent-id";
pub const SIDECAR_NAME: &str = "agentid-sidecar";
pub const TOKEN_VOLUME: &str = "azure-identity-token";
pub const CA_VOLUME: &str = "agentid-directory-ca";
pub const CA_DIR: &str = "/etc/agentid/directory-ca";
/// Where the injected sidecar listens, inside the Pod.
pub const SIDECAR_URL: &str = "http://127.0.0.1:5000";
/// What Azure workload identity's tokens are for.
pub const AUDIENCE: &str = "api://AzureADTokenExchange";
/// Environment variables the injection owns in the application's containers.
const APP_ENV: [&str; 6] = [
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AGENTID_SIDECAR_URL",
    "AGENTID_AGENT_ID",
];

/// Native sidecars (init containers with `restartPolicy: Always`) exist from Kubernetes 1.29.
pub async fn supports_native_sidecars(kube: &kube::Client) -> bool {
    match kube.apiserver_version().await {
        Ok(v) => {
            let minor: u32 = v
                .minor
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            v.major == "1" && minor >= 29
        }
        Err(_) => false,
    }
}

/// Everything the injection needs, looked up and checked.
pub struct Binding {
    pub agent_id: String,
    pub blueprint_app_id: String,
    pub conn: model::Connection,
    pub agent: model::Agent,
}

/// Why a Pod is refused; the message is what `kubectl` shows.
type Refusal = String;

/// The binding named by the Pod or its service account, if any.
async fn named_agent(
    state: &State,
    pod: &Value,
    namespace: &str,
    service_account: &str,
) -> Result<Option<String>, Refusal> {
    let meta = &pod["metadata"];
    if let Some(v) = meta["labels"][AGENT_KEY]
        .as_str()
        .or(meta["annotations"][AGENT_KEY].as_str())
    {
        return Ok(Some(v.to_string()));
    }
    let sa = Api::<ServiceAccount>::namespaced(state.kube.clone(), namespace)
        .get_opt(service_account)
        .await
        .map_err(|e| format!("cannot read service account {namespace}/{service_account}: {e}"))?;
    Ok(sa
        .and_then(|s| s.metadata.annotations)
        .and_then(|a| a.get(AGENT_KEY).cloned()))
}

async fn binding(
    state: &State,
    namespace: &str,
    named: &str,
    service_account: &str,
) -> Result<Binding, Refusal> {
    // `NAME` or `NAMESPACE/NAME` (an annotation can name another namespace; it is refused).
    let (agent_ns, agent_name) = named.split_once('/').unwrap_or((namespace, named));
    if agent_ns != namespace {
        return Err(format!(
            "{AGENT_KEY}={named}: the agent is in namespace {agent_ns}; a Pod may only act as an AgentIdentity of its own namespace ({namespace})"
        ));
    }
    if !model::is_dns_name(agent_name) {
        return Err(format!(
            "{AGENT_KEY}={named} does not name an AgentIdentity"
        ));
    }
    let kube = &state.kube;
    let agent = Api::<AgentIdentity>::namespaced(kube.clone(), namespace)
        .get_opt(agent_name)
        .await
        .map_err(|e| format!("cannot read AgentIdentity {namespace}/{agent_name}: {e}"))?
        .ok_or_else(|| format!("AgentIdentity {namespace}/{agent_name} does not exist"))?;
    let spec = model::agent(&agent.spec).map_err(|e| format!("AgentIdentity {agent_name}: {e}"))?;
    let status = agent.status.clone().unwrap_or_default();
    let agent_id = status
        .agent_id
        .clone()
        .filter(|_| is_true(&status.conditions, "DirectorySynced"))
        .ok_or_else(|| format!("AgentIdentity {namespace}/{agent_name} is not in the directory yet (see its status)"))?;
    let bp = Api::<AgentBlueprint>::namespaced(kube.clone(), namespace)
        .get_opt(&spec.blueprint)
        .await
        .map_err(|e| format!("cannot read AgentBlueprint {}: {e}", spec.blueprint))?
        .ok_or_else(|| {
            format!(
                "AgentBlueprint {namespace}/{} does not exist",
                spec.blueprint
            )
        })?;
    if !bp
        .spec
        .service_accounts
        .iter()
        .any(|s| s == service_account)
    {
        return Err(format!(
            "service account {service_account} is not allowed to act as AgentBlueprint {} (its spec.serviceAccounts: [{}]), so it cannot run agent {agent_name}",
            spec.blueprint,
            bp.spec.service_accounts.join(", ")
        ));
    }
    let blueprint_app_id = bp
        .status
        .as_ref()
        .and_then(|s| s.app_id.clone())
        .ok_or_else(|| {
            format!(
                "AgentBlueprint {} is not in the directory yet",
                spec.blueprint
            )
        })?;
    let dc = Api::<DirectoryConnection>::namespaced(kube.clone(), namespace)
        .get_opt(&bp.spec.directory_ref)
        .await
        .map_err(|e| {
            format!(
                "cannot read DirectoryConnection {}: {e}",
                bp.spec.directory_ref
            )
        })?
        .ok_or_else(|| {
            format!(
                "DirectoryConnection {namespace}/{} does not exist",
                bp.spec.directory_ref
            )
        })?;
    let conn = model::connection(&dc.spec)
        .map_err(|e| format!("DirectoryConnection {}: {e}", bp.spec.directory_ref))?;
    Ok(Binding {
        agent_id,
        blueprint_app_id,
        conn,
        agent: spec,
    })
}

fn env(name: &str, value: impl Into<String>) -> Value {
    json!({"name": name, "value": value.into()})
}

/// The workload-identity variables every container of the Pod gets.
fn identity_env(b: &Binding) -> Vec<Value> {
    vec![
        env("AZURE_CLIENT_ID", &b.blueprint_app_id),
        env("AZURE_TENANT_ID", &b.conn.tenant),
        env("AZURE_AUTHORITY_HOST", b.conn.authority_host()),
        env("AZURE_FEDERATED_TOKEN_FILE", AZURE_TOKEN_FILE),
    ]
}

/// The sidecar's configuration (docs/sidecar.md: Azure workload identity variables, the allow-list,
/// the downstream APIs).
pub fn sidecar_env(b: &Binding) -> Vec<Value> {
    let mut e = identity_env(b);
    e.push(env("Sidecar__AllowedAgentIdentities__0", &b.agent_id));
    e.push(env("Sidecar__ListenUrl", SIDECAR_URL));
    if let Some(ca) = &b.conn.ca {
        e.push(env(
            "Sidecar__ExtraCaBundlePath",
            format!("{CA_DIR}/{}", ca.key),
        ));
    }
    for (name, api) in &b.agent.downstream_apis {
        if let Some(u) = &api.base_url {
            e.push(env(&format!("DownstreamApis__{name}__BaseUrl"), u));
        }
        for (i, s) in api.scopes.iter().enumerate() {
            e.push(env(&format!("DownstreamApis__{name}__Scopes__{i}"), s));
        }
        e.push(env(
            &format!("DownstreamApis__{name}__RequestAppToken"),
            api.request_app_token.to_string(),
        ));
    }
    e
}

fn token_mount() -> Value {
    json!({"name": TOKEN_VOLUME, "mountPath": AZURE_TOKEN_DIR, "readOnly": true})
}

/// The Pod with the sidecar, volumes and environment for `b`, any earlier injection replaced.
pub fn inject(pod: &Value, b: &Binding, image: &str, native: bool) -> Value {
    let mut pod = pod.clone();
    let spec = &mut pod["spec"];
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            cs.retain(|c| c["name"] != SIDECAR_NAME);
        }
    }
    if spec["initContainers"].as_array().is_some_and(Vec::is_empty)
        && let Some(o) = spec.as_object_mut()
    {
        o.remove("initContainers");
    }
    let mut volumes: Vec<Value> = spec["volumes"].as_array().cloned().unwrap_or_default();
    volumes.retain(|v| v["name"] != TOKEN_VOLUME && v["name"] != CA_VOLUME);
    volumes.push(json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {"path": "azure-identity-token", "audience": AUDIENCE, "expirationSeconds": 3600}}]}}));
    if let Some(ca) = &b.conn.ca {
        volumes.push(json!({"name": CA_VOLUME, "configMap": {"name": ca.name, "items": [{"key": ca.key, "path": ca.key}]}}));
    }
    spec["volumes"] = Value::Array(volumes);
    // The application's containers: the identity's variables, the sidecar's URL, the token.
    let mut app_env = identity_env(b);
    app_env.push(env("AGENTID_SIDECAR_URL", SIDECAR_URL));
    app_env.push(env("AGENTID_AGENT_ID", &b.agent_id));
    if let Some(cs) = spec["containers"].as_array_mut() {
        for c in cs {
            let mut e: Vec<Value> = c["env"].as_array().cloned().unwrap_or_default();
            e.retain(|v| !APP_ENV.contains(&v["name"].as_str().unwrap_or_default()));
            e.extend(app_env.iter().cloned());
            c["env"] = Value::Array(e);
            let mut m: Vec<Value> = c["volumeMounts"].as_array().cloned().unwrap_or_default();
            m.retain(|v| v["name"] != TOKEN_VOLUME);
            m.push(token_mount());
            c["volumeMounts"] = Value::Array(m);
        }
    }
    let mut mounts = vec![token_mount()];
    if b.conn.ca.is_some() {
        mounts.push(json!({"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": true}));
    }
    let mut sidecar = json!({
        "name": SIDECAR_NAME,
        "image": image,
        "command": ["/agentid"],
        "args": ["sidecar"],
        "env": sidecar_env(b),
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    });
    if native {
        sidecar["restartPolicy"] = json!("Always");
        let mut inits = spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        inits.insert(0, sidecar);
        spec["initContainers"] = Value::Array(inits);
    } else if let Some(cs) = spec["containers"].as_array_mut() {
        cs.insert(0, sidecar);
    }
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = json!({});
    }
    pod["metadata"]["annotations"][INJECTED_KEY] = json!(b.agent_id);
    pod
}

/// Admits a Pod: unchanged when it is not bound to an agent, injected when it is, refused when
/// the binding is not allowed.
pub async fn admit(state: &State, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    let (Some(obj), Operation::Create) = (&req.object, &req.operation) else {
        return resp;
    };
    let pod = serde_json::to_value(obj).unwrap_or_default();
    let namespace = req
        .namespace
        .clone()
        .or_else(|| pod["metadata"]["namespace"].as_str().map(str::to_string))
        .unwrap_or_default();
    let service_account = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    let named = match named_agent(state, &pod, &namespace, &service_account).await {
        Ok(Some(n)) => n,
        Ok(None) => return resp,
        Err(refusal) => return resp.deny(refusal),
    };
    let b = match binding(state, &namespace, &named, &service_account).await {
        Ok(b) => b,
        Err(refusal) => {
            tracing::info!(%namespace, agent = %named, %refusal, "pod refused");
            return resp.deny(refusal);
        }
    };
    let injected = inject(&pod, &b, &state.cfg.sidecar_image, state.native_sidecars);
    let patch = json_patch::diff(&pod, &injected);
    match resp.with_patch(patch) {
        Ok(r) => r,
        Err(e) => AdmissionResponse::from(req).deny(format!("cannot encode the injection: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DownstreamApi;

    fn binding() -> Binding {
        Binding {
            agent_id: "a1".into(),
            blueprint_app_id: "b1".into(),
            conn: model::Connection {
                authority: "https://sts.example/t1".into(),
                tenant: "t1".into(),
                graph: None,
                ca: Some(crate::crd::KeyRef {
                    name: "ca".into(),
                    key: "ca.crt".into(),
                }),
                credential: model::Credential::Password { secret: "s".into() },
                issuer_registration: Default::default(),
            },
            agent: model::Agent {
                blueprint: "bp".into(),
                display_name: "A".into(),
                sponsors: vec![],
                admin_consents: vec![],
                downstream_apis: vec![(
                    "graph".into(),
                    DownstreamApi {
                        base_url: None,
                        scopes: vec!["https://graph.microsoft.com/.default".into()],
                        request_app_token: true,
                    },
                )],
                deletion: Default::default(),
            },
        }
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "x",
            "env": [{"name": "AZURE_CLIENT_ID", "value": "stale"}, {"name": "KEEP", "value": "1"}]}]}})
    }

    #[test]
    fn injecting_twice_changes_nothing() {
        for native in [false, true] {
            let once = inject(&pod(), &binding(), "img", native);
            let twice = inject(&once, &binding(), "img", native);
            assert_eq!(once, twice, "native={native}");
            assert!(json_patch::diff(&once, &twice).is_empty());
        }
    }

    #[test]
    fn native_sidecars_are_restartable_init_containers() {
        let p = inject(&pod(), &binding(), "img", true);
        assert_eq!(p["spec"]["initContainers"][0]["name"], SIDECAR_NAME);
        assert_eq!(p["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 1);
        let p = inject(&pod(), &binding(), "img", false);
        assert_eq!(p["spec"]["containers"][0]["name"], SIDECAR_NAME);
        assert!(p["spec"]["initContainers"].is_null());
    }

    #[test]
    fn the_app_keeps_its_env_and_gets_the_identity() {
        let p = inject(&pod(), &binding(), "img", false);
        let env = p["spec"]["containers"][1]["env"].as_array().unwrap();
        let get = |k: &str| {
            env.iter()
                .filter(|e| e["name"] == k)
                .map(|e| e["value"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            get("AZURE_CLIENT_ID"),
            ["b1"],
            "the stale value is replaced, once"
        );
        assert_eq!(get("KEEP"), ["1"]);
        assert_eq!(get("AZURE_AUTHORITY_HOST"), ["https://sts.example/"]);
        let sidecar_env = p["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(
            sidecar_env
                .iter()
                .any(|e| e["name"] == "Sidecar__ExtraCaBundlePath"
                    && e["value"] == "/etc/agentid/directory-ca/ca.crt")
        );
    }
}
