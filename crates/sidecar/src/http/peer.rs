//! Who is calling: the caller check of docs/sidecar.md §11 (S2), by peer address. The peer address
//! alone cannot tell a local agent from a browser page whose DNS name was rebound to loopback;
//! the `Host` check of [`super::host`] covers that.

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A Unix-socket peer: always local.
    Unix,
}

impl Peer {
    /// Loopback: `127.0.0.0/8`, `::1`, `::ffff:127.0.0.0/104`, or a Unix socket.
    pub fn is_local(&self) -> bool {
        match self {
            Peer::Unix => true,
            Peer::Tcp(addr) => match addr.ip() {
                IpAddr::V4(v4) => v4.is_loopback(),
                IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_forms() {
        for a in [
            "127.0.0.1:1",
            "127.9.9.9:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(Peer::Tcp(a.parse().unwrap()).is_local(), "{a}");
        }
        for a in [
            "203.0.113.10:1",
            "[::ffff:203.0.113.10]:1",
            "[2001:db8::1]:1",
            "0.0.0.0:1",
        ] {
            assert!(!Peer::Tcp(a.parse().unwrap()).is_local(), "{a}");
        }
        assert!(Peer::Unix.is_local());
    }
}
