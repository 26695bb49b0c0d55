//! The client address that lockouts and rate limits key on. `X-Forwarded-For` is anyone's
//! to write, so it counts only when the connection comes from a configured trusted proxy
//! (`server.trusted_proxies`); then the rightmost address not itself a trusted proxy is the
//! client. Resolved once per request, in the accept loop, into [`ClientAddr`].
//!
//! [`ClientAddr`]: crate::context::ClientAddr

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The address of the client behind `peer`.
pub fn resolve(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| {
        let ip = canonical(ip);
        trusted.iter().any(|n| n.contains(&ip))
    };
    if trusted.is_empty() || !is_trusted(peer.ip()) {
        return peer;
    }
    // Every X-Forwarded-For header, in order, as one list; nearest hop last.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // The nearest hop the trusted chain vouches for (the peer itself to start with).
    let mut client = peer.ip();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // A malformed entry: nothing further left can be trusted.
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    SocketAddr::new(canonical(client), 0)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so both spellings share a lockout key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let proxies = vec!["10.0.0.0/24".parse::<IpNet>().unwrap()];
        // No proxies configured, or the peer is not one: the header is ignored.
        assert_eq!(resolve(peer, &xff(&["203.0.113.7"]), &[]), peer);
        let stranger: SocketAddr = "198.51.100.9:1".parse().unwrap();
        assert_eq!(
            resolve(stranger, &xff(&["203.0.113.7"]), &proxies),
            stranger
        );
        // From a trusted proxy: the rightmost untrusted hop.
        assert_eq!(
            resolve(peer, &xff(&["203.0.113.7"]), &proxies).ip(),
            ip("203.0.113.7")
        );
        assert_eq!(
            resolve(peer, &xff(&["1.1.1.1, 203.0.113.7, 10.0.0.9"]), &proxies).ip(),
            ip("203.0.113.7"),
            "a client cannot choose its address by prepending one"
        );
        assert_eq!(
            resolve(peer, &xff(&["1.1.1.1", "203.0.113.7:5555"]), &proxies).ip(),
            ip("203.0.113.7"),
            "headers are one list"
        );
        assert_eq!(
            resolve(peer, &xff(&["[2001:db8::7]:443"]), &proxies).ip(),
            ip("2001:db8::7")
        );
        // Garbage stops the walk at the last hop the chain vouches for.
        assert_eq!(
            resolve(peer, &xff(&["203.0.113.7, not-an-ip"]), &proxies).ip(),
            ip("10.0.0.5")
        );
        assert_eq!(resolve(peer, &xff(&[]), &proxies).ip(), ip("10.0.0.5"));
        // Only trusted hops: the leftmost.
        assert_eq!(
            resolve(peer, &xff(&["10.0.0.8, 10.0.0.9"]), &proxies).ip(),
            ip("10.0.0.8")
        );
        // A mapped peer address is the same peer.
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:4000".parse().unwrap();
        assert_eq!(
            resolve(mapped, &xff(&["203.0.113.7"]), &proxies).ip(),
            ip("203.0.113.7")
        );
    }
}
