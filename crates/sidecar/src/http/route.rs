//! Route matching (docs/sidecar.md §2): path literals are ASCII case-insensitive, `{apiName}` is one
//! percent-decoded segment of 1–256 characters, a wrong method is 405 with `Allow`, anything else
//! is 404. The health listener knows only `/healthz` and `/metrics`.

use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Validate,
    AuthorizationHeader,
    AuthorizationHeaderUnauthenticated,
    DownstreamApi,
    DownstreamApiUnauthenticated,
    Healthz,
    Metrics,
    OpenApi,
}

impl RouteKind {
    /// The `route` label of the metrics.
    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Validate => "validate",
            RouteKind::AuthorizationHeader => "authorization_header",
            RouteKind::AuthorizationHeaderUnauthenticated => "authorization_header_unauthenticated",
            RouteKind::DownstreamApi => "downstream_api",
            RouteKind::DownstreamApiUnauthenticated => "downstream_api_unauthenticated",
            RouteKind::Healthz => "healthz",
            RouteKind::Metrics => "metrics",
            RouteKind::OpenApi => "openapi",
        }
    }

    /// Token routes that need a bearer (`/Validate` included).
    pub fn requires_bearer(self) -> bool {
        matches!(
            self,
            RouteKind::Validate | RouteKind::AuthorizationHeader | RouteKind::DownstreamApi
        )
    }

    pub fn is_unauthenticated(self) -> bool {
        matches!(
            self,
            RouteKind::AuthorizationHeaderUnauthenticated | RouteKind::DownstreamApiUnauthenticated
        )
    }

    pub fn is_downstream(self) -> bool {
        matches!(
            self,
            RouteKind::DownstreamApi | RouteKind::DownstreamApiUnauthenticated
        )
    }

    fn allow(self) -> &'static str {
        match self {
            RouteKind::DownstreamApi | RouteKind::DownstreamApiUnauthenticated => {
                "GET, POST, PUT, PATCH, DELETE"
            }
            RouteKind::Healthz => "GET, HEAD",
            _ => "GET",
        }
    }

    fn accepts(self, m: &Method) -> bool {
        match self {
            RouteKind::DownstreamApi | RouteKind::DownstreamApiUnauthenticated => [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ]
            .contains(m),
            RouteKind::Healthz => m == Method::GET || m == Method::HEAD,
            _ => m == Method::GET,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    Found {
        kind: RouteKind,
        api: Option<String>,
    },
    MethodNotAllowed {
        kind: RouteKind,
        allow: &'static str,
    },
    NotFound,
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Main { openapi: bool },
    Health,
}

const API_ROUTES: [(&str, RouteKind); 4] = [
    ("AuthorizationHeader", RouteKind::AuthorizationHeader),
    (
        "AuthorizationHeaderUnauthenticated",
        RouteKind::AuthorizationHeaderUnauthenticated,
    ),
    ("DownstreamApi", RouteKind::DownstreamApi),
    (
        "DownstreamApiUnauthenticated",
        RouteKind::DownstreamApiUnauthenticated,
    ),
];

fn decode_segment(raw: &str) -> Option<String> {
    let s = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    let chars = s.chars().count();
    ((1..=256).contains(&chars) && !s.contains('/')).then_some(s)
}

pub fn match_route(listener: Listener, method: &Method, path: &str) -> RouteMatch {
    let Some(rest) = path.strip_prefix('/') else {
        return RouteMatch::NotFound;
    };
    // One trailing slash is tolerated, as ASP.NET Core routing does.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segs: Vec<&str> = rest.split('/').collect();
    let found = match (listener, segs.as_slice()) {
        (_, [s]) if s.eq_ignore_ascii_case("healthz") => Some((RouteKind::Healthz, None)),
        (_, [s]) if s.eq_ignore_ascii_case("metrics") => Some((RouteKind::Metrics, None)),
        (Listener::Health, _) => None,
        (Listener::Main { .. }, [s]) if s.eq_ignore_ascii_case("Validate") => {
            Some((RouteKind::Validate, None))
        }
        (Listener::Main { openapi: true }, [a, b])
            if a.eq_ignore_ascii_case("openapi") && b.eq_ignore_ascii_case("v1.json") =>
        {
            Some((RouteKind::OpenApi, None))
        }
        (Listener::Main { .. }, [lit, api]) => API_ROUTES
            .iter()
            .find(|(l, _)| l.eq_ignore_ascii_case(lit))
            .and_then(|(_, kind)| Some((*kind, Some(decode_segment(api)?)))),
        _ => None,
    };
    match found {
        None => RouteMatch::NotFound,
        Some((kind, api)) if kind.accepts(method) => RouteMatch::Found { kind, api },
        Some((kind, _)) => RouteMatch::MethodNotAllowed {
            kind,
            allow: kind.allow(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Listener = Listener::Main { openapi: false };

    #[test]
    fn literals_are_case_insensitive_and_api_is_decoded() {
        assert_eq!(
            match_route(MAIN, &Method::GET, "/authorizationheader/GRAPH"),
            RouteMatch::Found {
                kind: RouteKind::AuthorizationHeader,
                api: Some("GRAPH".into())
            }
        );
        assert_eq!(
            match_route(MAIN, &Method::GET, "/AuthorizationHeader/my%20api/"),
            RouteMatch::Found {
                kind: RouteKind::AuthorizationHeader,
                api: Some("my api".into())
            }
        );
        assert_eq!(
            match_route(MAIN, &Method::GET, "/AuthorizationHeader/a%2Fb"),
            RouteMatch::NotFound
        );
        assert_eq!(
            match_route(MAIN, &Method::GET, "/AuthorizationHeader/"),
            RouteMatch::NotFound
        );
        assert_eq!(
            match_route(
                MAIN,
                &Method::GET,
                &format!("/AuthorizationHeader/{}", "a".repeat(257))
            ),
            RouteMatch::NotFound
        );
        assert_eq!(
            match_route(MAIN, &Method::GET, "/nope"),
            RouteMatch::NotFound
        );
    }

    #[test]
    fn methods() {
        assert_eq!(
            match_route(MAIN, &Method::POST, "/AuthorizationHeader/test"),
            RouteMatch::MethodNotAllowed {
                kind: RouteKind::AuthorizationHeader,
                allow: "GET"
            }
        );
        assert!(matches!(
            match_route(MAIN, &Method::PATCH, "/DownstreamApi/x"),
            RouteMatch::Found { .. }
        ));
        assert!(matches!(
            match_route(MAIN, &Method::HEAD, "/healthz"),
            RouteMatch::Found { .. }
        ));
    }

    #[test]
    fn health_listener_serves_only_health_and_metrics() {
        assert_eq!(
            match_route(Listener::Health, &Method::GET, "/AuthorizationHeader/x"),
            RouteMatch::NotFound
        );
        assert_eq!(
            match_route(Listener::Health, &Method::GET, "/Validate"),
            RouteMatch::NotFound
        );
        assert!(matches!(
            match_route(Listener::Health, &Method::GET, "/metrics"),
            RouteMatch::Found { .. }
        ));
        assert_eq!(
            match_route(MAIN, &Method::GET, "/openapi/v1.json"),
            RouteMatch::NotFound
        );
    }
}
