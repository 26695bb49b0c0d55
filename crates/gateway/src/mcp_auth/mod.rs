//! The MCP authorization spec on a route (`mcpAuthentication`, docs/gateway.md §18): the
//! protected resource metadata of RFC 9728 served at its well-known location, and the
//! `WWW-Authenticate` challenges that send an MCP client there. Token validation itself is the
//! route's `jwtAuth` machinery (`crate::jwt`), compiled from the same policy.

use crate::body::{self, Body};
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};

/// The well-known prefix of RFC 9728 §3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A compiled `mcpAuthentication` policy, minus the validator (kept as the route's `jwt`).
#[derive(Debug, Clone)]
pub struct McpAuth {
    /// The configured absolute resource URL; `None` derives it from the request's host.
    pub resource: Option<url::Url>,
    /// The path part of the resource (`/mcp`); empty for the root.
    pub resource_path: String,
    /// Extra members of the metadata document (snake_case), as configured.
    pub extra: Map<String, Value>,
    pub authorization_servers: Vec<String>,
    pub scopes: Vec<String>,
}

/// How the request reached the gateway: for documents that name the gateway's own URLs.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub scheme: &'a str,
    /// The `Host` header as sent (with its port).
    pub host: &'a str,
}

impl McpAuth {
    /// The resource identifier: configured, or this gateway's URL for the route's path.
    pub fn resource_url(&self, o: Origin<'_>) -> String {
        match &self.resource {
            // `https://h/` is the resource `https://h` (identifiers carry no trailing `/`).
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("{}://{}{}", o.scheme, o.host, self.resource_path),
        }
    }

    /// Where the metadata is served (RFC 9728 §3.1: the well-known prefix inserted before the
    /// resource's path).
    pub fn metadata_url(&self, o: Origin<'_>) -> String {
        match &self.resource {
            Some(u) => {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!(
                    "{}://{}{port}{WELL_KNOWN}{}",
                    u.scheme(),
                    u.host_str().unwrap_or_default(),
                    self.resource_path
                )
            }
            None => format!(
                "{}://{}{WELL_KNOWN}{}",
                o.scheme, o.host, self.resource_path
            ),
        }
    }

    pub fn document(&self, o: Origin<'_>) -> Value {
        let mut doc = self.extra.clone();
        doc.insert("resource".into(), json!(self.resource_url(o)));
        doc.insert(
            "authorization_servers".into(),
            json!(self.authorization_servers),
        );
        if !self.scopes.is_empty() {
            doc.insert("scopes_supported".into(), json!(self.scopes));
        }
        doc.entry("bearer_methods_supported")
            .or_insert_with(|| json!(["header"]));
        Value::Object(doc)
    }

    /// The challenge of a 401 (`error` set when a token was sent but refused) or of a 403 for
    /// a rule that needs more (`insufficient_scope`).
    pub fn challenge(&self, o: Origin<'_>, error: Option<&str>) -> String {
        let mut v = format!(
            r#"Bearer resource_metadata="{}""#,
            quoted(&self.metadata_url(o))
        );
        if !self.scopes.is_empty() {
            v.push_str(&format!(r#", scope="{}""#, quoted(&self.scopes.join(" "))));
        }
        if let Some(e) = error {
            v.push_str(&format!(r#", error="{e}""#));
        }
        v
    }

    /// Whether a well-known request's suffix (after [`WELL_KNOWN`]) names this resource.
    pub fn serves(&self, suffix: &str) -> bool {
        suffix.trim_end_matches('/') == self.resource_path
    }
}

fn quoted(s: &str) -> String {
    s.replace(['"', '\\'], "")
}

/// Adds the challenge of a route with `mcpAuthentication` to a refusal: 401s get it (keeping a
/// refused token's `invalid_token`), 403s get `insufficient_scope`.
pub fn decorate(auth: &McpAuth, o: Origin<'_>, resp: &mut Response<Body>) {
    let value = match resp.status() {
        StatusCode::UNAUTHORIZED => {
            let invalid = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("invalid_token"));
            auth.challenge(o, invalid.then_some("invalid_token"))
        }
        StatusCode::FORBIDDEN => auth.challenge(o, Some("insufficient_scope")),
        _ => return,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    // Browser-based clients read the challenge cross-origin.
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate"),
    );
}

/// Answers a request for the metadata (GET/HEAD, or a CORS preflight) with `auth`'s document;
/// open to every origin, since the document is public and read by browser-based clients.
pub fn metadata_response(auth: &McpAuth, o: Origin<'_>, method: &Method) -> Response<Body> {
    let mut resp = if method == Method::OPTIONS {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, OPTIONS"),
        );
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("*"),
        );
        r
    } else if method == Method::GET || method == Method::HEAD {
        let doc = serde_json::to_vec(&auth.document(o)).unwrap_or_default();
        let mut r = Response::new(body::full(doc));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        r
    } else {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
        r
    };
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

#[cfg(test)]
mod tests;
