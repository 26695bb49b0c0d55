//! OpenAI-compatible chat completions (OpenAI and Azure OpenAI forms), streamed.

use crate::config::{LlmConfig, LlmKind};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("cannot reach the model at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the model refused the call (HTTP {status})")]
    Denied {
        status: u16,
        www_authenticate: Option<String>,
        body: String,
    },
    #[error("the model failed (HTTP {status}): {body}")]
    Failed { status: u16, body: String },
    #[error("the model's answer is not understood: {0}")]
    BadResponse(String),
}

/// How the call authenticates.
pub enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
    None,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// The model's answer: text and/or tool calls.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
}

impl Reply {
    /// The assistant message to append to the conversation.
    pub fn message(&self) -> Value {
        let mut m = json!({"role": "assistant", "content": if self.content.is_empty() && !self.tool_calls.is_empty() { Value::Null } else { Value::String(self.content.clone()) }});
        if !self.tool_calls.is_empty() {
            m["tool_calls"] = Value::Array(
                self.tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect(),
            );
        }
        m
    }
}

pub struct LlmClient {
    http: reqwest::Client,
    cfg: LlmConfig,
}

impl LlmClient {
    pub fn new(http: reqwest::Client, cfg: LlmConfig) -> Self {
        Self { http, cfg }
    }

    pub fn config(&self) -> &LlmConfig {
        &self.cfg
    }

    /// The chat-completions URL for the configured form.
    pub fn url(&self) -> String {
        let c = &self.cfg;
        match c.kind {
            LlmKind::Openai => format!("{}/chat/completions", c.base_url),
            LlmKind::Azure => format!(
                "{}/openai/deployments/{}/chat/completions?api-version={}",
                c.base_url,
                c.deployment.as_deref().unwrap_or(""),
                c.api_version
            ),
        }
    }

    /// One chat completion; streamed text is handed to `on_text` as it arrives.
    pub async fn chat(
        &self,
        messages: &[Value],
        tools: &[Value],
        cred: Credential<'_>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Reply, LlmError> {
        let url = self.url();
        let mut body = json!({"messages": messages, "stream": true});
        if self.cfg.kind == LlmKind::Openai {
            body["model"] = json!(self.cfg.model);
        }
        if !tools.is_empty() {
            body["tools"] = json!(tools);
            body["tool_choice"] = json!("auto");
        }
        let mut req = self
            .http
            .post(&url)
            .json(&body)
            .timeout(Duration::from_secs(300));
        req = match cred {
            Credential::Bearer(t) => req.bearer_auth(t),
            Credential::ApiKey(k) if self.cfg.kind == LlmKind::Azure => req.header("api-key", k),
            Credential::ApiKey(k) => req.bearer_auth(k),
            Credential::None => req,
        };
        let mut resp = req.send().await.map_err(|e| LlmError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let www = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(LlmError::Denied {
                status,
                www_authenticate: www,
                body: resp.text().await.unwrap_or_default(),
            });
        }
        if !(200..300).contains(&status) {
            let body: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(500)
                .collect();
            return Err(LlmError::Failed { status, body });
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            // A server that ignores `stream` answers with one JSON document.
            let v: Value = resp
                .json()
                .await
                .map_err(|e| LlmError::BadResponse(e.to_string()))?;
            let reply = parse_complete(&v)?;
            if !reply.content.is_empty() {
                on_text(&reply.content);
            }
            return Ok(reply);
        }
        let mut acc = Accumulator::default();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| LlmError::BadResponse(format!("stream broken: {e}")))?;
            let Some(chunk) = chunk else { break };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                if acc.line(line.trim_end_matches(['\r', '\n']), on_text)? {
                    return Ok(acc.finish());
                }
            }
        }
        if !buf.is_empty() {
            let line = String::from_utf8_lossy(&buf).to_string();
            acc.line(line.trim_end(), on_text)?;
        }
        Ok(acc.finish())
    }
}

fn parse_complete(v: &Value) -> Result<Reply, LlmError> {
    let msg = &v["choices"][0]["message"];
    if msg.is_null() {
        return Err(LlmError::BadResponse("no choices[0].message".into()));
    }
    let tool_calls = msg["tool_calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| ToolCall {
                    id: c["id"].as_str().unwrap_or_default().to_string(),
                    name: c["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    arguments: c["function"]["arguments"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Reply {
        content: msg["content"].as_str().unwrap_or_default().to_string(),
        tool_calls,
    })
}

/// Builds a reply from `chat.completion.chunk` events.
#[derive(Default)]
struct Accumulator {
    content: String,
    calls: Vec<ToolCall>,
}

impl Accumulator {
    /// Handles one SSE line; true at `[DONE]`.
    fn line(
        &mut self,
        line: &str,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<bool, LlmError> {
        let Some(data) = line.strip_prefix("data:") else {
            return Ok(false);
        };
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| LlmError::BadResponse(format!("a stream event is not JSON: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(LlmError::Failed {
                status: 200,
                body: err.to_string(),
            });
        }
        let delta = &v["choices"][0]["delta"];
        if let Some(t) = delta["content"].as_str()
            && !t.is_empty()
        {
            self.content.push_str(t);
            on_text(t);
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for c in calls {
                let idx = c["index"].as_u64().unwrap_or(self.calls.len() as u64) as usize;
                if idx > 1024 {
                    return Err(LlmError::BadResponse("tool call index out of range".into()));
                }
                while self.calls.len() <= idx {
                    self.calls.push(ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                }
                let slot = &mut self.calls[idx];
                if let Some(id) = c["id"].as_str() {
                    slot.id = id.to_string();
                }
                if let Some(n) = c["function"]["name"].as_str() {
                    slot.name.push_str(n);
                }
                if let Some(a) = c["function"]["arguments"].as_str() {
                    slot.arguments.push_str(a);
                }
            }
        }
        Ok(false)
    }

    fn finish(self) -> Reply {
        let calls = self
            .calls
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.name.is_empty() || !c.id.is_empty())
            .map(|(i, mut c)| {
                // Every tool call needs an id so its result can be matched (no dangling ids).
                if c.id.is_empty() {
                    c.id = format!("call_{i}");
                }
                c
            })
            .collect();
        Reply {
            content: self.content,
            tool_calls: calls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_chunks_accumulate_tool_calls() {
        let mut acc = Accumulator::default();
        let mut seen = String::new();
        let mut on = |t: &str| seen.push_str(t);
        for l in [
            r#"data: {"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"data: {"choices":[{"delta":{"content":"lo"}}]}"#,
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"who","arguments":"{\"a\""}}]}}]}"#,
            r#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
        ] {
            assert!(!acc.line(l, &mut on).unwrap());
        }
        assert!(acc.line("data: [DONE]", &mut on).unwrap());
        let r = acc.finish();
        assert_eq!(seen, "Hello");
        assert_eq!(
            r.tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "who".into(),
                arguments: "{\"a\":1}".into()
            }]
        );
        assert_eq!(r.message()["tool_calls"][0]["function"]["name"], "who");
    }
}
