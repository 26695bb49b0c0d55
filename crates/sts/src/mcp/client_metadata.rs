//! Client ID metadata documents (docs/sts.md §16.4): an MCP client names itself with an https
//! URL as `client_id`, and the JSON document at that URL says what it is. The document is
//! fetched through the guarded fetcher (`agentid_claims::verify::Fetcher`: https only, public
//! addresses only unless the operator allows private hosts, size and time caps), checked,
//! and cached by URL for as long as its `Cache-Control` says, within [`MIN_TTL`, `MAX_TTL`].
//! On first use in a tenant the URL gets a public client application with its service
//! principal (`Store::ensure_metadata_document_client`), so consent, audit and the kill switch
//! are those of every other application; tokens carry that application's appId.

use super::client_rules::{admit, client_name, flows, redirect_uris};
use crate::settings::ClientMetadataSettings;
use agentid_claims::verify::{Document, FetchError, FetchPolicy, Fetcher};
use agentid_directory::Store;
use agentid_directory::applications::RedirectUri;
use agentid_directory::mcp_clients::MetadataDocumentMode;
use agentid_directory::model::Tenant;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longest URL accepted as a client id.
pub const MAX_URL_CHARS: usize = 2048;
/// Largest document fetched.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Documents kept at once (the key is request data).
pub const MAX_CACHED: u64 = 1000;
pub const MIN_TTL: Duration = Duration::from_secs(5 * 60);
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// When the document's response says nothing about caching.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientMetadataError {
    #[error("the client_id must be an https URL")]
    NotHttps,
    #[error(
        "the client_id URL must be absolute, in canonical form, with a path, and without credentials, query or fragment"
    )]
    BadUrl,
    #[error("this tenant does not accept client ID metadata documents")]
    Disabled,
    #[error("the tenant's policy does not allow client ID metadata documents from '{0}'")]
    HostRefused(String),
    /// Shown to the browser without the connection's details (logged instead): the STS must not
    /// become a port scanner's oracle.
    #[error("the client ID metadata document could not be fetched{}", fetch_reason(.0))]
    Fetch(FetchError),
    #[error("the client ID metadata document is not a JSON object of client metadata")]
    NotJson,
    #[error("the document's client_id is not the URL it was fetched from")]
    ClientIdMismatch,
    #[error("the client ID metadata document is not acceptable: {0}")]
    Invalid(String),
    #[error("too many new clients in this tenant; retry in a minute")]
    RateLimited,
    #[error("the directory failed: {0}")]
    Directory(String),
}

fn fetch_reason(e: &FetchError) -> String {
    match e {
        FetchError::PrivateAddress(_) => ": its host is not a public address".into(),
        FetchError::Request(s) if s.contains("not a public address") => {
            ": its host is not a public address".into()
        }
        FetchError::Status(n) => format!(": HTTP {n}"),
        FetchError::TooLarge(n) => format!(": larger than {n} bytes"),
        _ => String::new(),
    }
}

/// True for a `client_id` that is meant as a URL (and is handled here, not as a GUID).
pub fn is_url(client_id: &str) -> bool {
    client_id.contains("://")
}

/// The client id as a URL, if it is one this STS accepts.
pub fn client_url(client_id: &str) -> Result<url::Url, ClientMetadataError> {
    if client_id.len() > MAX_URL_CHARS {
        return Err(ClientMetadataError::BadUrl);
    }
    let u = url::Url::parse(client_id).map_err(|_| ClientMetadataError::BadUrl)?;
    if u.scheme() != "https" {
        return Err(ClientMetadataError::NotHttps);
    }
    // The URL is compared byte for byte with the document's client_id and is the directory key:
    // only its canonical form is accepted (no dot segments, default port, upper-case host).
    let canonical = u.as_str() == client_id;
    if !canonical
        || u.host_str().is_none_or(str::is_empty)
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || u.path() == "/"
    {
        return Err(ClientMetadataError::BadUrl);
    }
    Ok(u)
}

/// A checked document: the client's identity is its URL; everything else is its own claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDocument {
    pub url: String,
    pub host: String,
    /// `client_name`, or the host.
    pub name: String,
    pub redirect_uris: Vec<RedirectUri>,
}

impl ClientDocument {
    /// The directory name of the application made for it: never only the self-asserted name.
    pub fn display_name(&self) -> String {
        format!("{} (unverified, {})", self.name, self.host)
    }

    pub fn redirect_uri_strings(&self) -> Vec<String> {
        self.redirect_uris
            .iter()
            .map(|r| r.as_str().to_string())
            .collect()
    }
}

/// The members read; every other member is ignored (documents carry many).
#[derive(Debug, Deserialize)]
struct Raw {
    client_id: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
}

/// Parses and checks the document fetched from `url` (docs/sts.md §16.4 lists the rules).
pub fn parse_document(url: &url::Url, body: &[u8]) -> Result<ClientDocument, ClientMetadataError> {
    use ClientMetadataError::{ClientIdMismatch, Invalid, NotJson};
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(Invalid(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
    }
    let map: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(NotJson),
    };
    // A document is public: a secret in it is no secret, and the client is public anyway.
    if map.keys().any(|k| k.starts_with("client_secret")) {
        return Err(Invalid("it must not contain a client secret".into()));
    }
    let raw: Raw = serde_json::from_value(Value::Object(map)).map_err(|_| NotJson)?;
    if raw.client_id != url.as_str() {
        return Err(ClientIdMismatch);
    }
    match raw.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(_) => {
            return Err(Invalid(
                "token_endpoint_auth_method must be none: these are public clients".into(),
            ));
        }
    }
    flows(raw.grant_types.as_deref(), raw.response_types.as_deref()).map_err(Invalid)?;
    let redirect_uris = redirect_uris(&raw.redirect_uris).map_err(Invalid)?;
    let host = url.host_str().unwrap_or_default().to_string();
    let name = client_name(raw.client_name.as_deref(), &host).map_err(Invalid)?;
    Ok(ClientDocument {
        url: url.as_str().to_string(),
        host,
        name,
        redirect_uris,
    })
}

/// `max-age` clamped into [`MIN_TTL`, `MAX_TTL`]; [`DEFAULT_TTL`] without one.
pub fn ttl(max_age: Option<Duration>) -> Duration {
    max_age.map_or(DEFAULT_TTL, |a| a.clamp(MIN_TTL, MAX_TTL))
}

#[derive(Clone)]
struct Cached {
    doc: Arc<ClientDocument>,
    ttl: Duration,
}

struct PerEntry;

impl moka::Expiry<String, Cached> for PerEntry {
    fn expire_after_create(&self, _: &String, v: &Cached, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The fetched documents, by URL, shared by every tenant (a tenant's policy is checked before
/// its request reads the cache).
pub struct ClientDocuments {
    cache: moka::future::Cache<String, Cached>,
    fetcher: Arc<Fetcher>,
    policy: FetchPolicy,
}

impl ClientDocuments {
    pub fn new(settings: &ClientMetadataSettings) -> Result<Self, String> {
        let ca_bundle = match &settings.ca_file {
            Some(p) => {
                Some(Arc::from(std::fs::read_to_string(p).map_err(|e| {
                    format!("client_metadata.ca_file {}: {e}", p.display())
                })?))
            }
            None => None,
        };
        Ok(Self {
            cache: moka::future::Cache::builder()
                .max_capacity(MAX_CACHED)
                .expire_after(PerEntry)
                .build(),
            fetcher: Fetcher::guarded(),
            policy: FetchPolicy {
                timeout: FETCH_TIMEOUT,
                max_bytes: MAX_DOCUMENT_BYTES,
                allow_http: false,
                allow_private: settings.allow_private_hosts,
                ca_bundle,
            },
        })
    }

    /// The checked document at `url`, from the cache or fetched (concurrent misses fetch once).
    pub async fn get(&self, url: &url::Url) -> Result<Arc<ClientDocument>, ClientMetadataError> {
        let load = async {
            let fetched = self
                .fetcher
                .get(url.as_str(), Document::Metadata, &self.policy)
                .await
                .map_err(ClientMetadataError::Fetch)?;
            let doc = parse_document(url, &fetched.body)?;
            Ok::<_, ClientMetadataError>(Cached {
                doc: Arc::new(doc),
                ttl: ttl(fetched.max_age),
            })
        };
        self.cache
            .try_get_with(url.as_str().to_string(), load)
            .await
            .map(|c| c.doc)
            .map_err(|e| (*e).clone())
    }
}

/// The tenant's policy admits documents from `url`'s host.
async fn admitted(
    store: &Store,
    tenant: &Tenant,
    url: &url::Url,
) -> Result<(), ClientMetadataError> {
    let policy = store
        .metadata_document_policy(&tenant.id)
        .await
        .map_err(|e| ClientMetadataError::Directory(e.to_string()))?;
    let host = url.host_str().unwrap_or_default();
    if policy.mode == MetadataDocumentMode::Off {
        return Err(ClientMetadataError::Disabled);
    }
    if !policy.admits(host) {
        return Err(ClientMetadataError::HostRefused(host.to_string()));
    }
    Ok(())
}

/// `/authorize` with a URL `client_id`: the tenant's policy, then the checked document.
pub async fn authorize_document(
    store: &Store,
    documents: &ClientDocuments,
    tenant: &Tenant,
    client_id: &str,
) -> Result<Arc<ClientDocument>, ClientMetadataError> {
    let url = client_url(client_id)?;
    admitted(store, tenant, &url).await?;
    documents.get(&url).await
}

/// The application made for the document's URL, created on its first use in the tenant.
/// Creations count against the tenant's registration rate limit (docs/sts.md §16.3): every
/// new URL is a new directory object, and URLs cost an attacker nothing.
pub async fn application(
    store: &Store,
    tenant: &Tenant,
    doc: &ClientDocument,
    now: i64,
) -> Result<Uuid, ClientMetadataError> {
    let directory =
        |e: agentid_directory::DirectoryError| ClientMetadataError::Directory(e.to_string());
    if let Some(app) = store
        .metadata_document_client(&tenant.id, &doc.url)
        .await
        .map_err(directory)?
    {
        return Ok(app);
    }
    if !admit(&tenant.id, now) {
        return Err(ClientMetadataError::RateLimited);
    }
    store
        .ensure_metadata_document_client(
            &tenant.id,
            &doc.url,
            &doc.display_name(),
            &doc.redirect_uris,
            now,
        )
        .await
        .map_err(directory)
}

/// `/token` with a URL `client_id`: the application made for it at `/authorize`, while the
/// tenant's policy still admits its host. The document is not fetched again: the code was
/// bound to a redirect URI checked against it, and refresh tokens to the application.
pub async fn token_client(
    store: &Store,
    tenant: &Tenant,
    client_id: &str,
) -> Result<Option<Uuid>, agentid_directory::DirectoryError> {
    let Ok(url) = client_url(client_id) else {
        return Ok(None);
    };
    let policy = store.metadata_document_policy(&tenant.id).await?;
    if !policy.admits(url.host_str().unwrap_or_default()) {
        return Ok(None);
    }
    store
        .metadata_document_client(&tenant.id, url.as_str())
        .await
}

#[cfg(test)]
mod tests;
