//! Which names the sidecar answers to: the DNS-rebinding defence (docs/sidecar.md §11).
//!
//! A web page can rebind its own DNS name to 127.0.0.1 and then read the sidecar's answers
//! from the browser, because the peer address is loopback; only the `Host` header still
//! carries the page's name. So every request — probes included — must name `localhost`, a
//! loopback address, the address its connection arrived on, or a configured name; anything
//! else is 421 Misdirected Request.
//!
//! The address the connection arrived on covers Kubernetes probes: the kubelet connects to
//! the pod IP and sends `Host: <pod IP>:<port>`. An IP literal cannot be rebound — a page whose
//! origin is that IP is not the attacker's page — so accepting the local address is safe.
//! Unix-socket connections have no name to check (browsers cannot open them).

use super::peer::Peer;
use http::HeaderMap;
use http::header::HOST;
use http::uri::Uri;
use std::net::IpAddr;

/// The names a sidecar answers to besides loopback and its own address.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Lower case, no trailing dot; `*.domain` matches subdomains of `domain`.
    names: Vec<String>,
}

impl HostPolicy {
    /// `names` as validated by the config (`Sidecar__AllowedHosts`).
    pub fn new(names: &[String]) -> Self {
        Self {
            names: names.to_vec(),
        }
    }

    /// Whether a request to `uri` with `headers`, on a connection from `peer` that arrived at
    /// `local`, names a host this sidecar serves. A request naming no host at all (HTTP/1.0)
    /// cannot come from a browser and is allowed.
    pub fn allows(
        &self,
        peer: Peer,
        local: Option<IpAddr>,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> bool {
        if peer == Peer::Unix {
            return true;
        }
        let mut hosts = headers.get_all(HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return false;
        }
        let header_ok = match header {
            None => true,
            Some(v) => v
                .to_str()
                .ok()
                .is_some_and(|h| self.allows_authority(h, local)),
        };
        // HTTP/2 `:authority` and HTTP/1.1 absolute-form targets name the host too.
        let uri_ok = uri
            .authority()
            .is_none_or(|a| self.allows_authority(a.as_str(), local));
        header_ok && uri_ok
    }

    fn allows_authority(&self, value: &str, local: Option<IpAddr>) -> bool {
        match parse_authority(value) {
            Some(Named::Ip(ip)) => is_loopback(ip) || local.is_some_and(|l| same_ip(l, ip)),
            Some(Named::Name(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost"
                    || self.names.iter().any(|n| match n.strip_prefix("*.") {
                        Some(domain) => name
                            .strip_suffix(domain)
                            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                        None => *n == name,
                    })
            }
            None => false,
        }
    }
}

/// What a `Host` value names.
enum Named<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// `host[:port]` strictly: an IPv4 address, a bracketed IPv6 address or a DNS name, then an
/// optional numeric port and nothing else (no user info, no path, nothing after `]`).
fn parse_authority(value: &str) -> Option<Named<'_>> {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port_ok)) {
            return None;
        }
        return v6
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| Named::Ip(IpAddr::V6(ip)));
    }
    let host = match value.split_once(':') {
        Some((h, p)) if port_ok(p) => h,
        Some(_) => return None,
        None => value,
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some(match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => Named::Ip(IpAddr::V4(ip)),
        Err(_) => Named::Name(host),
    })
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Equal addresses, treating `::ffff:a.b.c.d` as `a.b.c.d` (dual-stack sockets report both).
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    !canon(a).is_unspecified() && canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(policy: &HostPolicy, local: &str, host: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(HOST, HeaderValue::from_str(h).unwrap());
        }
        policy.allows(
            Peer::Tcp("127.0.0.1:50000".parse().unwrap()),
            Some(local.parse().unwrap()),
            &Uri::from_static("/healthz"),
            &headers,
        )
    }

    #[test]
    fn loopback_localhost_and_own_address_are_served() {
        let p = HostPolicy::new(&["sidecar.internal".into(), "*.agents.internal".into()]);
        for h in [
            "localhost",
            "LOCALHOST:5000",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
            "10.1.2.3:5001",
            "sidecar.internal",
            "Sidecar.Internal:5000",
            "a.agents.internal",
        ] {
            assert!(check(&p, "10.1.2.3", Some(h)), "{h}");
        }
        assert!(check(&p, "10.1.2.3", None), "no Host at all");
    }

    #[test]
    fn rebinding_names_are_refused() {
        let p = HostPolicy::new(&["sidecar.internal".into(), "*.agents.internal".into()]);
        for h in [
            "evil.example",
            "evil.example:5000",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1.evil.example:5000",
            "sidecar.internal.evil.example",
            "agents.internal",
            "xagents.internal",
            "10.9.9.9:5001",
            "0.0.0.0:5000",
            "[::]:5000",
            "user@localhost",
            "localhost@evil.example",
            "",
            "local host",
            "[::1",
            "[::1].evil.example",
            "[::1]evil.example",
            "[127.0.0.1]",
            "localhost:",
            "localhost:80x",
            "localhost:123456",
            "localhost/evil",
            "localhost:80:80",
        ] {
            assert!(!check(&p, "10.1.2.3", Some(h)), "{h}");
        }
        // An unspecified local address matches nothing.
        assert!(!check(&p, "0.0.0.0", Some("0.0.0.0:5000")));
    }

    #[test]
    fn every_name_in_the_request_counts() {
        let p = HostPolicy::default();
        let mut headers = HeaderMap::new();
        headers.append(HOST, HeaderValue::from_static("localhost"));
        headers.append(HOST, HeaderValue::from_static("evil.example"));
        let peer = Peer::Tcp("127.0.0.1:1".parse().unwrap());
        assert!(!p.allows(peer, None, &Uri::from_static("/x"), &headers));
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("localhost"));
        let absolute: Uri = "http://evil.example/AuthorizationHeader/graph"
            .parse()
            .unwrap();
        assert!(!p.allows(peer, None, &absolute, &headers));
        assert!(p.allows(Peer::Unix, None, &absolute, &HeaderMap::new()));
    }
}
