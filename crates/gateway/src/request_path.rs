//! The one canonical form of a request's path and query, computed once at the edge.
//!
//! Every later step reads this value and nothing else: route selection, `jwtAuth`,
//! `authorization` (`request.path` in CEL), `urlRewrite`, the audit event, and the URL sent
//! upstream. So the path a route authorizes is, byte for byte, the path its upstream receives.
//! (Before, routing and policy saw the raw path while the upstream URL went through a URL parser
//! that removes dot segments: `/public/../admin` was authorized as `/public/…` and reached
//! `/admin`.)
//!
//! # What the canonical form is
//!
//! RFC 3986 §6.2.2 syntax-based normalisation, then refusal of everything two parsers could
//! read differently:
//!
//! - Percent-encodings are normalised: hex digits upper case (`%c3` → `%C3`), and encoded
//!   unreserved characters (`ALPHA DIGIT - . _ ~`) decoded (`%41` → `A`, `%2e` → `.`).
//! - **Dot segments are refused (400)**, not resolved: a segment that is `.` or `..` after
//!   decoding — literal, `%2e`, `%2E`, `.%2e`, `%2E%2e`, … Resolving them would be safe only
//!   if every upstream resolved them the same way; refusing leaves nothing to interpret. Real
//!   clients never send them: browsers, curl, and the URL libraries of Rust, Python, Go, Node
//!   and Java remove dot segments before sending.
//! - **Empty segments are collapsed**: `/a//b` is `/a/b`, `//admin` is `/admin`. Many upstreams
//!   (nginx's `merge_slashes`, most web frameworks) merge slashes, so keeping `//` would let
//!   `//admin` pass a `/` route and land on `/admin`. Collapsing instead of refusing keeps the
//!   clients working that join a base URL ending in `/` with a path starting with `/`. A
//!   trailing `/` is kept (`/a/` stays `/a/`).
//! - **`%2F` and `%5C` are refused (400)**: an encoded slash or backslash is a segment boundary
//!   for an upstream that decodes before routing and none for one that does not.
//! - **A literal `\` is refused (400)**: URL parsers turn it into `/` for http(s).
//! - **A literal `;` is refused (400)**: servlet containers cut path parameters off before
//!   routing, so `/admin;x` (or `/public/..;/admin`) would reach another path than the one
//!   routed. `%3B` is data and is kept.
//! - **Control characters and NUL are refused (400)**, literal or percent-encoded
//!   (`%00`–`%1F`, `%7F`) in the path, literal in the query; so is a `%` not followed by two
//!   hex digits in the path.
//! - Every other byte outside RFC 3986's `pchar` set (space, `"`, `<`, `>`, `` ` ``, `{`, `}`,
//!   `|`, `^`, `[`, `]`, non-ASCII) is percent-encoded, so no later parser re-encodes it.
//! - The query keeps its percent-encodings as they are; bytes outside RFC 3986's query set,
//!   and `'` (which URL parsers encode for http(s)), are percent-encoded.
//! - **Overlong targets are refused (414)**: path plus query above [`MAX_TARGET_BYTES`].
//!
//! The result is a fixed point: normalising it again returns it unchanged, and `url::Url`
//! (the parser under the upstream HTTP client) leaves its path and query byte-identical;
//! [`RequestTarget::upstream_url`] checks that on every request and refuses the request rather
//! than forward a path it did not authorize. The property tests in `tests/properties.rs` and
//! the attack table in `tests/paths.rs` hold the module to this; `docs/gateway-security.md`
//! gives the same rules for operators.

use std::fmt;

/// Longest request target (path plus query, as received) accepted, in bytes.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Why a request target has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path contains a dot segment ('.' or '..', literal or percent-encoded)")]
    DotSegment,
    #[error("the path contains an encoded '/' or '\\' (%2F or %5C)")]
    EncodedSeparator,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains ';' (path parameters are not accepted)")]
    PathParameter,
    #[error("the request target contains a control character")]
    ControlCharacter,
    #[error("the path contains a '%' that is not followed by two hex digits")]
    BadPercentEncoding,
    /// A URL parser would change the path or query (never expected: the tests prove the
    /// canonical form is a fixed point; the check stays as the last line of defence).
    #[error("the upstream URL would not carry the authorized path unchanged")]
    Unstable,
}

impl PathError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            PathError::TooLong { .. } => http::StatusCode::URI_TOO_LONG,
            PathError::Unstable => http::StatusCode::INTERNAL_SERVER_ERROR,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The `code` of the gateway's JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            PathError::TooLong { .. } => "uri_too_long",
            PathError::Unstable => "internal_error",
            _ => "invalid_path",
        }
    }
}

/// A path in canonical form (see the module documentation): starts with `/`, no dot segments,
/// no empty segments except a trailing `/`, only `pchar` bytes and upper-case `%XX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalPath(String);

/// A query in canonical form (see the module documentation), without its `?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalQuery(String);

/// A request target (`path[?query]`) in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestTarget {
    pub path: CanonicalPath,
    pub query: Option<CanonicalQuery>,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus `%` (handled apart) and minus `;` (refused).
fn is_path_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+')
        || matches!(b, b',' | b'=' | b':' | b'@')
}

/// RFC 3986 query characters minus `'` (URL parsers encode it for http(s)); `%` is kept as is.
fn is_query_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@'
        )
        || matches!(b, b'/' | b'?' | b'%')
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_encoded(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// One segment (no `/` inside) in canonical form.
fn canonical_segment(raw: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex_value);
                let lo = raw.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let decoded = hi << 4 | lo;
                if decoded == b'/' || decoded == b'\\' {
                    return Err(PathError::EncodedSeparator);
                }
                if is_control(decoded) {
                    return Err(PathError::ControlCharacter);
                }
                if is_unreserved(decoded) {
                    out.push(char::from(decoded));
                } else {
                    push_encoded(&mut out, decoded);
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::PathParameter),
            _ if is_control(b) => return Err(PathError::ControlCharacter),
            _ if is_path_byte(b) => {
                out.push(char::from(b));
                i += 1;
            }
            _ => {
                push_encoded(&mut out, b);
                i += 1;
            }
        }
    }
    if out == "." || out == ".." {
        return Err(PathError::DotSegment);
    }
    Ok(out)
}

impl CanonicalPath {
    /// The canonical form of a raw path (as received, without the query).
    pub fn parse(raw: &str) -> Result<CanonicalPath, PathError> {
        if raw.len() > MAX_TARGET_BYTES {
            return Err(PathError::TooLong {
                limit: MAX_TARGET_BYTES,
            });
        }
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(PathError::NotAbsolute);
        };
        let mut out = String::with_capacity(raw.len());
        let mut trailing_slash = false;
        for segment in rest.as_bytes().split(|b| *b == b'/') {
            if segment.is_empty() {
                // `//` collapses; a final empty segment is the trailing `/`.
                trailing_slash = true;
                continue;
            }
            trailing_slash = false;
            out.push('/');
            out.push_str(&canonical_segment(segment)?);
        }
        if out.is_empty() || trailing_slash {
            out.push('/');
        }
        Ok(CanonicalPath(out))
    }

    pub fn root() -> CanonicalPath {
        CanonicalPath("/".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `urlRewrite.path.prefix`: the matched `prefix` (canonical, without trailing `/`, empty
    /// for `/`) replaced by `replacement` (empty, or canonical without trailing `/`); exactly
    /// one `/` separates the two parts, and an empty result is `/`.
    pub fn replace_prefix(
        &self,
        prefix: &str,
        replacement: &str,
    ) -> Result<CanonicalPath, PathError> {
        let rest = self.0.strip_prefix(prefix).unwrap_or(&self.0);
        let joined = if rest.is_empty() {
            replacement.to_string()
        } else {
            format!(
                "{}/{}",
                replacement.trim_end_matches('/'),
                rest.trim_start_matches('/')
            )
        };
        if joined.is_empty() {
            return Ok(CanonicalPath::root());
        }
        CanonicalPath::parse(&joined)
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl CanonicalQuery {
    pub fn parse(raw: &str) -> Result<CanonicalQuery, PathError> {
        if raw.len() > MAX_TARGET_BYTES {
            return Err(PathError::TooLong {
                limit: MAX_TARGET_BYTES,
            });
        }
        let mut out = String::with_capacity(raw.len());
        for &b in raw.as_bytes() {
            if is_control(b) {
                return Err(PathError::ControlCharacter);
            }
            if is_query_byte(b) {
                out.push(char::from(b));
            } else {
                push_encoded(&mut out, b);
            }
        }
        Ok(CanonicalQuery(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RequestTarget {
    /// The canonical target of an inbound request (origin form, absolute form and HTTP/2 alike:
    /// only the path and query are read here).
    pub fn from_uri(uri: &http::Uri) -> Result<RequestTarget, PathError> {
        let query_len = uri.query().map_or(0, |q| q.len() + 1);
        if uri.path().len() + query_len > MAX_TARGET_BYTES {
            return Err(PathError::TooLong {
                limit: MAX_TARGET_BYTES,
            });
        }
        Ok(RequestTarget {
            path: CanonicalPath::parse(uri.path())?,
            query: uri.query().map(CanonicalQuery::parse).transpose()?,
        })
    }

    /// The canonical form of a `path[?query]` string (upstream paths composed from the config).
    pub fn parse(path_and_query: &str) -> Result<RequestTarget, PathError> {
        if path_and_query.len() > MAX_TARGET_BYTES {
            return Err(PathError::TooLong {
                limit: MAX_TARGET_BYTES,
            });
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        Ok(RequestTarget {
            path: CanonicalPath::parse(path)?,
            query: query.map(CanonicalQuery::parse).transpose()?,
        })
    }

    pub fn with_path(&self, path: CanonicalPath) -> RequestTarget {
        RequestTarget {
            path,
            query: self.query.clone(),
        }
    }

    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path.0, q.0),
            None => self.path.0.clone(),
        }
    }

    /// The inbound URI with its path and query replaced by the canonical ones (scheme and
    /// authority kept), for the CEL `request` variables.
    pub fn to_http_uri(&self, original: &http::Uri) -> Result<http::Uri, PathError> {
        let mut builder = http::Uri::builder();
        if let Some(scheme) = original.scheme() {
            builder = builder.scheme(scheme.clone());
        }
        if let Some(authority) = original.authority() {
            builder = builder.authority(authority.clone());
        }
        builder
            .path_and_query(self.path_and_query())
            .build()
            .map_err(|_| PathError::Unstable)
    }

    /// The upstream URI `{scheme}://{authority}{path}[?{query}]` for the hyper client, refused
    /// unless `http`'s parser kept path and query byte for byte (as [`Self::upstream_url`]).
    pub fn upstream_uri(&self, scheme: &str, authority: &str) -> Result<http::Uri, PathError> {
        let uri = http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(self.path_and_query())
            .build()
            .map_err(|_| PathError::Unstable)?;
        let query = self.query.as_ref().map(CanonicalQuery::as_str);
        if uri.path() != self.path.as_str() || uri.query() != query {
            return Err(PathError::Unstable);
        }
        Ok(uri)
    }

    /// The upstream URL `{scheme}://{authority}{path}[?{query}]`, refused unless the URL parser
    /// kept path and query byte for byte.
    pub fn upstream_url(&self, scheme: &str, authority: &str) -> Result<url::Url, PathError> {
        let text = format!("{scheme}://{authority}{}", self.path_and_query());
        let url = url::Url::parse(&text).map_err(|_| PathError::Unstable)?;
        let query = self.query.as_ref().map(CanonicalQuery::as_str);
        if url.path() != self.path.as_str() || url.query() != query {
            return Err(PathError::Unstable);
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Result<String, PathError> {
        CanonicalPath::parse(p).map(|c| c.0)
    }

    #[test]
    fn normalises_per_rfc_3986() {
        assert_eq!(canon("/").unwrap(), "/");
        assert_eq!(canon("/a/b").unwrap(), "/a/b");
        assert_eq!(canon("/a/b/").unwrap(), "/a/b/");
        assert_eq!(canon("/%61%62%7e%2D").unwrap(), "/ab~-");
        assert_eq!(canon("/%c3%a9").unwrap(), "/%C3%A9");
        assert_eq!(canon("/a%2ab").unwrap(), "/a%2Ab");
        assert_eq!(canon("/a b\"{}").unwrap(), "/a%20b%22%7B%7D");
        assert_eq!(canon("/é").unwrap(), "/%C3%A9");
        assert_eq!(canon("/a%25b").unwrap(), "/a%25b");
        assert_eq!(canon("/...").unwrap(), "/...");
        assert_eq!(canon("/.well-known/x").unwrap(), "/.well-known/x");
    }

    #[test]
    fn collapses_empty_segments() {
        assert_eq!(canon("//").unwrap(), "/");
        assert_eq!(canon("//admin").unwrap(), "/admin");
        assert_eq!(canon("/a//b").unwrap(), "/a/b");
        assert_eq!(canon("/a//").unwrap(), "/a/");
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        for (p, e) in [
            ("/a/../b", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/a/%2e%2e/b", PathError::DotSegment),
            ("/a/%2E%2e/b", PathError::DotSegment),
            ("/a/.%2e/b", PathError::DotSegment),
            ("/a/%2e./b", PathError::DotSegment),
            ("/a/%2e", PathError::DotSegment),
            ("/a/..%2fb", PathError::EncodedSeparator),
            ("/a/%2Fb", PathError::EncodedSeparator),
            ("/a/%5cb", PathError::EncodedSeparator),
            ("/a\\..\\b", PathError::Backslash),
            ("/a/..;/b", PathError::PathParameter),
            ("/a;x=1", PathError::PathParameter),
            ("/a/%00", PathError::ControlCharacter),
            ("/a/\u{0}", PathError::ControlCharacter),
            ("/a/%0a", PathError::ControlCharacter),
            ("/a/%7F", PathError::ControlCharacter),
            ("/a/%", PathError::BadPercentEncoding),
            ("/a/%g1", PathError::BadPercentEncoding),
            ("/a/%4", PathError::BadPercentEncoding),
            ("a/b", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ] {
            assert_eq!(canon(p), Err(e.clone()), "{p}");
        }
        let long = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(
            canon(&long),
            Err(PathError::TooLong {
                limit: MAX_TARGET_BYTES
            })
        );
    }

    #[test]
    fn query_is_encoded_not_reinterpreted() {
        let q = |s: &str| CanonicalQuery::parse(s).map(|c| c.0);
        assert_eq!(q("a=1&b=%2f").unwrap(), "a=1&b=%2f");
        assert_eq!(q("a='x y'").unwrap(), "a=%27x%20y%27");
        assert_eq!(q("a=%").unwrap(), "a=%");
        assert_eq!(q("a=\n"), Err(PathError::ControlCharacter));
    }

    #[test]
    fn prefix_rewrite_stays_canonical() {
        let p = CanonicalPath::parse("/llm/openai/x").unwrap();
        assert_eq!(p.replace_prefix("/llm", "").unwrap().0, "/openai/x");
        assert_eq!(p.replace_prefix("/llm", "/v1").unwrap().0, "/v1/openai/x");
        let bare = CanonicalPath::parse("/llm").unwrap();
        assert_eq!(bare.replace_prefix("/llm", "").unwrap().0, "/");
        assert_eq!(bare.replace_prefix("/llm", "/v1").unwrap().0, "/v1");
        let slash = CanonicalPath::parse("/llm/").unwrap();
        assert_eq!(slash.replace_prefix("/llm", "/v1").unwrap().0, "/v1/");
        assert_eq!(slash.replace_prefix("/llm", "").unwrap().0, "/");
    }

    #[test]
    fn upstream_uri_keeps_the_path_or_refuses() {
        let t = RequestTarget::parse("/a/%C3%A9/b?x='1'").unwrap();
        let uri = t.upstream_uri("http", "127.0.0.1:9").unwrap();
        assert_eq!(uri.path(), "/a/%C3%A9/b");
        assert_eq!(uri.query(), Some("x=%271%27"));
        assert_eq!(uri.authority().unwrap().as_str(), "127.0.0.1:9");
        // An authority that would carry a path, a query or a space is refused, as is none.
        for bad in ["127.0.0.1:9/x", "a b:9", "127.0.0.1:9?q", ""] {
            assert!(t.upstream_uri("http", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_url_keeps_the_path() {
        let t = RequestTarget::parse("/a/%C3%A9/b?x='1'").unwrap();
        let url = t.upstream_url("http", "127.0.0.1:9").unwrap();
        assert_eq!(url.path(), "/a/%C3%A9/b");
        assert_eq!(url.query(), Some("x=%271%27"));
    }
}
