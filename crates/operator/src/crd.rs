//! The custom resources (docs/operator.md §2): group `agentid.dev`, version `v1alpha1`,
//! namespaced. These are the serde/schema types as stored by the API server; [`crate::model`]
//! turns a spec into the typed values the controllers and webhooks act on.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "agentid.dev";
/// The finalizer the operator puts on what it reconciles.
pub const FINALIZER: &str = "agentid.dev/cleanup";

/// Where blueprints and agents live: an agentid STS or real Entra, and the operator's own
/// credential there.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, Default)]
#[kube(
    group = "agentid.dev",
    version = "v1alpha1",
    kind = "DirectoryConnection",
    namespaced,
    status = "DirectoryConnectionStatus",
    shortname = "dirconn",
    printcolumn = r#"{"name": "Authority", "type": "string", "jsonPath": ".spec.authority"}"#,
    printcolumn = r#"{"name": "Issuer", "type": "string", "jsonPath": ".status.clusterIssuer"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryConnectionSpec {
    /// `https://HOST:PORT/TENANT` for agentid, `https://login.microsoftonline.com/TENANT` for Entra.
    pub authority: String,
    /// Graph base URL (default: the authority's host for agentid, graph.microsoft.com for Entra).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    /// A ConfigMap key in this namespace holding the PEM CA of the authority (agentid's private
    /// CA). The operator trusts it, and injected sidecars mount it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map: Option<KeyRef>,
    /// The operator's own credential in the directory.
    pub credential: DirectoryCredential,
    /// How the cluster's service-account issuer is registered as trusted (agentid only):
    /// `Jwks` (default, the API server's keys stored), `Discovery`, or `None` (Entra, or done
    /// by hand). Not an Option: kube-apiserver 1.20 cannot convert a CRD whose enum lists null.
    #[serde(default)]
    pub issuer_registration: IssuerRegistration,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum IssuerRegistration {
    #[default]
    Jwks,
    Discovery,
    None,
}

/// A key of a ConfigMap or Secret in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    pub name: String,
    pub key: String,
}

/// The operator's credential: a Secret (keys `clientId` and `clientSecret` for an application;
/// `username` and `password`, with an optional public `clientId`, for an administrator), or its
/// own workload identity (`clientId`, the token file of Azure workload identity).
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryCredential {
    pub kind: CredentialKind,
    /// The Secret in this namespace (ClientSecret and Password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The application of WorkloadIdentity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum CredentialKind {
    #[default]
    ClientSecret,
    Password,
    WorkloadIdentity,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryConnectionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_issuer: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the directory keeps when the resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
}

/// An agent identity blueprint, its federated credentials for service accounts of this
/// namespace, and its exposed API (`api://APPID/access_as_user`).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, Default)]
#[kube(
    group = "agentid.dev",
    version = "v1alpha1",
    kind = "AgentBlueprint",
    namespaced,
    status = "AgentBlueprintStatus",
    shortname = "blueprint",
    printcolumn = r#"{"name": "Display Name", "type": "string", "jsonPath": ".spec.displayName"}"#,
    printcolumn = r#"{"name": "App ID", "type": "string", "jsonPath": ".status.appId"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentBlueprintSpec {
    /// The DirectoryConnection (same namespace) the blueprint lives in.
    pub directory_ref: String,
    pub display_name: String,
    /// Sponsors (UPNs); default: the operator's signed-in administrator.
    #[serde(default)]
    pub sponsors: Vec<String>,
    /// Owners (UPNs); default: the sponsors.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Service accounts of this namespace allowed to act as the blueprint: each becomes a
    /// federated identity credential with the cluster's issuer.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// The Secret (this namespace) where the operator keeps the blueprint's client secret, with
    /// which it creates agent identities (default `<name>-blueprint-credential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Delegated permissions the blueprint's agents inherit (`RESOURCE/scope` values), granted
    /// to the blueprint's principal for all users.
    #[serde(default)]
    pub inheritable_permissions: Vec<String>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentBlueprintStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default)]
    pub federated_credentials: Vec<FicStatus>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FicStatus {
    pub name: String,
    pub id: String,
    pub subject: String,
}

/// An agent identity of a blueprint, its consents, and the downstream APIs its sidecar exposes.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, Default)]
#[kube(
    group = "agentid.dev",
    version = "v1alpha1",
    kind = "AgentIdentity",
    namespaced,
    status = "AgentIdentityStatus",
    shortname = "agent",
    printcolumn = r#"{"name": "Display Name", "type": "string", "jsonPath": ".spec.displayName"}"#,
    printcolumn = r#"{"name": "Agent ID", "type": "string", "jsonPath": ".status.agentId"}"#,
    printcolumn = r#"{"name": "Blueprint", "type": "string", "jsonPath": ".spec.blueprintRef"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentIdentitySpec {
    /// The AgentBlueprint (same namespace).
    pub blueprint_ref: String,
    pub display_name: String,
    /// Sponsors (UPNs); default: the blueprint's.
    #[serde(default)]
    pub sponsors: Vec<String>,
    /// Delegated permissions granted to the agent for all users (admin consent), e.g.
    /// `https://graph.microsoft.com/User.Read`.
    #[serde(default)]
    pub admin_consents: Vec<String>,
    /// The sidecar's downstream APIs (its `DownstreamApis` configuration), by name.
    #[serde(default)]
    pub downstream_apis: BTreeMap<String, DownstreamApi>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// One downstream API of the sidecar (docs/sidecar.md: `DownstreamApis__NAME__…`).
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DownstreamApi {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub request_app_token: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentIdentityStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint_app_id: Option<String>,
    /// The consent grants (ids) the operator made.
    #[serde(default)]
    pub grants: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A status condition (the shape of metav1.Condition).
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Sets (or replaces) a condition, keeping its transition time when its status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if ok { "True" } else { "False" };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // The API server keeps what it is given; a Graph error can be long.
    let message: String = message.chars().take(1000).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: now,
            observed_generation: generation,
        }),
    }
}

/// Is the condition present and True?
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The three CRDs, YAML documents (what `agentid operator crds` prints and deploy/operator holds).
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let mut out = String::from(
        "# Generated by `agentid operator crds` (crates/operator/src/crd.rs); do not edit.\n",
    );
    for crd in [
        DirectoryConnection::crd(),
        AgentBlueprint::crd(),
        AgentIdentity::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn deploy_holds_the_crds_the_code_defines() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/operator/crds.yaml"
        );
        let generated = super::crds_yaml().unwrap();
        if std::env::var_os("AGENTID_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "regenerate: agentid operator crds > deploy/operator/crds.yaml (or AGENTID_BLESS=1)"
        );
    }
}
