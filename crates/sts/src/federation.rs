//! Signing keys of external issuers (workload identity federation): a stored JWKS from a
//! trusted-issuer record, or OpenID Connect discovery through the shared key cache and its
//! guarded fetcher (https only, redirects to the same host only, size and time caps, public
//! addresses only unless the tenant trusts the issuer, whose own CA bundle is then used).

use agentid_claims::verify::{
    Discovery, FetchPolicy, Fetcher, KeyCache, KeyCaches, KeySet, RefreshPolicy, SourceError,
};
use agentid_directory::model::TrustedIssuer;
use std::sync::Arc;
use std::time::Duration;

/// Largest discovery or JWKS document fetched.
const MAX_BODY: usize = 256 * 1024;
/// At most this many issuers' key caches are kept (issuers come from presented assertions).
const MAX_ISSUERS: u64 = 1000;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const REFETCH_AFTER_MISS: Duration = Duration::from_secs(30);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Where an issuer's keys come from.
pub enum IssuerKeys {
    /// The trusted-issuer record's stored JWKS.
    Stored(KeySet),
    Discovered(KeyCache),
}

pub struct Federation {
    fetcher: Arc<Fetcher>,
    caches: KeyCaches,
    ttl: Duration,
}

impl Federation {
    pub fn new(ttl: Duration) -> Self {
        Self {
            fetcher: Fetcher::guarded(),
            caches: KeyCaches::new(MAX_ISSUERS, ttl.max(Duration::from_secs(60))),
            ttl,
        }
    }

    /// What may be fetched for `issuer`: a trusted issuer may live on a private address, over
    /// http when it allows it, under its own CA.
    pub fn fetch_policy(trusted: Option<&TrustedIssuer>) -> FetchPolicy {
        FetchPolicy {
            timeout: FETCH_TIMEOUT,
            max_bytes: MAX_BODY,
            allow_http: trusted.is_some_and(|t| t.allow_http),
            allow_private: trusted.is_some(),
            ca_bundle: trusted.and_then(|t| t.ca_bundle.clone()).map(Arc::from),
        }
    }

    /// The keys of `issuer`: the stored set of its trusted-issuer record, else the discovery
    /// cache (created on first use, replaced when the trust setting changed).
    pub async fn keys(
        &self,
        issuer: &str,
        trusted: Option<&TrustedIssuer>,
    ) -> Result<IssuerKeys, SourceError> {
        if let Some(set) = trusted.and_then(|t| t.jwks.as_ref()) {
            return Ok(IssuerKeys::Stored(KeySet::from_jwks(set)));
        }
        let policy = Self::fetch_policy(trusted);
        let cache = self
            .caches
            .get(
                issuer,
                || {
                    Ok(KeyCache::discovery(
                        Discovery::of_issuer(issuer),
                        RefreshPolicy {
                            max_age: self.ttl,
                            unknown_kid_floor: REFETCH_AFTER_MISS,
                            retry_floor: RETRY_AFTER_FAILURE,
                            background: false,
                            require_kid: false,
                        },
                        policy.clone(),
                        self.fetcher.clone(),
                    ))
                },
                |c| c.fetch_policy() == &policy,
            )
            .await?;
        Ok(IssuerKeys::Discovered(cache))
    }

    /// Issuers whose discovery caches are kept now.
    pub async fn cached_issuers(&self) -> u64 {
        self.caches.sync().await;
        self.caches.len()
    }
}
