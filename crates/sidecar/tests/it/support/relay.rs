//! A recording relay in front of the real STS: the sidecar's authority in tests that count
//! calls, compare form bodies byte for byte, or need failures the STS cannot produce on demand
//! (503, 429 with Retry-After, a hang, a malformed body). Everything not scripted is forwarded.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum Step {
    /// Answer a token request with this instead of forwarding it.
    Respond {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Wait, then forward.
    Delay(Duration),
}

impl Step {
    pub fn status(status: u16) -> Step {
        Step::Respond {
            status,
            body: String::new(),
            retry_after: None,
        }
    }

    pub fn oauth(status: u16, error: &str, description: &str, code: u64) -> Step {
        Step::Respond {
            status,
            body: serde_json::json!({
                "error": error, "error_description": description, "error_codes": [code],
                "timestamp": "2026-01-01 00:00:00Z", "trace_id": "t", "correlation_id": "c",
            })
            .to_string(),
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub status: u16,
    pub response: String,
    pub at: Instant,
}

impl Call {
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn access_token(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.response)
            .ok()?
            .get("access_token")?
            .as_str()
            .map(str::to_string)
    }
}

struct RelayState {
    upstream: String,
    client: reqwest::Client,
    calls: Mutex<Vec<Call>>,
    script: Mutex<VecDeque<Step>>,
    down: AtomicBool,
}

pub struct Relay {
    pub url: String,
    state: Arc<RelayState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn is_token_request(method: &str, path: &str) -> bool {
    method == "POST" && path.ends_with("/oauth2/v2.0/token")
}

async fn handle(State(s): State<Arc<RelayState>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let token = is_token_request(&method, &path);
    let mut step = if token {
        s.script.lock().unwrap().pop_front()
    } else {
        None
    };
    if token && step.is_none() && s.down.load(Ordering::SeqCst) {
        step = Some(Step::status(503));
    }
    let record = |status: u16, response: &str| {
        s.calls.lock().unwrap().push(Call {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            status,
            response: response.to_string(),
            at: Instant::now(),
        });
    };
    match step {
        Some(Step::Respond {
            status,
            body: resp,
            retry_after,
        }) => {
            record(status, &resp);
            let mut r = (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json; charset=utf-8")],
                resp,
            )
                .into_response();
            if let Some(ra) = retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            return r;
        }
        Some(Step::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let mut fwd = s
        .client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path_and_query}", s.upstream),
        )
        .body(Bytes::clone(&body));
    for h in ["content-type", "client-request-id", "accept"] {
        if let Some(v) = headers.get(h) {
            fwd = fwd.header(h, v.to_str().unwrap_or_default());
        }
    }
    match fwd.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let text = r.text().await.unwrap_or_default();
            if token || method == "GET" {
                record(status, &text);
            }
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", ct)],
                text,
            )
                .into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl Relay {
    /// A relay on 127.0.0.1:0 (plain HTTP) forwarding to `upstream` (the STS base URL).
    pub async fn start(upstream: &str, ca_pem: &str) -> Relay {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let state = Arc::new(RelayState {
            upstream: upstream.to_string(),
            client,
            calls: Mutex::new(vec![]),
            script: Mutex::new(VecDeque::new()),
            down: AtomicBool::new(false),
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
        Relay {
            url,
            state,
            shutdown: Some(tx),
        }
    }

    pub async fn for_sts(sts: &agentid_testkit::TestSts) -> Relay {
        Relay::start(
            sts.base(),
            sts.running.ca_pem.as_deref().expect("the STS has a CA"),
        )
        .await
    }

    /// Queues responses for the next token requests.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.state.script.lock().unwrap().extend(steps);
    }

    /// Scripted steps not taken yet (a token request takes its step when it arrives).
    pub fn scripted(&self) -> usize {
        self.state.script.lock().unwrap().len()
    }

    /// While down, every unscripted token request gets 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Token-endpoint calls so far.
    pub fn token_calls(&self) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| is_token_request(&c.method, &c.path))
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.state.calls.lock().unwrap().clear();
    }

    /// Token calls whose form has `grant_type` and, if given, `fmi_path`/`scope` as shown.
    pub fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.token_calls().iter().filter(|c| f(c)).count()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Kind of leg a recorded token call is.
pub fn leg(c: &Call) -> &'static str {
    let grant = c.param("grant_type").unwrap_or_default();
    let scope = c.param("scope").unwrap_or_default();
    let client = c.param("client_id").unwrap_or_default();
    match grant.as_str() {
        "client_credentials"
            if c.param("fmi_path").is_some()
                && scope == "api://AzureADTokenExchange/.default"
                && client == super::BP =>
        {
            "t1"
        }
        "client_credentials" if scope == "api://AzureADTokenExchange/.default" => "t2x",
        "client_credentials" if client == super::BP => "app",
        "client_credentials" => "agent_app",
        "user_fic" => "agent_user",
        "urn:ietf:params:oauth:grant-type:jwt-bearer" if client == super::BP => "obo",
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => "agent_obo",
        _ => "other",
    }
}

impl Step {
    /// A 200 token response carrying an unsigned JWT with `claims` (for requests the STS would
    /// refuse, such as made-up scopes).
    pub fn token(claims: serde_json::Value) -> Step {
        let now = chrono::Utc::now().timestamp();
        let mut c = claims;
        c["exp"] = serde_json::json!(now + 3600);
        c["uti"] = serde_json::json!(uuid::Uuid::new_v4().simple().to_string());
        let t = super::unsigned(&serde_json::json!({"alg": "RS256", "typ": "JWT"}), &c);
        Step::Respond {
            status: 200,
            body: serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": format!("{t}sig")}).to_string(),
            retry_after: None,
        }
    }
}
