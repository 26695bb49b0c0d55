//! Graph conventions: error bodies, response headers, the `$filter` subset, `@odata.bind` URLs.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A Graph error: status, `code`, `message`.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }
    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }
    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }
    pub fn denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }
    pub fn wrong_identity_type() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "This operation cannot be performed for the specified calling identity type.",
        )
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty, invalid, expired, or not for Microsoft Graph.",
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Request_MultipleObjectsWithSameKeyValue",
            message,
        )
    }
    pub fn internal<E: std::fmt::Display>(e: E) -> Self {
        tracing::error!(error = %e, "Graph request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "General exception while processing.",
        )
    }
}

impl From<agentid_directory::DirectoryError> for GraphError {
    fn from(e: agentid_directory::DirectoryError) -> Self {
        match e {
            agentid_directory::DirectoryError::Conflict(m) => GraphError::conflict(m),
            other => GraphError::internal(other),
        }
    }
}

/// Per-request ids for Graph's headers and error `innerError`.
pub struct GraphCtx {
    pub request_id: String,
    pub client_request_id: String,
}

impl GraphCtx {
    pub fn new(headers: &HeaderMap) -> Self {
        let request_id = uuid::Uuid::new_v4().to_string();
        let client_request_id = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| uuid::Uuid::parse_str(v).is_ok())
            .map(str::to_string)
            .unwrap_or_else(|| request_id.clone());
        Self {
            request_id,
            client_request_id,
        }
    }

    fn decorate(&self, r: &mut Response) {
        let h = r.headers_mut();
        h.insert(
            "request-id",
            HeaderValue::from_str(&self.request_id).expect("uuid"),
        );
        h.insert(
            "client-request-id",
            HeaderValue::from_str(&self.client_request_id).expect("uuid"),
        );
        h.insert("odata-version", HeaderValue::from_static("4.0"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    pub fn json(&self, status: StatusCode, body: Value) -> Response {
        let mut r = (status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"),
        );
        self.decorate(&mut r);
        r
    }

    pub fn no_content(&self) -> Response {
        let mut r = StatusCode::NO_CONTENT.into_response();
        self.decorate(&mut r);
        r
    }

    pub fn error(&self, e: &GraphError) -> Response {
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let mut r = self.json(
            e.status,
            json!({"error": {"code": e.code, "message": e.message,
                "innerError": {"date": date, "request-id": self.request_id, "client-request-id": self.client_request_id}}}),
        );
        if e.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// One term of the supported `$filter` subset.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Eq(String, String),
    StartsWith(String, String),
}

/// Parses `a eq 'x' and startswith(b,'y')`; anything else is unsupported.
pub fn parse_filter(f: &str) -> Result<Vec<Term>, GraphError> {
    let unsupported = || {
        GraphError::unsupported_query(format!(
            "Unsupported or invalid query filter clause specified: '{f}'."
        ))
    };
    let mut out = Vec::new();
    for part in split_and(f) {
        let part = part.trim();
        let quoted = |s: &str| -> Option<String> {
            let s = s.trim();
            s.strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .map(|s| s.replace("''", "'"))
        };
        if let Some(inner) = part
            .strip_prefix("startswith(")
            .or_else(|| part.strip_prefix("startsWith("))
            .and_then(|s| s.strip_suffix(')'))
        {
            let (prop, val) = inner.split_once(',').ok_or_else(unsupported)?;
            out.push(Term::StartsWith(
                prop.trim().to_string(),
                quoted(val).ok_or_else(unsupported)?,
            ));
        } else if let Some((prop, val)) = part.split_once(" eq ") {
            out.push(Term::Eq(
                prop.trim().to_string(),
                quoted(val).ok_or_else(unsupported)?,
            ));
        } else {
            return Err(unsupported());
        }
    }
    if out.is_empty() {
        return Err(unsupported());
    }
    Ok(out)
}

fn split_and(f: &str) -> Vec<String> {
    // Split on " and " outside quotes.
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            in_q = !in_q;
        }
        if !in_q
            && f[f.char_indices().nth(i).map(|(b, _)| b).unwrap_or(0)..]
                .to_ascii_lowercase()
                .starts_with(" and ")
        {
            parts.push(std::mem::take(&mut cur));
            i += 5;
            continue;
        }
        cur.push(c);
        i += 1;
    }
    parts.push(cur);
    parts
}

/// Matches a property value against the filter terms (`displayName` case-insensitively).
pub fn matches(terms: &[Term], get: impl Fn(&str) -> Option<String>) -> Result<bool, GraphError> {
    for t in terms {
        let (prop, want, starts) = match t {
            Term::Eq(p, v) => (p, v, false),
            Term::StartsWith(p, v) => (p, v, true),
        };
        let Some(have) = get(prop) else {
            return Err(GraphError::unsupported_query(format!(
                "Filtering on property '{prop}' is not supported."
            )));
        };
        let (have, want) = (have.to_lowercase(), want.to_lowercase());
        let ok = if starts {
            have.starts_with(&want)
        } else {
            have == want
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The object id at the end of an `@odata.bind` / `$ref` URL (`…/users/{id}` and friends).
pub fn bind_target(url: &str) -> Option<(String, uuid::Uuid)> {
    let path = url
        .split_once("://")
        .map(|(_, rest)| rest.split_once('/').map(|(_, p)| p).unwrap_or(""))
        .unwrap_or(url);
    let mut segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let id = uuid::Uuid::parse_str(segs.pop()?).ok()?;
    let kind = segs.pop()?.to_ascii_lowercase();
    matches!(
        kind.as_str(),
        "users" | "serviceprincipals" | "directoryobjects"
    )
    .then_some((kind, id))
}

/// A segment with any Graph type-cast prefix removed and lowercased
/// (`Microsoft.Graph.AgentIdentity` → `agentidentity`).
pub fn cast(seg: &str) -> String {
    let l = seg.to_ascii_lowercase();
    l.strip_prefix("microsoft.graph.")
        .or_else(|| l.strip_prefix("graph."))
        .map(str::to_string)
        .unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_binds() {
        assert_eq!(
            parse_filter("appId eq 'abc'").unwrap(),
            vec![Term::Eq("appId".into(), "abc".into())]
        );
        let t = parse_filter("startswith(displayName, 'My') and appId eq 'x and y'").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1], Term::Eq("appId".into(), "x and y".into()));
        assert!(parse_filter("appId ne 'x'").is_err());
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            bind_target(&format!("https://graph.microsoft.com/v1.0/users/{id}")),
            Some(("users".into(), id))
        );
        assert_eq!(
            bind_target(&format!("users/{id}")),
            Some(("users".into(), id))
        );
        assert_eq!(bind_target("https://x/v1.0/groups/1"), None);
    }
}
