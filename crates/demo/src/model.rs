//! The offline model's HTTP face: OpenAI's chat-completions API in both its OpenAI
//! (`/v1/chat/completions`) and Azure OpenAI (`/openai/deployments/{d}/chat/completions`) forms,
//! streaming and not, in exactly the shapes the official clients parse.

use crate::auth::{Validator, require_bearer};
use crate::offline::{self, MODEL_NAME, Message, Reply, Tool};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The router; with a validator every API route requires a bearer token.
pub fn router(validator: Option<Arc<Validator>>) -> Router {
    let mut api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(chat),
        )
        .route("/v1/models", get(models))
        .route("/models", get(models));
    if let Some(v) = validator {
        api = api.layer(axum::middleware::from_fn_with_state(v, require_bearer));
    }
    api.route("/healthz", get(|| async { "ok" }))
}

/// An error in OpenAI's shape, which the `openai` clients turn into their typed exceptions.
fn api_error(status: StatusCode, message: impl Into<String>, param: Option<&str>) -> Response {
    let body = json!({"error": {
        "message": message.into(),
        "type": "invalid_request_error",
        "param": param,
        "code": null,
    }});
    (status, axum::Json(body)).into_response()
}

struct BadRequest {
    message: String,
    param: Option<&'static str>,
}

fn bad(message: impl Into<String>, param: &'static str) -> BadRequest {
    BadRequest {
        message: message.into(),
        param: Some(param),
    }
}

struct ChatRequest {
    messages: Vec<Message>,
    tools: Vec<Tool>,
    stream: bool,
    include_usage: bool,
}

/// `content` as text: a string, or the `text` of the parts of an array; null is empty.
fn content_text(v: Option<&Value>, i: usize) -> Result<String, BadRequest> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                match p {
                    Value::String(s) => out.push(s.as_str()),
                    Value::Object(o) => {
                        if let Some(t) = o.get("text").and_then(Value::as_str) {
                            out.push(t);
                        }
                    }
                    _ => {
                        return Err(bad(
                            format!("Invalid content part in messages[{i}]."),
                            "messages",
                        ));
                    }
                }
            }
            Ok(out.join("\n"))
        }
        Some(_) => Err(bad(
            format!(
                "Invalid type for 'messages[{i}].content': expected a string or an array of content parts."
            ),
            "messages",
        )),
    }
}

fn parse_message(i: usize, v: &Value) -> Result<Message, BadRequest> {
    let o = v.as_object().ok_or_else(|| {
        bad(
            format!("Invalid type for 'messages[{i}]': expected an object."),
            "messages",
        )
    })?;
    let role = o.get("role").and_then(Value::as_str).ok_or_else(|| {
        bad(
            format!("Missing required parameter: 'messages[{i}].role'."),
            "messages",
        )
    })?;
    if ![
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
    ]
    .contains(&role)
    {
        return Err(bad(
            format!("Invalid value for 'messages[{i}].role': '{role}'."),
            "messages",
        ));
    }
    let mut tool_calls = Vec::new();
    if let Some(calls) = o.get("tool_calls").filter(|v| !v.is_null()) {
        let calls = calls.as_array().ok_or_else(|| {
            bad(
                format!("Invalid type for 'messages[{i}].tool_calls': expected an array."),
                "messages",
            )
        })?;
        for c in calls {
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let f = c.get("function");
            let name = f
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(format!("Missing required parameter: 'messages[{i}].tool_calls[].function.name'."), "messages")
                })?;
            let args = f
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("");
            tool_calls.push((id, name.to_string(), args.to_string()));
        }
    }
    let tool_call_id = o
        .get("tool_call_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if role == "tool" && tool_call_id.is_none() {
        return Err(bad(
            format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
            "messages",
        ));
    }
    Ok(Message {
        role: role.to_string(),
        text: content_text(o.get("content"), i)?,
        tool_call_id,
        tool_calls,
    })
}

fn parse_request(body: &[u8]) -> Result<ChatRequest, BadRequest> {
    let v: Value = serde_json::from_slice(body).map_err(|e| BadRequest {
        message: format!("We could not parse the JSON body of your request ({e}). The body must be a JSON object."),
        param: None,
    })?;
    let o = v.as_object().ok_or_else(|| BadRequest {
        message: "The request body must be a JSON object.".into(),
        param: None,
    })?;
    let msgs = match o.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(bad(
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                "messages",
            ));
        }
        Some(_) => {
            return Err(bad(
                "Invalid type for 'messages': expected an array.",
                "messages",
            ));
        }
        None => return Err(bad("Missing required parameter: 'messages'.", "messages")),
    };
    let messages = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tools = Vec::new();
    match o.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, t) in a.iter().enumerate() {
                if t.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(bad(
                        format!(
                            "Invalid value for 'tools[{i}].type': only 'function' tools are supported."
                        ),
                        "tools",
                    ));
                }
                let f = t.get("function");
                let name = f
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        bad(
                            format!("Missing required parameter: 'tools[{i}].function.name'."),
                            "tools",
                        )
                    })?;
                let parameters = f
                    .and_then(|f| f.get("parameters"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                tools.push(Tool {
                    name: name.to_string(),
                    parameters,
                });
            }
        }
        Some(_) => return Err(bad("Invalid type for 'tools': expected an array.", "tools")),
    }
    let stream = match o.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(bad(
                "Invalid type for 'stream': expected a boolean.",
                "stream",
            ));
        }
    };
    let include_usage = o
        .get("stream_options")
        .and_then(|s| s.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        messages,
        tools,
        stream,
        include_usage,
    })
}

fn hash24(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    agentid_claims::jwt::hex(&h.finalize())[..24].to_string()
}

async fn models() -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "agentid"}],
    }))
    .into_response()
}

async fn chat(body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e.message, e.param),
    };
    let reply = offline::answer(&req.messages, &req.tools);
    let prompt = offline::prompt_words(&req.messages);
    let completion = offline::reply_words(&reply);
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    // Ids derive from the request so that the same conversation gets the same answer, ids included.
    let id = format!("chatcmpl-{}", hash24(&[&body]));
    let created = chrono::Utc::now().timestamp();
    let call_id = |name: &str, args: &str| {
        format!(
            "call_{}",
            hash24(&[
                name.as_bytes(),
                args.as_bytes(),
                req.messages.len().to_string().as_bytes()
            ])
        )
    };
    match &reply {
        Reply::Text(t) => tracing::debug!(words = completion, "answering with text: {t}"),
        Reply::Call { name, .. } => tracing::info!(tool = %name, "answering with a tool call"),
    }
    if req.stream {
        return stream_response(&id, created, &reply, &call_id, req.include_usage, usage);
    }
    let (message, finish) = match &reply {
        Reply::Text(t) => (
            json!({"role": "assistant", "content": t, "refusal": null}),
            "stop",
        ),
        Reply::Call { name, arguments } => (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [{
                "id": call_id(name, arguments),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }]}),
            "tool_calls",
        ),
    };
    axum::Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_NAME,
        "system_fingerprint": MODEL_NAME,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage,
    }))
    .into_response()
}

/// Splits `s` into pieces of about `n` characters, on character boundaries.
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn stream_response(
    id: &str,
    created: i64,
    reply: &Reply,
    call_id: &dyn Fn(&str, &str) -> String,
    include_usage: bool,
    usage: Value,
) -> Response {
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = Map::new();
        c.insert("id".into(), id.into());
        c.insert("object".into(), "chat.completion.chunk".into());
        c.insert("created".into(), created.into());
        c.insert("model".into(), MODEL_NAME.into());
        c.insert("system_fingerprint".into(), MODEL_NAME.into());
        c.insert(
            "choices".into(),
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
        );
        // OpenAI sends `usage: null` on every chunk when usage was asked for, then one usage chunk.
        if include_usage {
            c.insert("usage".into(), Value::Null);
        }
        Value::Object(c)
    };
    let mut events = Vec::new();
    let finish = match reply {
        Reply::Text(t) => {
            events.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            for piece in t.split_inclusive(' ') {
                events.push(chunk(json!({"content": piece}), None));
            }
            "stop"
        }
        Reply::Call { name, arguments } => {
            events.push(chunk(
                json!({"role": "assistant", "content": null, "refusal": null}),
                None,
            ));
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id(name, arguments), "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in pieces(arguments, 8) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            "tool_calls"
        }
    };
    events.push(chunk(json!({}), Some(finish)));
    if include_usage {
        events.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_NAME,
            "system_fingerprint": MODEL_NAME,
            "choices": [],
            "usage": usage,
        }));
    }
    let mut frames: Vec<Result<Bytes, std::convert::Infallible>> = events
        .iter()
        .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
        .collect();
    frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    let body = Body::from_stream(futures_util::stream::iter(frames));
    Response::builder()
        .status(StatusCode::OK)
        .header(
            http::header::CONTENT_TYPE,
            "text/event-stream; charset=utf-8",
        )
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        for (body, param) in [
            (&b"not json"[..], None),
            (b"[1,2]", None),
            (b"{}", Some("messages")),
            (b"{\"messages\": []}", Some("messages")),
            (b"{\"messages\": [{\"content\": \"x\"}]}", Some("messages")),
            (b"{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", Some("messages")),
            (b"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", Some("messages")),
            (b"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": {}}", Some("tools")),
            (b"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": \"function\"}]}", Some("tools")),
            (b"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": \"yes\"}", Some("stream")),
        ] {
            let e = parse_request(body).err().expect("refused");
            assert_eq!(e.param, param, "{}", String::from_utf8_lossy(body));
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn content_parts_are_read() {
        let r = parse_request(
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"who am"},{"type":"text","text":"I"}]}]}"#,
        )
        .ok()
        .expect("parsed");
        assert_eq!(r.messages[0].text, "who am\nI");
    }

    #[test]
    fn pieces_respect_characters() {
        assert_eq!(
            pieces("{\"text\":\"café\"}", 8).concat(),
            "{\"text\":\"café\"}"
        );
        assert_eq!(pieces("", 8), Vec::<String>::new());
    }
}
