//! Talking HTTP to upstreams: the clients (one pool per TLS policy, and a hyper pool for plain
//! HTTP), sending a streamed request, which header fields cross the gateway (hop-by-hop ones never
//! do), relaying a response, and describing a failure.

use crate::body::{self, Body};
use crate::config::model::TlsPolicy;
use crate::request_path::{PathError, RequestTarget};
use http::{HeaderMap, HeaderName, Method, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1), plus the proxy
/// authentication fields meant for this hop (RFC 9110 §11.7) and `Trailer`. `Connection` may
/// name more; those are dropped as well.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The fields of a message that go on to the next hop: all but the hop-by-hop ones, the ones
/// `Connection` names, `Content-Length` (the body is re-framed) and `Host` (the gateway sets
/// the upstream's own, docs/gateway.md §5.2). Used for requests and responses alike.
pub fn end_to_end_headers(src: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = src
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(src.keys_len());
    for (k, v) in src {
        let dropped = HOP_BY_HOP.contains(k)
            || k == header::CONTENT_LENGTH
            || k == header::HOST
            || named.iter().any(|n| n == k.as_str());
        if !dropped {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// Relays an upstream response, streaming its body, minus hop-by-hop headers.
fn stream_response(upstream: reqwest::Response) -> Response<Body> {
    let status = upstream.status();
    let headers = end_to_end_headers(upstream.headers());
    let stream =
        futures_util::TryStreamExt::map_err(upstream.bytes_stream(), |e| -> body::BoxError {
            Box::new(e)
        });
    let frames = futures_util::TryStreamExt::map_ok(stream, http_body::Frame::data);
    let mut resp = Response::new(http_body_util::BodyExt::boxed(
        http_body_util::StreamBody::new(frames),
    ));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Relays a response of the plain-HTTP pool, streaming its body, minus hop-by-hop headers.
fn stream_hyper_response(upstream: Response<Incoming>) -> Response<Body> {
    let (parts, incoming) = upstream.into_parts();
    let mut resp = Response::new(
        incoming
            .map_err(|e| -> body::BoxError { Box::new(e) })
            .boxed(),
    );
    *resp.status_mut() = parts.status;
    *resp.headers_mut() = end_to_end_headers(&parts.headers);
    resp
}

/// Where [`Clients::send`] sends a request: its URL, checked to carry the canonical path byte
/// for byte, and the client that takes it.
pub enum Destination {
    /// Plain HTTP, through the hyper pool.
    Plain(http::Uri),
    /// HTTPS, through the reqwest client of this TLS policy.
    Tls(url::Url, Arc<TlsPolicy>),
}

impl Destination {
    /// `{scheme}://{authority}{target}`, HTTPS when there is a TLS policy.
    pub fn new(
        policy: Option<&Arc<TlsPolicy>>,
        target: &RequestTarget,
        authority: &str,
    ) -> Result<Destination, PathError> {
        Ok(match policy {
            None => Destination::Plain(target.upstream_uri("http", authority)?),
            Some(p) => Destination::Tls(target.upstream_url("https", authority)?, p.clone()),
        })
    }
}

/// Why [`Clients::send`] has no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The TLS policy's client could not be built.
    #[error("{0}")]
    Client(String),
    /// Connecting, sending or reading the response head failed: the error and its causes.
    #[error("{0}")]
    Failed(String),
}

/// An error and its causes in one line, each cause once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

/// The plain-HTTP pool: hyper's client without reqwest's layers (redirects, cookies, URL
/// parsing, a boxed future and a task hand-off per request), which cost ≈ 15 % of the gateway's
/// CPU on the request path (docs/performance.md §6).
type PlainClient = HyperClient<HttpConnector, Body>;

/// Upstream HTTP clients: reqwest, one per TLS policy (each has its own pool), and hyper pools
/// for plain HTTP, one per serving thread (docs/performance.md §6.1).
pub struct Clients {
    extra_roots: Vec<PathBuf>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_size: Option<usize>,
    by_policy: Mutex<HashMap<Option<TlsPolicy>, reqwest::Client>>,
    /// The client of routes without a TLS policy, the common case: no lock per request.
    default: std::sync::OnceLock<reqwest::Client>,
    /// Slot `i` serves serving thread `i`, so a request and the pooled connection it goes out
    /// on stay on one thread; the last slot serves every other thread.
    plain: Box<[PlainClient]>,
}

impl Clients {
    /// Pool settings are read once, at start (changing them needs a restart).
    pub fn new(
        extra_roots: Vec<PathBuf>,
        settings: &crate::config::model::Settings,
        serving_threads: usize,
    ) -> Clients {
        Clients {
            extra_roots,
            connect_timeout: settings.connect_timeout,
            pool_idle_timeout: settings.pool_idle_timeout,
            pool_max_size: settings.pool_max_size,
            by_policy: Mutex::new(HashMap::new()),
            default: std::sync::OnceLock::new(),
            plain: (0..=serving_threads)
                .map(|_| plain_client(settings))
                .collect(),
        }
    }

    /// The calling thread's plain-HTTP pool.
    fn plain(&self) -> &PlainClient {
        let last = self.plain.len() - 1;
        let i = agentid_listener::serving_thread().map_or(last, |i| i.min(last));
        &self.plain[i]
    }

    /// Sends a request with a streamed body: over plain HTTP through the hyper pool, over TLS
    /// through the policy's client. The answer's body is streamed, minus hop-by-hop headers.
    /// `Host` is whatever `headers` say (the authority when they say nothing). No timeout here:
    /// the caller bounds the wait.
    pub async fn send(
        &self,
        to: Destination,
        method: Method,
        headers: HeaderMap,
        body: Incoming,
    ) -> Result<Response<Body>, SendError> {
        let (url, policy) = match to {
            Destination::Tls(url, policy) => (url, policy),
            Destination::Plain(uri) => {
                // A body of known length keeps it (`Content-Length`, not re-chunked); an empty
                // one is sent as none.
                let mut req =
                    http::Request::new(body.map_err(|e| -> body::BoxError { Box::new(e) }).boxed());
                *req.method_mut() = method;
                *req.uri_mut() = uri;
                *req.headers_mut() = headers;
                let resp = self
                    .plain()
                    .request(req)
                    .await
                    .map_err(|e| SendError::Failed(error_chain(&e)))?;
                return Ok(stream_hyper_response(resp));
            }
        };
        let client = self.get(Some(&policy)).map_err(SendError::Client)?;
        let resp = client
            .request(method, url)
            .headers(headers)
            // Streamed as it arrives, with its size (as above).
            .body(reqwest::Body::wrap(body))
            .send()
            .await
            .map_err(|e| SendError::Failed(error_chain(&e)))?;
        Ok(stream_response(resp))
    }

    /// Sends a request whose body is in hand (MCP's JSON-RPC messages, docs/performance.md
    /// §6.2): an `http` URL without a TLS policy (or credentials in it) through the hyper pool,
    /// anything else through the reqwest client of `policy`, as before. The answer's body is
    /// streamed, minus hop-by-hop headers. No timeout here: the caller bounds the wait.
    pub async fn send_whole(
        &self,
        url: &url::Url,
        policy: Option<&TlsPolicy>,
        method: Method,
        headers: HeaderMap,
        bytes: bytes::Bytes,
    ) -> Result<Response<Body>, SendError> {
        let plain = policy.is_none()
            && url.scheme() == "http"
            && url.username().is_empty()
            && url.password().is_none();
        if plain && let Ok(uri) = http::Uri::try_from(url.as_str()) {
            let mut req = http::Request::new(body::full(bytes));
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            *req.headers_mut() = headers;
            let resp = self
                .plain()
                .request(req)
                .await
                .map_err(|e| SendError::Failed(error_chain(&e)))?;
            return Ok(stream_hyper_response(resp));
        }
        let client = self.get(policy).map_err(SendError::Client)?;
        let resp = client
            .request(method, url.clone())
            .headers(headers)
            .body(bytes)
            .send()
            .await
            .map_err(|e| SendError::Failed(error_chain(&e)))?;
        Ok(stream_response(resp))
    }

    pub fn extra_roots(&self) -> &[PathBuf] {
        &self.extra_roots
    }

    pub fn get(&self, policy: Option<&TlsPolicy>) -> Result<reqwest::Client, String> {
        if policy.is_none()
            && let Some(c) = self.default.get()
        {
            return Ok(c.clone());
        }
        let client = self.get_slow(policy)?;
        if policy.is_none() {
            let _ = self.default.set(client.clone());
        }
        Ok(client)
    }

    fn get_slow(&self, policy: Option<&TlsPolicy>) -> Result<reqwest::Client, String> {
        let key = policy.cloned();
        let mut map = self.by_policy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let tls =
            crate::tls::client_config(policy, &self.extra_roots).map_err(|e| e.to_string())?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .tcp_keepalive(Duration::from_secs(180))
            // Requests and responses go out whole at once: no Nagle delay on pooled connections.
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(max) = self.pool_max_size {
            builder = builder.pool_max_idle_per_host(max);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        map.insert(key, client.clone());
        Ok(client)
    }
}

/// The plain-HTTP pool with the same settings as the reqwest clients: connect timeout, idle
/// timeout, idle connections per host, TCP keep-alive and no Nagle delay.
fn plain_client(settings: &crate::config::model::Settings) -> PlainClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(180)));
    // Requests and responses go out whole at once: no Nagle delay on pooled connections.
    connector.set_nodelay(true);
    let mut builder = HyperClient::builder(hyper_util::rt::TokioExecutor::new());
    builder
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(settings.pool_idle_timeout);
    if let Some(max) = settings.pool_max_size {
        builder.pool_max_idle_per_host(max);
    }
    builder.build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_stay_behind() {
        let src = map(&[
            ("connection", "keep-alive, X-Session-Hint"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("trailer", "x-checksum"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("content-length", "12"),
            ("host", "gw.example"),
            ("x-session-hint", "abc"),
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
            ("x-multi", "1"),
            ("x-multi", "2"),
        ]);
        let out = end_to_end_headers(&src);
        let kept: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(kept, ["authorization", "content-type", "x-multi"]);
        assert_eq!(out.get_all("x-multi").iter().count(), 2);
    }

    #[test]
    fn a_message_without_connection_keeps_its_end_to_end_fields() {
        let src = map(&[("accept", "*/*"), ("x-correlation-id", "c1")]);
        assert_eq!(end_to_end_headers(&src), src);
    }
}
