//! The one home for fetching issuer metadata and key sets over HTTP, with caps on size and
//! time. Two kinds of fetcher:
//!
//! - [`Fetcher::configured`]: the operator's own client for URLs the operator configured
//!   (gateway `jwtAuth`, sidecar authority, demo services). Used as it is.
//! - [`Fetcher::guarded`]: for URLs that requests can influence (the STS's federated issuers).
//!   Redirects are followed only to https on the same host (at most 3); proxies are not used;
//!   and unless the policy allows private addresses (an issuer the tenant explicitly trusts),
//!   every address a host resolves to must be public — loopback, private (RFC 1918, ULA),
//!   link-local, CGNAT, multicast and unspecified addresses are refused, checked on the
//!   resolved addresses (so a public name pointing at 127.0.0.1 is refused too). A policy may
//!   carry a CA bundle that replaces the built-in roots for that issuer (a Kubernetes cluster's
//!   issuer is served under the cluster's own CA). The STS also fetches MCP clients' client ID
//!   metadata documents through it (docs/sts.md §16.4).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At most this many guarded clients (one per trust setting and CA bundle) are kept.
const MAX_CLIENTS: usize = 64;
const MAX_REDIRECTS: usize = 3;

/// Limits and trust for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// For the whole exchange: connect, headers and body.
    pub timeout: Duration,
    /// The largest document accepted.
    pub max_bytes: usize,
    /// `http` URLs may be fetched (otherwise only `https`).
    pub allow_http: bool,
    /// Guarded fetchers only: private, loopback and link-local addresses may be reached.
    pub allow_private: bool,
    /// Guarded fetchers only: PEM CA certificates that replace the built-in roots.
    pub ca_bundle: Option<Arc<str>>,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            timeout: Duration::from_secs(5),
            max_bytes: 256 * 1024,
            allow_http: false,
            allow_private: false,
            ca_bundle: None,
        }
    }
}

/// What is being fetched; it decides the `Accept` header. Servers that negotiate strictly
/// refuse a mismatch: Kubernetes' API server answers `/openid/v1/jwks` only to clients that
/// accept `application/jwk-set+json` (RFC 7517 §8.5) or anything (406 for `application/json`
/// alone), and its discovery document only as `application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// An OpenID Connect or OAuth metadata document.
    Metadata,
    /// A JSON Web Key Set.
    KeySet,
    /// A compact JWS (the revocation feed, docs/sts.md §17).
    SignedDocument,
}

impl Document {
    pub fn accept(self) -> &'static str {
        match self {
            Document::Metadata => "application/json",
            Document::KeySet => "application/jwk-set+json, application/json;q=0.9",
            Document::SignedDocument => "application/jwt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("'{0}' is not an absolute URL")]
    BadUrl(String),
    #[error("only https URLs can be fetched")]
    NotHttps,
    #[error("{0} is not a public address (trust the issuer to reach it)")]
    PrivateAddress(String),
    #[error("the CA bundle is not usable: {0}")]
    CaBundle(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// Guarded clients by (private addresses allowed, SHA-256 of the CA bundle).
type GuardedClients = Mutex<HashMap<(bool, Option<[u8; 32]>), reqwest::Client>>;

enum Kind {
    Configured(reqwest::Client),
    Guarded(GuardedClients),
}

/// Fetches documents under a [`FetchPolicy`]. Cheap to share (`Arc`).
pub struct Fetcher {
    kind: Kind,
}

impl Fetcher {
    pub fn configured(client: reqwest::Client) -> Arc<Fetcher> {
        Arc::new(Fetcher {
            kind: Kind::Configured(client),
        })
    }

    pub fn guarded() -> Arc<Fetcher> {
        Arc::new(Fetcher {
            kind: Kind::Guarded(Mutex::new(HashMap::new())),
        })
    }

    fn client(&self, policy: &FetchPolicy) -> Result<reqwest::Client, FetchError> {
        let clients = match &self.kind {
            Kind::Configured(c) => return Ok(c.clone()),
            Kind::Guarded(clients) => clients,
        };
        let ca_hash = policy
            .ca_bundle
            .as_deref()
            .map(|pem| Sha256::digest(pem.as_bytes()).into());
        let key = (policy.allow_private, ca_hash);
        let mut clients = clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = guarded_client(policy)?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The body of `url` (status 2xx), at most `policy.max_bytes`, asked for as `document`.
    pub async fn get_bytes(
        &self,
        url: &str,
        document: Document,
        policy: &FetchPolicy,
    ) -> Result<Vec<u8>, FetchError> {
        Ok(self.get(url, document, policy).await?.body)
    }

    /// [`Self::get_bytes`] with what the response says about caching it.
    pub async fn get(
        &self,
        url: &str,
        document: Document,
        policy: &FetchPolicy,
    ) -> Result<Fetched, FetchError> {
        let parsed = url::Url::parse(url).map_err(|_| FetchError::BadUrl(shorten(url)))?;
        match parsed.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            _ => return Err(FetchError::NotHttps),
        }
        if matches!(self.kind, Kind::Guarded(_)) && !policy.allow_private {
            // reqwest does not resolve IP literals: check them here.
            let literal = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = literal
                && !is_public(ip)
            {
                return Err(FetchError::PrivateAddress(ip.to_string()));
            }
        }
        let client = self.client(policy)?;
        let fetch = async {
            let mut resp = client
                .get(parsed)
                .header(reqwest::header::ACCEPT, document.accept())
                .send()
                .await
                .map_err(|e| FetchError::Request(error_chain(&e)))?;
            if !resp.status().is_success() {
                return Err(FetchError::Status(resp.status().as_u16()));
            }
            let max_age = cache_max_age(resp.headers());
            if resp.content_length().unwrap_or(0) > policy.max_bytes as u64 {
                return Err(FetchError::TooLarge(policy.max_bytes));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| FetchError::Request(error_chain(&e)))?
            {
                if body.len() + chunk.len() > policy.max_bytes {
                    return Err(FetchError::TooLarge(policy.max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Fetched { body, max_age })
        };
        tokio::time::timeout(policy.timeout, fetch)
            .await
            .map_err(|_| FetchError::Request(format!("no answer within {:?}", policy.timeout)))?
    }

    /// A metadata document ([`Self::get_bytes`]) parsed as a JSON object.
    pub async fn get_json(
        &self,
        url: &str,
        policy: &FetchPolicy,
    ) -> Result<serde_json::Map<String, serde_json::Value>, FetchError> {
        let body = self.get_bytes(url, Document::Metadata, policy).await?;
        match serde_json::from_slice(&body) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Err(FetchError::NotJson("not an object".into())),
            Err(e) => Err(FetchError::NotJson(e.to_string())),
        }
    }
}

/// A fetched document and how long its server says it may be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub body: Vec<u8>,
    /// `Cache-Control: max-age` (zero for `no-store` or `no-cache`); `None` when absent.
    /// Callers clamp it to their own bounds.
    pub max_age: Option<Duration>,
}

/// The freshness `Cache-Control` gives a response; `None` when it says nothing usable.
pub fn cache_max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(n) = lower.strip_prefix("max-age=") {
                // A malformed or huge value is ignored rather than trusted.
                if let Ok(secs) = n.trim_matches('"').parse::<u64>() {
                    max_age = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    max_age
}

fn guarded_client(policy: &FetchPolicy) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first();
            let same_host = first.is_some_and(|f| {
                f.host_str() == attempt.url().host_str()
                    && f.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if attempt.url().scheme() != "https" || !same_host {
                attempt.error("redirects are followed only to https on the same host")
            } else {
                attempt.follow()
            }
        }));
    if !policy.allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    if let Some(pem) = &policy.ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| FetchError::CaBundle(e.to_string()))?;
        if certs.is_empty() {
            return Err(FetchError::CaBundle("no certificate in it".into()));
        }
        builder = builder.tls_built_in_root_certs(false);
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .build()
        .map_err(|e| FetchError::Request(error_chain(&e)))
}

/// Resolves names and keeps only public addresses; none left is an error.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let shown = all
                    .first()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_else(|| host.clone());
                return Err(
                    Box::new(FetchError::PrivateAddress(format!("{host} ({shown})")))
                        as Box<dyn std::error::Error + Send + Sync>,
                );
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A globally routable unicast address (what an issuer on the internet has).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240)
}

/// reqwest's top-level error hides the cause (certificate, refused connection): show the chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn shorten(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};
        let of = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            cache_max_age(&h)
        };
        assert_eq!(of("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(of("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(of("max-age=600, no-store"), Some(Duration::ZERO));
        assert_eq!(of("no-cache"), Some(Duration::ZERO));
        assert_eq!(of("max-age=-1"), None);
        assert_eq!(of("max-age=99999999999999999999999"), None);
        assert_eq!(of("private"), None);
        assert_eq!(cache_max_age(&HeaderMap::new()), None);
    }

    #[test]
    fn public_and_private_addresses() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "192.0.0.8",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
