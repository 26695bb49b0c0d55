//! Listener and route selection, identical to AgentGateway's (docs/gateway.md §5.1).

use crate::config::model::{Bind, Listener, PathMatch, Route, RouteMatch};
use std::sync::Arc;

/// Picks the listener for a request's host: exact hostname beats wildcard beats absent.
pub fn listener<'a>(bind: &'a Bind, host: &str) -> Option<&'a Listener> {
    use crate::config::model::HostPattern;
    let mut best: Option<(u8, &Listener)> = None;
    for l in &bind.listeners {
        let rank = match &l.hostname {
            Some(HostPattern::Exact(_)) if l.hostname.as_ref().is_some_and(|h| h.matches(host)) => {
                3
            }
            Some(HostPattern::Wildcard(_))
                if l.hostname.as_ref().is_some_and(|h| h.matches(host)) =>
            {
                2
            }
            None => 1,
            _ => 0,
        };
        if rank > 0 && best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, l));
        }
    }
    best.map(|(_, l)| l)
}

/// A matching (route, match) pair with its precedence key and file order.
type Candidate<'a> = (
    (u8, usize, bool, usize, usize),
    usize,
    &'a Arc<Route>,
    &'a RouteMatch,
);

/// The request facts route matching looks at.
pub struct RequestFacts<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a str,
    pub headers: &'a http::HeaderMap,
    pub query: &'a [(String, String)],
}

/// Returns the winning route and its matching `match` entry.
pub fn select<'a>(
    listener: &'a Listener,
    req: &RequestFacts,
) -> Option<(&'a Arc<Route>, &'a RouteMatch)> {
    let mut best: Option<Candidate<'a>> = None;
    let mut order = 0usize;
    for route in &listener.routes {
        if !route.hostnames.is_empty() && !route.hostnames.iter().any(|h| h.matches(req.host)) {
            continue;
        }
        for m in &route.matches {
            order += 1;
            if !matches(m, req) {
                continue;
            }
            let (kind, len) = match &m.path {
                PathMatch::Exact(p) => (3u8, p.len()),
                PathMatch::Prefix(p) => (2, p.len()),
                PathMatch::Regex(_, pattern) => (1, pattern.len()),
            };
            let key = (
                kind,
                len,
                m.method.is_some(),
                m.headers.len(),
                m.query.len(),
            );
            // Later candidates win only when strictly better: ties keep file order.
            if best.as_ref().is_none_or(|(k, _, _, _)| key > *k) {
                best = Some((key, order, route, m));
            }
        }
    }
    best.map(|(_, _, r, m)| (r, m))
}

fn matches(m: &RouteMatch, req: &RequestFacts) -> bool {
    let path_ok = match &m.path {
        PathMatch::Exact(p) => req.path == p,
        PathMatch::Prefix(prefix) => prefix_matches(prefix, req.path),
        PathMatch::Regex(re, _) => re.is_match(req.path),
    };
    if !path_ok {
        return false;
    }
    if let Some(method) = &m.method
        && method != req.method
    {
        return false;
    }
    for (name, vm) in &m.headers {
        let joined: Vec<&str> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if joined.is_empty() || !vm.matches(&joined.join(",")) {
            return false;
        }
    }
    for (name, vm) in &m.query {
        if !req.query.iter().any(|(k, v)| k == name && vm.matches(v)) {
            return false;
        }
    }
    true
}

/// Segment-aware: `/llm` matches `/llm`, `/llm/`, `/llm/x`, never `/llmx`. The prefix is stored
/// without its trailing `/`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let path = path.trim_end_matches('/');
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::prefix_matches;

    #[test]
    fn prefix_is_segment_aware() {
        assert!(prefix_matches("/llm", "/llm"));
        assert!(prefix_matches("/llm", "/llm/"));
        assert!(prefix_matches("/llm", "/llm/openai/x"));
        assert!(!prefix_matches("/llm", "/llmx"));
        assert!(prefix_matches("", "/anything"));
    }
}
