//! Which TLS an MCP target's connection uses, decided once at load.
//!
//! `backendTLS` may be set on the route, on the route's backend (`backends[].policies`) and on
//! each MCP target (`targets[].policies`), as in AgentGateway's schema. The most specific level
//! present wins as a whole (target > backend > route, docs/gateway.md §5.6): `backendTLS: {}` on the
//! route — the guide's MCP route — puts every target of that route on TLS with the system roots
//! (plus `--ca-file`). A target given as an `https://` URL uses TLS with the system roots when
//! no level sets `backendTLS`. Nothing else turns TLS on or off: there is no guess from the host
//! name or the port, and a target that resolves to TLS is never dialled in plaintext — its URL's
//! scheme is set from the composed policy, so the URL and the client's TLS settings cannot
//! disagree.

use super::model::{TargetEndpoint, TlsPolicy};
use std::sync::Arc;

/// The most specific `backendTLS` of `levels`, which run from least to most specific.
pub fn compose(levels: &[Option<&Arc<TlsPolicy>>]) -> Option<Arc<TlsPolicy>> {
    levels.iter().rev().find_map(|l| l.cloned())
}

/// TLS with the system roots (plus `--ca-file`) and full verification: `backendTLS: {}`.
pub fn system_roots() -> Arc<TlsPolicy> {
    Arc::new(TlsPolicy::default())
}

/// Joins a target's URL with the composed policy. `url` carries the scheme the config wrote
/// (`http` for `host:port` forms); `composed` is [`compose`]'s result. Returns the endpoint and
/// whether an `http://` URL was moved to TLS because a `backendTLS` applies (worth a warning).
pub fn endpoint(mut url: url::Url, composed: Option<Arc<TlsPolicy>>) -> (TargetEndpoint, bool) {
    let written_https = url.scheme() == "https";
    let tls = match composed {
        Some(policy) => Some(policy),
        None if written_https => Some(system_roots()),
        None => None,
    };
    let upgraded = tls.is_some() && !written_https;
    if upgraded {
        // http → https is always a valid scheme change for a URL with a host.
        let _ = url.set_scheme("https");
    }
    (TargetEndpoint { url, tls }, upgraded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(root: &str) -> Arc<TlsPolicy> {
        let mut p = (*system_roots()).clone();
        p.root = Some(root.into());
        Arc::new(p)
    }

    #[test]
    fn most_specific_level_wins() {
        let route = policy("route.pem");
        let target = policy("target.pem");
        assert_eq!(compose(&[Some(&route), None, None]), Some(route.clone()));
        assert_eq!(
            compose(&[Some(&route), None, Some(&target)]),
            Some(target.clone())
        );
        assert_eq!(compose(&[None, None, None]), None);
    }

    #[test]
    fn scheme_follows_the_policy() {
        let http = url::Url::parse("http://mcp.exa.ai:443/mcp").unwrap();
        let (e, upgraded) = endpoint(http.clone(), Some(system_roots()));
        assert_eq!(e.url.scheme(), "https");
        assert_eq!(e.url.port_or_known_default(), Some(443));
        assert!(e.tls.is_some() && upgraded);
        let (e, upgraded) = endpoint(http, None);
        assert_eq!(e.url.scheme(), "http");
        assert!(e.tls.is_none() && !upgraded);
        let https = url::Url::parse("https://example.test/mcp").unwrap();
        let (e, upgraded) = endpoint(https, None);
        assert!(e.tls.is_some() && !upgraded);
    }
}
