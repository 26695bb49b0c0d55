//! Host names with and without ports, as the `Host` header, URLs and config values write them.

/// `host:port`, with an IPv6 literal in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host of a `Host` value: without its port, an IPv6 literal without brackets.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_added_and_taken_off() {
        assert_eq!(authority("h", 80), "h:80");
        assert_eq!(authority("::1", 8080), "[::1]:8080");
        assert_eq!(strip_port("h:80"), "h");
        assert_eq!(strip_port("h"), "h");
        assert_eq!(strip_port("[::1]:8080"), "::1");
    }
}
