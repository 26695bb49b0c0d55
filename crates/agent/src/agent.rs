//! The tool loop: chat → tool calls → MCP → results → chat, capped.

use crate::config::{LlmAuth, LlmConfig};
use crate::explain::explain_denial;
use crate::llm::{Credential, LlmClient, LlmError};
use crate::mcp::Toolbox;
use crate::tokens::{Api, TokenError, TokenProvider, now};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no model is configured (`llm.baseUrl` / AGENTID_AGENT_LLM_BASE_URL)")]
    NoModel,
    #[error("no token for the model: {0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Llm(#[from] LlmError),
    #[error(
        "stopped after {0} rounds of tool calls without a final answer (raise `maxIterations`)"
    )]
    CapReached(u32),
}

/// What happens during a turn, for the terminal (or a test) to show.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Streamed answer text.
    Text(String),
    ToolCall {
        function: String,
        arguments: String,
    },
    ToolResult {
        function: String,
        is_error: bool,
        text: String,
    },
}

/// An agent: a model, the MCP tools, the token provider and the conversation.
pub struct Agent {
    pub tokens: Arc<dyn TokenProvider>,
    pub llm: Option<LlmClient>,
    pub toolbox: Toolbox,
    pub messages: Vec<Value>,
    pub max_iterations: u32,
    system_prompt: Option<String>,
}

fn llm_api(c: &LlmConfig) -> Api {
    Api {
        name: c.api.clone(),
        scope: Some(c.scope.clone()),
    }
}

impl Agent {
    pub fn new(
        tokens: Arc<dyn TokenProvider>,
        llm: Option<LlmClient>,
        toolbox: Toolbox,
        max_iterations: u32,
        system_prompt: Option<String>,
    ) -> Self {
        let mut a = Self {
            tokens,
            llm,
            toolbox,
            messages: Vec::new(),
            max_iterations: max_iterations.max(1),
            system_prompt,
        };
        a.clear();
        a
    }

    /// Starts a new conversation.
    pub fn clear(&mut self) {
        self.messages.clear();
        if let Some(p) = &self.system_prompt {
            self.messages.push(json!({"role": "system", "content": p}));
        }
    }

    /// The model's API, when the model is called with an agent token.
    pub fn llm_api(&self) -> Option<Api> {
        self.llm
            .as_ref()
            .filter(|l| l.config().auth == LlmAuth::AgentToken)
            .map(|l| llm_api(l.config()))
    }

    async fn complete(
        &self,
        tools: &[Value],
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<crate::llm::Reply, AgentError> {
        let llm = self.llm.as_ref().ok_or(AgentError::NoModel)?;
        let cfg = llm.config();
        let mut force = false;
        loop {
            let token = match cfg.auth {
                LlmAuth::AgentToken => Some(self.tokens.token(&llm_api(cfg), force).await?.token),
                _ => None,
            };
            let cred = match (&token, cfg.auth) {
                (Some(t), _) => Credential::Bearer(t),
                (None, LlmAuth::ApiKey) => Credential::ApiKey(cfg.api_key.as_deref().unwrap_or("")),
                _ => Credential::None,
            };
            let mut on_text = |t: &str| on_event(Event::Text(t.to_string()));
            match llm.chat(&self.messages, tools, cred, &mut on_text).await {
                Ok(r) => return Ok(r),
                // One retry with a freshly acquired token: the held one may have been revoked
                // or the clock may disagree about its expiry.
                Err(LlmError::Denied { status: 401, .. }) if token.is_some() && !force => {
                    force = true;
                }
                Err(LlmError::Denied {
                    status,
                    www_authenticate,
                    body,
                }) => {
                    return Err(AgentError::Denied(explain_denial(
                        &format!("The model at {}", llm.url()),
                        status,
                        www_authenticate.as_deref(),
                        &body,
                        token.as_deref(),
                        (cfg.auth == LlmAuth::AgentToken).then_some(cfg.scope.as_str()),
                        now(),
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One question, answered with as many tool rounds as needed (up to the cap). Every tool
    /// call gets a tool message, whatever happens to it, so the conversation stays valid.
    pub async fn ask(
        &mut self,
        question: &str,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<String, AgentError> {
        self.messages
            .push(json!({"role": "user", "content": question}));
        let tools = self.toolbox.openai_tools();
        for _ in 0..self.max_iterations {
            let reply = self.complete(&tools, on_event).await?;
            self.messages.push(reply.message());
            if reply.tool_calls.is_empty() {
                return Ok(reply.content);
            }
            for call in &reply.tool_calls {
                on_event(Event::ToolCall {
                    function: call.name.clone(),
                    arguments: call.arguments.clone(),
                });
                let (is_error, text) = self.run_tool(&call.name, &call.arguments).await;
                on_event(Event::ToolResult {
                    function: call.name.clone(),
                    is_error,
                    text: text.clone(),
                });
                let content = if is_error {
                    format!("Error: {text}")
                } else {
                    text
                };
                self.messages.push(json!({
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": content,
                }));
            }
        }
        Err(AgentError::CapReached(self.max_iterations))
    }

    /// Runs one tool call; every failure becomes an error result for the model.
    async fn run_tool(&self, function: &str, arguments: &str) -> (bool, String) {
        let args = if arguments.trim().is_empty() {
            Ok(Value::Object(Default::default()))
        } else {
            serde_json::from_str::<Value>(arguments)
        };
        let args = match args {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                return (
                    true,
                    format!(
                        "the arguments must be a JSON object, not {other}; call the tool again with an object"
                    ),
                );
            }
            Err(e) => {
                return (
                    true,
                    format!(
                        "the arguments are not valid JSON ({e}); call the tool again with a JSON object"
                    ),
                );
            }
        };
        let Some(target) = self.toolbox.names.resolve(function) else {
            return (true, format!("there is no tool named `{function}`"));
        };
        let Some(server) = self.toolbox.servers.get(target.server) else {
            return (true, format!("there is no tool named `{function}`"));
        };
        match server.call(&target.tool, args).await {
            Ok(r) => r,
            Err(e) => (true, e.to_string()),
        }
    }
}
