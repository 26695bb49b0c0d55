//! Listener addresses: `http://host:port` (as Kestrel spells them, including `+` and `*` for
//! every interface and `localhost` for both loopback families) or `unix:/path`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `required` is false for the best-effort companion address (`[::1]` next to `127.0.0.1`).
    Tcp {
        addr: SocketAddr,
        required: bool,
    },
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn is_loopback(&self) -> bool {
        match self {
            ListenAddr::Tcp { addr, .. } => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp { addr, .. } => write!(f, "http://{addr}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Parses one URL or a `;`-separated list (ASPNETCORE_URLS style).
pub fn parse_listen(spec: &str) -> Result<Vec<ListenAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        out.extend(parse_one(part)?);
    }
    if out.is_empty() {
        return Err(format!("'{spec}' names no address"));
    }
    Ok(out)
}

fn parse_one(url: &str) -> Result<Vec<ListenAddr>, String> {
    if let Some(path) = url.strip_prefix("unix:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return Err(format!("'{url}' has no socket path"));
        }
        return Ok(vec![ListenAddr::Unix(PathBuf::from(path))]);
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("HTTP://"))
    else {
        return Err(format!(
            "'{url}' is not http://host:port or unix:/path (inbound TLS is not supported)"
        ));
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{url}' has an unterminated IPv6 address"))?;
        (h, p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port: u16 = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("'{url}' has an invalid port"))?,
        None => 80,
    };
    let tcp = |ip: IpAddr, required| ListenAddr::Tcp {
        addr: SocketAddr::new(ip, port),
        required,
    };
    Ok(match host {
        "+" | "*" | "" => vec![
            tcp(IpAddr::V4(Ipv4Addr::UNSPECIFIED), true),
            tcp(IpAddr::V6(Ipv6Addr::UNSPECIFIED), false),
        ],
        h if h.eq_ignore_ascii_case("localhost") => vec![
            tcp(IpAddr::V4(Ipv4Addr::LOCALHOST), true),
            tcp(IpAddr::V6(Ipv6Addr::LOCALHOST), false),
        ],
        h => {
            let ip: IpAddr = h
                .parse()
                .map_err(|_| format!("'{url}': host must be an IP address, localhost, + or *"))?;
            vec![tcp(ip, true)]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kestrel_forms() {
        assert_eq!(
            parse_listen("http://127.0.0.1:5000").unwrap(),
            vec![ListenAddr::Tcp {
                addr: "127.0.0.1:5000".parse().unwrap(),
                required: true
            }]
        );
        let all = parse_listen("http://+:5000").unwrap();
        assert_eq!(all.len(), 2);
        assert!(!all[0].is_loopback());
        assert_eq!(parse_listen("http://[::1]:7").unwrap().len(), 1);
        assert_eq!(parse_listen("http://localhost:5000").unwrap().len(), 2);
        assert_eq!(
            parse_listen("unix:/run/s.sock").unwrap(),
            vec![ListenAddr::Unix("/run/s.sock".into())]
        );
        assert_eq!(
            parse_listen("http://*:1;http://127.0.0.1:2").unwrap().len(),
            3
        );
        assert!(parse_listen("https://127.0.0.1:5000").is_err());
        assert!(parse_listen("http://example.com:5000").is_err());
        assert!(parse_listen("http://127.0.0.1:x").is_err());
    }
}
