//! MCP servers over streamable HTTP (rmcp), each with its own agent token; reconnects with a
//! fresh token when the held one nears expiry or the server refuses it.

use crate::names::ToolNames;
use crate::tokens::{AgentToken, Api, TokenError, TokenProvider};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MCP server `{server}`: no token: {source}")]
    Token {
        server: String,
        #[source]
        source: TokenError,
    },
    #[error("MCP server `{server}` at {url} cannot be used: {message}")]
    Connect {
        server: String,
        url: String,
        message: String,
    },
    #[error("MCP server `{server}`: {message}")]
    Call { server: String, message: String },
}

/// One configured MCP server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub url: String,
    pub api: Api,
}

struct Connection {
    service: RunningService<RoleClient, ()>,
    token: AgentToken,
}

/// A connected (or reconnectable) MCP server.
pub struct McpServer {
    pub spec: ServerSpec,
    http: reqwest013::Client,
    tokens: Arc<dyn TokenProvider>,
    conn: Mutex<Option<Connection>>,
    /// How many connections were opened (1 + reconnects), for diagnostics and tests.
    pub connects: std::sync::atomic::AtomicUsize,
}

impl McpServer {
    pub fn new(spec: ServerSpec, http: reqwest013::Client, tokens: Arc<dyn TokenProvider>) -> Self {
        Self {
            spec,
            http,
            tokens,
            conn: Mutex::new(None),
            connects: Default::default(),
        }
    }

    async fn connect(&self, force_token: bool) -> Result<Connection, McpError> {
        let token = self
            .tokens
            .token(&self.spec.api, force_token)
            .await
            .map_err(|source| McpError::Token {
                server: self.spec.name.clone(),
                source,
            })?;
        let cfg = StreamableHttpClientTransportConfig::with_uri(self.spec.url.clone())
            .auth_header(token.token.clone());
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), cfg);
        let service = ().serve(transport).await.map_err(|e| McpError::Connect {
            server: self.spec.name.clone(),
            url: self.spec.url.clone(),
            message: error_chain(&e),
        })?;
        self.connects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Connection { service, token })
    }

    /// Runs `op` on a live connection: reconnects first when the token is about to expire, and
    /// once more with a freshly fetched token when the call fails at the transport (a 401,
    /// an expired session, a restarted server).
    async fn with_conn<T, F, Fut>(&self, op: F) -> Result<T, McpError>
    where
        F: Fn(rmcp::service::Peer<RoleClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, rmcp::ServiceError>>,
    {
        let mut guard = self.conn.lock().await;
        let stale = guard
            .as_ref()
            .is_some_and(|c| !c.token.fresh() || c.service.is_closed());
        if stale && let Some(old) = guard.take() {
            let _ = old.service.cancel().await;
        }
        if guard.is_none() {
            *guard = Some(self.connect(false).await?);
        }
        let peer = guard.as_ref().map(|c| c.service.peer().clone());
        let Some(peer) = peer else {
            return Err(McpError::Call {
                server: self.spec.name.clone(),
                message: "no connection".into(),
            });
        };
        match op(peer).await {
            Ok(v) => Ok(v),
            Err(e) if is_transport_failure(&e) => {
                tracing::info!(server = %self.spec.name, error = %error_chain(&e), "MCP call failed at the transport; reconnecting with a fresh token");
                if let Some(old) = guard.take() {
                    let _ = old.service.cancel().await;
                }
                let conn = self.connect(true).await?;
                let peer = conn.service.peer().clone();
                *guard = Some(conn);
                op(peer).await.map_err(|e| McpError::Call {
                    server: self.spec.name.clone(),
                    message: error_chain(&e),
                })
            }
            Err(e) => Err(McpError::Call {
                server: self.spec.name.clone(),
                message: error_chain(&e),
            }),
        }
    }

    /// Every tool of the server (all pages of tools/list).
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpError> {
        self.with_conn(|peer| async move {
            let mut all = Vec::new();
            let mut cursor = None;
            // A bound on pages so that a server repeating its cursor cannot loop us forever.
            for _ in 0..1000 {
                let params = cursor
                    .take()
                    .map(|c| rmcp::model::PaginatedRequestParams::default().with_cursor(Some(c)));
                let page = peer.list_tools(params).await?;
                all.extend(page.tools);
                match page.next_cursor {
                    Some(c) if !c.is_empty() => cursor = Some(c),
                    _ => break,
                }
            }
            Ok(all)
        })
        .await
    }

    /// Calls a tool; the result as text for the model (errors included, marked as such).
    pub async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Map<String, Value>,
    ) -> Result<(bool, String), McpError> {
        let tool = tool.to_string();
        let result = self
            .with_conn(|peer| {
                let params =
                    CallToolRequestParams::new(tool.clone()).with_arguments(arguments.clone());
                async move { peer.call_tool(params).await }
            })
            .await?;
        let mut parts = Vec::new();
        for c in &result.content {
            match c.as_text() {
                Some(t) => parts.push(t.text.clone()),
                None => parts.push(serde_json::to_string(c).unwrap_or_default()),
            }
        }
        if parts.is_empty()
            && let Some(s) = &result.structured_content
        {
            parts.push(s.to_string());
        }
        Ok((result.is_error.unwrap_or(false), parts.join("\n")))
    }

    pub async fn close(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ = c.service.cancel().await;
        }
    }
}

fn is_transport_failure(e: &rmcp::ServiceError) -> bool {
    !matches!(e, rmcp::ServiceError::McpError(_))
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// All servers' tools as OpenAI function tools, with the name map.
pub struct Toolbox {
    pub servers: Vec<Arc<McpServer>>,
    /// Per server: its tools (empty when the server could not be listed).
    pub tools: Vec<Vec<Tool>>,
    pub names: ToolNames,
    /// Servers that could not be used, with the reason (reported, then skipped).
    pub unavailable: Vec<(String, String)>,
}

impl Toolbox {
    /// Lists every server's tools; an unreachable server is recorded and skipped.
    pub async fn discover(servers: Vec<Arc<McpServer>>) -> Toolbox {
        let mut tools = Vec::new();
        let mut unavailable = Vec::new();
        for s in &servers {
            match s.list_tools().await {
                Ok(t) => tools.push(t),
                Err(e) => {
                    unavailable.push((s.spec.name.clone(), e.to_string()));
                    tools.push(Vec::new());
                }
            }
        }
        let listing: Vec<(String, Vec<String>)> = servers
            .iter()
            .zip(&tools)
            .map(|(s, t)| {
                (
                    s.spec.name.clone(),
                    t.iter().map(|t| t.name.to_string()).collect(),
                )
            })
            .collect();
        Toolbox {
            names: ToolNames::build(&listing),
            servers,
            tools,
            unavailable,
        }
    }

    /// The `tools` array of a chat-completions request.
    pub fn openai_tools(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (i, tools) in self.tools.iter().enumerate() {
            for t in tools {
                let Some(name) = self.names.function_name(i, &t.name) else {
                    continue;
                };
                let mut desc = t.description.as_deref().unwrap_or_default().to_string();
                if name != t.name {
                    desc = format!(
                        "[MCP tool `{}` on `{}`] {desc}",
                        t.name, self.servers[i].spec.name
                    );
                }
                out.push(json!({
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": desc,
                        "parameters": Value::Object((*t.input_schema).clone()),
                    }
                }));
            }
        }
        out
    }

    /// Lines for `/tools`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, tools) in self.tools.iter().enumerate() {
            let s = &self.servers[i].spec;
            out.push(format!("{} ({}): {} tool(s)", s.name, s.url, tools.len()));
            for t in tools {
                let f = self.names.function_name(i, &t.name).unwrap_or("?");
                let alias = if f != t.name {
                    format!(" (as {f})")
                } else {
                    String::new()
                };
                out.push(format!(
                    "  {}{alias} — {}",
                    t.name,
                    t.description.as_deref().unwrap_or("")
                ));
            }
        }
        for (name, why) in &self.unavailable {
            out.push(format!("{name}: unavailable — {why}"));
        }
        out
    }
}
