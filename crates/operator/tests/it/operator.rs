//! The operator against the real kube-apiserver (docs/operator.md §7): blueprint, agent, an
//! injected Pod whose sidecar gets T2, refusals, drift repair and deletion.

use crate::support::*;
use agentid_operator::inject::{AGENT_KEY, AUDIENCE, SIDECAR_NAME, TOKEN_VOLUME};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use std::time::Duration;

const BLUEPRINT: &str = r#"
apiVersion: agentid.dev/v1alpha1
kind: AgentBlueprint
metadata: {name: research}
spec:
  directoryRef: directory
  displayName: Research Blueprint
  serviceAccounts: [research-agent]
"#;

fn agent_yaml(name: &str, policy: &str) -> String {
    format!(
        r#"
apiVersion: agentid.dev/v1alpha1
kind: AgentIdentity
metadata: {{name: {name}}}
spec:
  blueprintRef: research
  displayName: Research Agent {name}
  adminConsents: ["https://graph.microsoft.com/User.Read"]
  deletionPolicy: {policy}
  downstreamApis:
    graph:
      baseUrl: https://graph.microsoft.com/v1.0/
      scopes: ["https://graph.microsoft.com/.default"]
      requestAppToken: true
"#
    )
}

fn pod(name: &str, sa: &str, labels: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "example.test/app:1"}]}})
}

fn env_of(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn env_value<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blueprint_agent_pod_sidecar_refusals_drift_and_deletion() {
    let bed = Bed::start("operator").await;
    bed.service_account("research-agent").await;
    bed.service_account("other").await;
    let _operator = bed.operator("replica-a").await;

    // ---- Blueprint: in the directory, federated for the cluster issuer and the SA. ----
    bed.apply_yaml(BLUEPRINT).await;
    let st = bed.ready("AgentBlueprint", "research").await;
    let app_id = st["appId"].as_str().expect("appId").to_string();
    let object_id = st["objectId"].as_str().expect("objectId").to_string();
    assert!(st["principalId"].as_str().is_some_and(|p| !p.is_empty()));
    assert_eq!(st["issuer"], bed.kube.issuer());
    for c in ["DirectorySynced", "CredentialFederated", "Ready"] {
        assert!(
            st["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["type"] == c && x["status"] == "True"),
            "{c} in {st}"
        );
    }
    let admin = bed.admin_token().await;
    let app = bed
        .graph
        .application_by_app_id(&admin, &app_id)
        .await
        .unwrap();
    assert_eq!(app["displayName"], "Research Blueprint");
    let subject = format!("system:serviceaccount:{}:research-agent", bed.ns);
    let fics = bed.graph.list_fics(&admin, &object_id).await.unwrap();
    assert_eq!(fics.len(), 1, "{fics:?}");
    assert_eq!(
        (
            fics[0].issuer.as_str(),
            fics[0].subject.as_str(),
            fics[0].audiences.clone()
        ),
        (
            bed.kube.issuer(),
            subject.as_str(),
            vec![AUDIENCE.to_string()]
        )
    );
    assert_eq!(st["federatedCredentials"][0]["id"], fics[0].id.as_str());

    // ---- Agent: exists in the directory with its consent. ----
    bed.apply_yaml(&agent_yaml("research-agent", "Delete"))
        .await;
    let st = bed.ready("AgentIdentity", "research-agent").await;
    let agent_id = st["agentId"].as_str().expect("agentId").to_string();
    assert_eq!(st["blueprintAppId"], app_id.as_str());
    let agent = bed
        .graph
        .agent(&admin, &agent_id)
        .await
        .unwrap()
        .expect("the agent exists");
    assert_eq!(agent["agentIdentityBlueprintId"], app_id.as_str());
    let grants = bed.graph.grants(&admin, Some(&agent_id)).await.unwrap();
    assert!(
        grants.iter().any(|g| g["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .any(|s| s == "User.Read")),
        "{grants:?}"
    );

    // ---- Pod: the API server calls the webhook; the stored Pod is injected. ----
    let stored: Pod = bed
        .create(pod(
            "app",
            "research-agent",
            json!({AGENT_KEY: "research-agent"}),
            json!({}),
        ))
        .await;
    let p = serde_json::to_value(&stored).unwrap();
    let containers = p["spec"]["containers"].as_array().unwrap();
    // kube-apiserver 1.20 has no native sidecars: a regular container.
    let sidecar = containers
        .iter()
        .find(|c| c["name"] == SIDECAR_NAME)
        .expect("sidecar injected");
    assert!(
        p["spec"]["initContainers"].is_null(),
        "no init container on 1.20"
    );
    let volume = p["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == TOKEN_VOLUME)
        .expect("token volume");
    assert_eq!(
        volume["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        AUDIENCE
    );
    let app = containers.iter().find(|c| c["name"] == "app").unwrap();
    let app_env = env_of(app);
    assert_eq!(
        env_value(&app_env, "AZURE_CLIENT_ID"),
        Some(app_id.as_str())
    );
    assert_eq!(
        env_value(&app_env, "AZURE_TENANT_ID"),
        Some(bed.sts.tenant_id.as_str())
    );
    assert_eq!(
        env_value(&app_env, "AZURE_FEDERATED_TOKEN_FILE"),
        Some("/var/run/secrets/azure/tokens/azure-identity-token")
    );
    assert_eq!(
        env_value(&app_env, "AGENTID_SIDECAR_URL"),
        Some("http://127.0.0.1:5000")
    );
    assert!(
        app["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == TOKEN_VOLUME)
    );
    let sidecar_env = env_of(sidecar);
    assert_eq!(
        env_value(&sidecar_env, "Sidecar__AllowedAgentIdentities__0"),
        Some(agent_id.as_str())
    );
    assert!(
        !sidecar_env
            .iter()
            .any(|(k, _)| k == "Sidecar__AllowedAgentIdentities__1"),
        "allow-list is that agent only"
    );

    // ---- The sidecar with exactly that configuration (files where the Pod has them) gets T2. ----
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    bed.kube
        .write_token_file(&token_file, &bed.ns, "research-agent", AUDIENCE)
        .await;
    let ca_file = dir.path().join("ca.crt");
    std::fs::copy(bed.sts.ca_file(), &ca_file).unwrap();
    let mut env: Vec<(String, String)> = sidecar_env
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "AZURE_FEDERATED_TOKEN_FILE" => (k, token_file.display().to_string()),
            "Sidecar__ExtraCaBundlePath" => (k, ca_file.display().to_string()),
            // A free port in this process instead of the Pod's 5000.
            "Sidecar__ListenUrl" => (k, "http://127.0.0.1:0".into()),
            _ => (k, v),
        })
        .collect();
    env.push(("Sidecar__HealthListenUrl".into(), "off".into()));
    let config = agentid_sidecar::config::load(&agentid_sidecar::ConfigSources::from_vars(&env))
        .unwrap_or_else(|e| panic!("the injected configuration loads: {e}"));
    let sidecar = agentid_sidecar::start(config)
        .await
        .expect("the sidecar starts");
    let r = reqwest::Client::new()
        .get(format!(
            "{}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={agent_id}",
            sidecar.url()
        ))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "{status}: {body}");
    let t2 = body["authorizationHeader"]
        .as_str()
        .unwrap()
        .trim_start_matches("Bearer ");
    let claims = agentid_claims::UnverifiedJwt::parse(t2).unwrap().claims;
    assert_eq!(
        (claims["appid"].as_str(), claims["xms_par_app_azp"].as_str()),
        (Some(agent_id.as_str()), Some(app_id.as_str()))
    );
    // Another agent is not on the allow-list.
    let other = reqwest::Client::new()
        .get(format!(
            "{}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={}",
            sidecar.url(),
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert!(other.status().is_client_error(), "{}", other.status());

    // ---- Refusals. ----
    let e = bed
        .try_create::<Pod>(pod(
            "wrong-sa",
            "other",
            json!({AGENT_KEY: "research-agent"}),
            json!({}),
        ))
        .await
        .expect_err("a service account not on the blueprint is refused");
    assert!(
        e.to_string()
            .contains("service account other is not allowed to act as AgentBlueprint research"),
        "{e}"
    );
    let e = bed
        .try_create::<Pod>(pod(
            "elsewhere",
            "research-agent",
            json!({}),
            json!({AGENT_KEY: "kube-system/research-agent"}),
        ))
        .await
        .expect_err("an agent of another namespace is refused");
    assert!(
        e.to_string()
            .contains("may only act as an AgentIdentity of its own namespace"),
        "{e}"
    );
    let e = bed
        .try_apply_yaml("apiVersion: agentid.dev/v1alpha1\nkind: AgentIdentity\nmetadata: {name: bad}\nspec: {blueprintRef: research, displayName: ' ', sponsors: [nobody]}\n")
        .await
        .expect_err("an invalid resource is refused");
    assert!(
        e.to_string()
            .contains("displayName must be 1 to 256 characters"),
        "{e}"
    );
    assert!(bed.get("AgentIdentity", "bad").await.is_none());

    // ---- Drift: an agent deleted in the directory comes back. ----
    let bp_token = bed.blueprint_token("research-blueprint-credential").await;
    bed.graph.delete_agent(&bp_token, &agent_id).await.unwrap();
    let new_id = eventually("the agent recreated", Duration::from_secs(60), || async {
        let v = bed.get("AgentIdentity", "research-agent").await?;
        let id = v["status"]["agentId"].as_str()?.to_string();
        (id != agent_id).then_some(id)
    })
    .await;
    assert!(bed.graph.agent(&admin, &new_id).await.unwrap().is_some());
    // A federated credential changed by hand is put back.
    let fic = &bed.graph.list_fics(&admin, &object_id).await.unwrap()[0];
    bed.graph
        .delete_fic(&admin, &object_id, &fic.id)
        .await
        .unwrap();
    bed.graph
        .add_fic(
            &admin,
            &object_id,
            &fic.name,
            bed.kube.issuer(),
            "system:serviceaccount:evil:thief",
            AUDIENCE,
        )
        .await
        .unwrap();
    eventually(
        "the federated credential repaired",
        Duration::from_secs(60),
        || async {
            let f = bed.graph.list_fics(&admin, &object_id).await.ok()?;
            (f.len() == 1 && f[0].subject == subject).then_some(())
        },
    )
    .await;

    // ---- Deletion: Delete removes the agent; Orphan keeps it. ----
    bed.apply_yaml(&agent_yaml("kept", "Orphan")).await;
    let kept = bed.ready("AgentIdentity", "kept").await["agentId"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["research-agent", "kept"] {
        bed.dynamic("AgentIdentity")
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["research-agent", "kept"] {
        eventually(
            &format!("{name} deleted"),
            Duration::from_secs(60),
            || async { bed.get("AgentIdentity", name).await.is_none().then_some(()) },
        )
        .await;
    }
    assert!(
        bed.graph.agent(&admin, &new_id).await.unwrap().is_none(),
        "Delete removed the agent"
    );
    assert!(
        bed.graph.agent(&admin, &kept).await.unwrap().is_some(),
        "Orphan kept the agent"
    );
    bed.dynamic("AgentBlueprint")
        .delete("research", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the blueprint deleted", Duration::from_secs(60), || async {
        bed.get("AgentBlueprint", "research")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let gone = bed.graph.application_by_app_id(&admin, &app_id).await;
    assert!(gone.as_ref().is_err_and(|e| e.is_not_found()), "{gone:?}");
    sidecar.shutdown();
}
