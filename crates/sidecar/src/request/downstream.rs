//! DownstreamApi proxying (docs/sidecar.md §10): the outbound URL and its confinement under
//! BaseUrl, the outbound request, and the mapping of the response into `DownstreamApiResult`.

use base64::Engine;
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownstreamError {
    #[error("optionsOverride.RelativePath must stay under the configured BaseUrl.")]
    Escapes,
    #[error("could not be reached: {0}")]
    Unreachable(String),
    #[error("did not respond in time")]
    Timeout,
    #[error("The downstream response exceeded {0} bytes.")]
    TooLarge(u64),
}

/// Headers the caller cannot set through `ExtraHeaderParameters` (§10.1).
const RESERVED: [&str; 13] = [
    "authorization",
    "proxy-authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "accept",
    "content-type",
];

pub fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Content headers reported in `headers` (§10.3).
const CONTENT_HEADERS: [&str; 11] = [
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Content-Language",
    "Content-Location",
    "Content-Disposition",
    "Content-MD5",
    "Content-Range",
    "Expires",
    "Last-Modified",
    "Allow",
];

/// `content-type` → `Content-Type`.
pub fn title_case(name: &str) -> String {
    if let Some(known) = CONTENT_HEADERS
        .iter()
        .find(|h| h.eq_ignore_ascii_case(name))
    {
        return known.to_string();
    }
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `BaseUrl` + `RelativePath` + `ExtraQueryParameters`, confined under BaseUrl.
pub fn build_url(
    base: &url::Url,
    relative: &str,
    extra_query: &[(String, String)],
) -> Result<url::Url, DownstreamError> {
    let joined = if relative.is_empty() {
        base.as_str().to_string()
    } else {
        format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            relative.trim_start_matches('/')
        )
    };
    let mut url = url::Url::parse(&joined).map_err(|_| DownstreamError::Escapes)?;
    let prefix = base.path().trim_end_matches('/');
    let path_ok = url.path() == prefix
        || url.path().starts_with(&format!("{prefix}/"))
        || (prefix.is_empty() && url.path().starts_with('/'));
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
        || !path_ok
    {
        return Err(DownstreamError::Escapes);
    }
    if !extra_query.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in extra_query {
            q.append_pair(k, v);
        }
    }
    Ok(url)
}

/// The `DownstreamApiResult` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DownstreamResult {
    pub status_code: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub content: Option<String>,
    #[serde(skip)]
    pub www_authenticate: Vec<String>,
}

pub struct OutboundRequest<'a> {
    pub url: url::Url,
    pub method: Method,
    pub token: &'a str,
    pub accept: &'a str,
    pub body: Option<(Bytes, String)>,
    pub extra_headers: &'a [(String, String)],
}

pub struct Downstream {
    http: reqwest::Client,
    pub timeout: Duration,
    max_response: u64,
    extra_response_headers: Vec<String>,
}

fn decode(body: &[u8], content_type: Option<&str>) -> String {
    let charset = content_type
        .and_then(|ct| {
            ct.split(';')
                .skip(1)
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
                .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
        })
        .unwrap_or_default();
    match charset.as_str() {
        "iso-8859-1" | "latin1" => body.iter().map(|&b| b as char).collect(),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// The claims of an `insufficient_claims` challenge, decoded (§10.2).
pub fn claims_challenge(www_authenticate: &[String]) -> Option<String> {
    for h in www_authenticate {
        if !h.contains("insufficient_claims") {
            continue;
        }
        let start = h.find("claims=\"")? + "claims=\"".len();
        let end = h[start..].find('"')? + start;
        let raw = &h[start..end];
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))
            })
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    None
}

impl Downstream {
    pub fn new(
        http: reqwest::Client,
        timeout: Duration,
        max_response: u64,
        extra_response_headers: Vec<String>,
    ) -> Self {
        Self {
            http,
            timeout,
            max_response,
            extra_response_headers,
        }
    }

    pub async fn call(&self, r: &OutboundRequest<'_>) -> Result<DownstreamResult, DownstreamError> {
        let method = reqwest::Method::from_bytes(r.method.as_str().as_bytes())
            .map_err(|_| DownstreamError::Unreachable("invalid method".into()))?;
        let mut req = self
            .http
            .request(method, r.url.clone())
            .timeout(self.timeout)
            .header("Authorization", format!("Bearer {}", r.token))
            .header("Accept", r.accept);
        for (k, v) in r.extra_headers {
            if is_reserved(k) {
                continue;
            }
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some((body, ct)) = &r.body {
            req = req.header("Content-Type", ct.as_str()).body(body.clone());
        }
        let mut resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                DownstreamError::Timeout
            } else if e.is_connect() {
                DownstreamError::Unreachable("connection failed".into())
            } else {
                DownstreamError::Unreachable("request failed".into())
            }
        })?;
        let status = resp.status().as_u16();
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut www = Vec::new();
        for (name, value) in resp.headers() {
            let n = name.as_str();
            let Ok(v) = value.to_str() else { continue };
            if n == "www-authenticate" {
                www.push(v.to_string());
            }
            let wanted = CONTENT_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(n))
                || self
                    .extra_response_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(n));
            if wanted {
                headers
                    .entry(title_case(n))
                    .or_default()
                    .push(v.to_string());
            }
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > self.max_response {
                        return Err(DownstreamError::TooLarge(self.max_response));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(DownstreamError::Timeout),
                Err(_) => return Err(DownstreamError::Unreachable("response interrupted".into())),
            }
        }
        Ok(DownstreamResult {
            status_code: status,
            headers,
            content: (!body.is_empty()).then(|| decode(&body, content_type.as_deref())),
            www_authenticate: www,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn confinement() {
        let b = base("https://graph.microsoft.com/v1.0/");
        assert_eq!(
            build_url(&b, "me", &[]).unwrap().as_str(),
            "https://graph.microsoft.com/v1.0/me"
        );
        assert_eq!(
            build_url(&b, "/users?$top=1", &[("a".into(), "b c".into())])
                .unwrap()
                .as_str(),
            "https://graph.microsoft.com/v1.0/users?$top=1&a=b+c"
        );
        assert_eq!(build_url(&b, "", &[]).unwrap().as_str(), b.as_str());
        for bad in [
            "../../admin",
            "..",
            "%2e%2e/admin",
            "..\\admin",
            "//evil.example.com/x/../../..",
        ] {
            assert_eq!(
                build_url(&b, bad, &[]),
                Err(DownstreamError::Escapes),
                "{bad}"
            );
        }
        assert!(build_url(&base("https://h:8443"), "x/../y", &[]).is_ok());
        assert_eq!(
            build_url(&base("https://h/api"), "../apix", &[]),
            Err(DownstreamError::Escapes)
        );
    }

    #[test]
    fn challenge_and_names() {
        let claims = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(claims);
        let h = format!(r#"Bearer realm="", error="insufficient_claims", claims="{b64}""#);
        assert_eq!(claims_challenge(&[h]).as_deref(), Some(claims));
        assert_eq!(claims_challenge(&["Bearer".into()]), None);
        assert_eq!(title_case("content-md5"), "Content-MD5");
        assert_eq!(title_case("request-id"), "Request-Id");
        assert!(is_reserved("AUTHORIZATION"));
        assert_eq!(decode(&[0xe9], Some("text/plain; charset=ISO-8859-1")), "é");
    }
}
