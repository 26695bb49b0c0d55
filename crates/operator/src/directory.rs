//! The directory side of a DirectoryConnection (docs/operator.md §3): the Graph client, the
//! operator's own token there, and the cluster issuer's registration as trusted.

use crate::Error;
use crate::crd::{DirectoryConnection, IssuerRegistration};
use crate::model::{self, Connection, Credential};
use agentid_graphclient::GraphClient;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where Azure workload identity (and the injected sidecar) finds the projected token.
pub const AZURE_TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
pub const AZURE_TOKEN_FILE: &str = "/var/run/secrets/azure/tokens/azure-identity-token";

/// A DirectoryConnection, parsed, with its client.
pub struct Directory {
    pub name: String,
    pub conn: Connection,
    pub client: GraphClient,
}

/// Reads a DirectoryConnection and what it refers to.
pub async fn open(kube: &kube::Client, namespace: &str, name: &str) -> Result<Directory, Error> {
    let dc = Api::<DirectoryConnection>::namespaced(kube.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Missing(format!("DirectoryConnection {namespace}/{name}")))?;
    let conn = model::connection(&dc.spec).map_err(Error::Invalid)?;
    let ca = match &conn.ca {
        Some(r) => Some(config_map_key(kube, namespace, &r.name, &r.key).await?),
        None => None,
    };
    let client = GraphClient::new(
        &conn.authority,
        conn.graph.as_deref(),
        ca.as_deref().map(str::as_bytes),
    )?;
    Ok(Directory {
        name: name.to_string(),
        conn,
        client,
    })
}

pub async fn config_map_key(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, Error> {
    Api::<ConfigMap>::namespaced(kube.clone(), namespace)
        .get_opt(name)
        .await?
        .and_then(|c| c.data?.get(key).cloned())
        .ok_or_else(|| Error::Missing(format!("ConfigMap {namespace}/{name} key {key}")))
}

/// A Secret's keys as strings, and its resourceVersion.
pub async fn secret_strings(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<(HashMap<String, String>, String)>, Error> {
    let Some(s) = Api::<Secret>::namespaced(kube.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(None);
    };
    let version = s.metadata.resource_version.clone().unwrap_or_default();
    let mut out = HashMap::new();
    for (k, v) in s.data.unwrap_or_default() {
        if let Ok(text) = String::from_utf8(v.0) {
            out.insert(k, text);
        }
    }
    Ok(Some((out, version)))
}

/// The operator's directory tokens, by connection and credential version; reused until a
/// minute before they expire. Bounded by the number of connections the operator sees.
#[derive(Default)]
pub struct TokenCache(Mutex<HashMap<String, (String, Instant)>>);

const MAX_CACHED_TOKENS: usize = 1024;

impl TokenCache {
    fn get(&self, key: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }
    fn put(&self, key: String, token: String, expires_in: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CACHED_TOKENS {
            map.retain(|_, (_, until)| *until > Instant::now());
            if map.len() >= MAX_CACHED_TOKENS {
                map.clear();
            }
        }
        let life = Duration::from_secs(expires_in.saturating_sub(60).max(30));
        map.insert(key, (token, Instant::now() + life));
    }
    pub fn forget(&self, key_prefix: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| !k.starts_with(key_prefix));
    }
}

fn secret_key<'a>(
    keys: &'a HashMap<String, String>,
    secret: &str,
    key: &str,
) -> Result<&'a str, Error> {
    keys.get(key)
        .map(String::as_str)
        .ok_or_else(|| Error::Missing(format!("key {key} of Secret {secret}")))
}

impl Directory {
    /// The operator's Graph token for this connection.
    pub async fn admin_token(
        &self,
        kube: &kube::Client,
        namespace: &str,
        cache: &TokenCache,
    ) -> Result<String, Error> {
        let prefix = format!("{namespace}/{}/", self.name);
        let (form, key): (Vec<(&str, String)>, String) = match &self.conn.credential {
            Credential::ClientSecret { secret } | Credential::Password { secret } => {
                let (keys, version) = secret_strings(kube, namespace, secret)
                    .await?
                    .ok_or_else(|| Error::Missing(format!("Secret {namespace}/{secret}")))?;
                let key = format!("{prefix}{secret}/{version}");
                if let Some(t) = cache.get(&key) {
                    return Ok(t);
                }
                let form = if matches!(self.conn.credential, Credential::Password { .. }) {
                    let client_id = keys
                        .get("clientId")
                        .cloned()
                        .unwrap_or_else(|| agentid_claims::wellknown::GRAPH_CLI_APP_ID.into());
                    vec![
                        ("grant_type", "password".to_string()),
                        ("client_id", client_id),
                        ("username", secret_key(&keys, secret, "username")?.into()),
                        ("password", secret_key(&keys, secret, "password")?.into()),
                        (
                            "scope",
                            // Registering the cluster issuer is a policy change.
                            agentid_graphclient::admin_scope(&[
                                "Policy.ReadWrite.ApplicationConfiguration",
                            ]),
                        ),
                    ]
                } else {
                    vec![
                        ("grant_type", "client_credentials".to_string()),
                        ("client_id", secret_key(&keys, secret, "clientId")?.into()),
                        (
                            "client_secret",
                            secret_key(&keys, secret, "clientSecret")?.into(),
                        ),
                        ("scope", "https://graph.microsoft.com/.default".into()),
                    ]
                };
                (form, key)
            }
            Credential::WorkloadIdentity { client_id } => {
                let key = format!("{prefix}wi/{client_id}");
                if let Some(t) = cache.get(&key) {
                    return Ok(t);
                }
                let file = std::env::var("AZURE_FEDERATED_TOKEN_FILE")
                    .unwrap_or_else(|_| AZURE_TOKEN_FILE.into());
                let assertion = std::fs::read_to_string(&file).map_err(|e| {
                    Error::Missing(format!("the operator's token file {file}: {e}"))
                })?;
                (
                    vec![
                        ("grant_type", "client_credentials".to_string()),
                        ("client_id", client_id.clone()),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                        ),
                        ("client_assertion", assertion.trim().to_string()),
                        ("scope", "https://graph.microsoft.com/.default".into()),
                    ],
                    key,
                )
            }
        };
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let t = self.client.token(&form).await?;
        let token = t["access_token"].as_str().unwrap_or_default().to_string();
        cache.put(key, token.clone(), t["expires_in"].as_u64().unwrap_or(300));
        Ok(token)
    }
}

/// The cluster's service-account issuer and its keys, from the API server's discovery
/// document (`/.well-known/openid-configuration`) and `/openid/v1/jwks`.
pub struct ClusterIssuer {
    pub issuer: String,
    pub jwks: Value,
}

pub async fn cluster_issuer(kube: &kube::Client) -> Result<ClusterIssuer, Error> {
    let get = |path: &str| {
        http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| Error::Missing(format!("{path}: {e}")))
    };
    let discovery: Value = kube
        .request(get("/.well-known/openid-configuration")?)
        .await?;
    let issuer = discovery["issuer"]
        .as_str()
        .filter(|i| i.starts_with("https://"))
        .ok_or_else(|| {
            Error::Missing("the API server's discovery document names no https issuer".into())
        })?
        .to_string();
    let jwks: Value = kube.request(get("/openid/v1/jwks")?).await?;
    Ok(ClusterIssuer { issuer, jwks })
}

/// Registers the cluster issuer with the directory as the connection asks (agentid only).
pub async fn register_issuer(
    dir: &Directory,
    token: &str,
    cluster: &ClusterIssuer,
    ca_pem: Option<&str>,
) -> Result<(), Error> {
    let description = "The Kubernetes cluster's service-account issuer (agentid operator)";
    match dir.conn.issuer_registration {
        IssuerRegistration::None => Ok(()),
        IssuerRegistration::Jwks => dir
            .client
            .put_trusted_issuer(
                token,
                &cluster.issuer,
                Some(&cluster.jwks),
                None,
                description,
            )
            .await
            .map(drop)
            .map_err(Error::from),
        IssuerRegistration::Discovery => dir
            .client
            .put_trusted_issuer(token, &cluster.issuer, None, ca_pem, description)
            .await
            .map(drop)
            .map_err(Error::from),
    }
}
