//! The JSON-RPC messages the gateway writes to MCP clients (docs/gateway.md §9.7); requests
//! are parsed by `envelope`.

use super::raw::{members, write_object};
use crate::body::{self, Body};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const SERVER_ERROR: i64 = -32000;
pub const SESSION_NOT_FOUND: i64 = -32001;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// An error response to the request `id`.
pub fn error(id: &Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

/// A result response to the request `id`.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC message as the HTTP response.
pub fn respond(status: StatusCode, message: &Value) -> Response<Body> {
    body::json_response(status, message)
}

/// 202 Accepted: a notification or a client response, which get no answer.
pub fn accepted() -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// A JSON-RPC response from a target, kept as the target wrote it (checked: one JSON object,
/// no member twice), so relaying it re-writes only its `id` (docs/performance.md §6.2).
#[derive(Debug, Clone)]
pub struct Relayed(String);

impl Relayed {
    /// Checks a target's message; `None` when it is no JSON object or has a member twice.
    pub fn parse(bytes: &[u8]) -> Option<Relayed> {
        let text = std::str::from_utf8(bytes).ok()?;
        members(text).ok()?;
        Some(Relayed(text.to_string()))
    }

    /// The whole message, built.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// One member, built.
    pub fn member(&self, key: &str) -> Option<Value> {
        let m = members(&self.0).ok()?;
        let (_, raw) = m.into_iter().find(|(k, _)| k == key)?;
        serde_json::from_str(raw.get()).ok()
    }

    /// Whether it is the response (a result or an error) to request `id`.
    pub fn answers(&self, id: u64) -> bool {
        let Ok(m) = members(&self.0) else {
            return false;
        };
        let has = |key: &str| m.iter().any(|(k, _)| k == key);
        m.iter()
            .any(|(k, v)| k == "id" && v.get().parse::<u64>() == Ok(id))
            && (has("result") || has("error"))
    }

    /// The message for the client: the target's, with the client's request `id`; and its
    /// `error` member, built (for the audit event).
    pub fn for_client(&self, id: &Value) -> Answer {
        let Ok(m) = members(&self.0) else {
            return Answer::Built(Value::Null);
        };
        let error = m
            .iter()
            .find(|(k, _)| k == "error")
            .and_then(|(_, v)| serde_json::from_str(v.get()).ok());
        let text = write_object(m.iter().map(|(k, v)| (k.as_str(), v.get())), &[("id", id)]);
        Answer::Relayed(Bytes::from(text), error)
    }
}

/// A message to the client: built by the gateway, or relayed from a target.
#[derive(Debug)]
pub enum Answer {
    Built(Value),
    /// JSON text, and its `error` member.
    Relayed(Bytes, Option<Value>),
}

impl Answer {
    /// The `error` member, if any.
    pub fn error(&self) -> Option<&Value> {
        match self {
            Answer::Built(v) => v.get("error"),
            Answer::Relayed(_, e) => e.as_ref(),
        }
    }

    pub fn respond(self, status: StatusCode) -> Response<Body> {
        match self {
            Answer::Built(v) => respond(status, &v),
            Answer::Relayed(text, _) => {
                let mut resp = Response::new(body::full(text));
                *resp.status_mut() = status;
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
        }
    }
}
