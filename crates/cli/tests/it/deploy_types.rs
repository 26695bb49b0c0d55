//! `deploy/`'s manifests deserialise strictly into current `k8s-openapi` types (Kubernetes 1.33
//! API level, the oldest k8s-openapi 0.29 has). This covers what the test bed's kube-apiserver
//! 1.20 cannot check (`deploy_applied.rs`): the native sidecar's `restartPolicy` and probes on an
//! init container. k8s-openapi ignores unknown fields when deserialising, so each manifest is
//! deserialised and serialised back, and every field lost or changed on the way is reported.
//! Left unchecked: values the types hold as free strings (`restartPolicy: Sometimes` would pass)
//! and everything the API server validates beyond the schema.

use crate::deploy_support::{id, missing_from, repo_root, yaml_docs};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The manifests of `deploy/` as written (the resources its kustomization lists).
fn manifests() -> Vec<(String, Value)> {
    let dir = repo_root().join("deploy");
    let kustomization: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|file| {
            let file = file.as_str().unwrap().to_string();
            let text = std::fs::read_to_string(dir.join(&file)).unwrap();
            yaml_docs(&text, &file)
                .into_iter()
                .map(move |doc| (file.clone(), doc))
        })
        .collect()
}

fn round_trip<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Deserialises a manifest into its current k8s-openapi type and back: every field the type
/// does not know (k8s-openapi ignores unknown fields when deserialising) or reads differently
/// is reported.
fn strict(doc: &Value) -> Result<(), String> {
    use k8s_openapi::api::{apps, core, networking};
    let back = match doc["kind"].as_str().unwrap_or("") {
        "Namespace" => round_trip::<core::v1::Namespace>(doc),
        "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(doc),
        "ConfigMap" => round_trip::<core::v1::ConfigMap>(doc),
        "Secret" => round_trip::<core::v1::Secret>(doc),
        "Service" => round_trip::<core::v1::Service>(doc),
        "Deployment" => round_trip::<apps::v1::Deployment>(doc),
        "StatefulSet" => round_trip::<apps::v1::StatefulSet>(doc),
        "NetworkPolicy" => round_trip::<networking::v1::NetworkPolicy>(doc),
        other => return Err(format!("no type for kind {other}")),
    }?;
    let mut unknown = Vec::new();
    missing_from(doc, &back, "", &mut unknown);
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("not in the current types: {unknown:?}"))
    }
}

#[test]
fn manifests_deserialise_strictly_into_current_kubernetes_types() {
    let docs = manifests();
    assert!(docs.len() >= 20);
    let problems: Vec<String> = docs
        .iter()
        .filter_map(|(file, doc)| {
            strict(doc)
                .err()
                .map(|e| format!("{file} {}: {e}", id(doc)))
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // The field 1.20 prunes is one the current types know.
    let agent = docs
        .iter()
        .find(|(_, d)| id(d) == "Deployment/agentid-agent")
        .unwrap();
    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(agent.1.clone()).unwrap();
    let init = &deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap()[0];
    assert_eq!(init.restart_policy.as_deref(), Some("Always"));
}

#[test]
fn strict_deserialisation_reports_what_the_types_do_not_know() {
    let docs = manifests();
    let agent = docs
        .iter()
        .find(|(_, d)| id(d) == "Deployment/agentid-agent")
        .unwrap()
        .1
        .clone();
    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation); 5] = [
        ("a misspelled field", |d| {
            d["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = json!("Always")
        }),
        ("a field at the wrong level", |d| {
            d["spec"]["template"]["spec"]["restartPolicyOfSidecar"] = json!("Always")
        }),
        ("a volume source that does not exist", |d| {
            d["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"][0]["tokenFile"] =
                json!({"path": "x"})
        }),
        ("a wrong type", |d| d["spec"]["replicas"] = json!("one")),
        ("a probe port of the wrong type", |d| {
            d["spec"]["template"]["spec"]["initContainers"][0]["startupProbe"]["httpGet"]["port"] =
                json!(["health"])
        }),
    ];
    for (what, mutate) in cases {
        let mut doc = agent.clone();
        mutate(&mut doc);
        assert!(strict(&doc).is_err(), "{what} was not reported");
    }
    assert_eq!(strict(&agent), Ok(()));
}
