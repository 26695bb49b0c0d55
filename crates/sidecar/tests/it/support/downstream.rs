//! A mock downstream API that records what it receives.
//!
//! Paths: `/ok` (200 JSON), `/empty` (204), `/chunked` (200, no Content-Length), `/fail` (500),
//! `/accepted` (202 with a payload), `/echo` (200, echoes method, headers, query and body),
//! `/slow` (answers after 3 s), `/redirect` (302 to `/target` of `redirect_to`), `/target`,
//! `/challenge` (401 insufficient_claims the first time, then 200), `/big` (2 MiB).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

struct MockState {
    received: Mutex<Vec<Received>>,
    challenges: AtomicUsize,
    redirect_to: Mutex<Option<String>>,
}

pub struct MockApi {
    pub url: String,
    state: Arc<MockState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub const CHALLENGE_CLAIMS: &str = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;

async fn handle(State(s): State<Arc<MockState>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default()
        .to_vec();
    s.received.lock().unwrap().push(Received {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let json = [("content-type", "application/json; charset=utf-8")];
    match path.as_str() {
        "/ok" | "/target" => (
            StatusCode::OK,
            [
                ("content-type", "application/json; charset=utf-8"),
                ("request-id", "req-123"),
            ],
            r#"{"ok":true}"#,
        )
            .into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        "/chunked" => {
            let stream = futures_stream(vec!["chunk-1 ", "chunk-2"]);
            Response::builder()
                .status(200)
                .header("content-type", "text/plain; charset=utf-8")
                .body(stream)
                .unwrap()
        }
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "/accepted" => (StatusCode::ACCEPTED, json, r#"{"queued":1}"#).into_response(),
        "/echo" => {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let out = serde_json::json!({
                "method": method,
                "query": query,
                "authorization": h("authorization"),
                "content_type": h("content-type"),
                "accept": h("accept"),
                "x_custom": h("x-custom"),
                "body_b64": base64::engine::general_purpose::STANDARD.encode(&body),
            });
            (StatusCode::OK, json, out.to_string()).into_response()
        }
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            (StatusCode::OK, "late").into_response()
        }
        "/redirect" => {
            let to = s.redirect_to.lock().unwrap().clone().unwrap_or_default();
            (StatusCode::FOUND, [("location", format!("{to}/target"))]).into_response()
        }
        "/challenge" => {
            if s.challenges.fetch_add(1, Ordering::SeqCst) == 0 {
                let claims = base64::engine::general_purpose::STANDARD.encode(CHALLENGE_CLAIMS);
                (
                    StatusCode::UNAUTHORIZED,
                    [(
                        "www-authenticate",
                        format!(
                            r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="{claims}""#
                        ),
                    )],
                )
                    .into_response()
            } else {
                (StatusCode::OK, json, r#"{"stepped_up":true}"#).into_response()
            }
        }
        "/big" => (StatusCode::OK, vec![b'x'; 2 << 20]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn futures_stream(parts: Vec<&'static str>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for p in parts {
            let _ = tx.send(Bytes::from_static(p.as_bytes())).await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    Body::new(ChannelBody(rx))
}

/// A body of unknown length (sent chunked), fed from a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

impl MockApi {
    pub async fn start() -> MockApi {
        let state = Arc::new(MockState {
            received: Mutex::new(vec![]),
            challenges: AtomicUsize::new(0),
            redirect_to: Mutex::new(None),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        MockApi {
            url,
            state,
            shutdown: Some(tx),
        }
    }

    pub fn redirect_to(&self, other: &str) {
        *self.state.redirect_to.lock().unwrap() = Some(other.to_string());
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
