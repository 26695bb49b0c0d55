//! The JSON-RPC envelope of an MCP client's POST body, parsed once into a typed message
//! (docs/gateway.md §9.1, error codes of §9.7). Everything after this reads the typed value: a
//! request's `params` is always an object, its `id` a string or an integer that fits `i64`/`u64`.
//!
//! | input | code | HTTP |
//! |---|---|---|
//! | not JSON (including nesting deeper than serde_json's 128 levels) | -32700 | 400 |
//! | a batch (array) | -32600 | 400 |
//! | not an object, `jsonrpc` not `"2.0"`, `method` not a string or too long | -32600 | 400 |
//! | `id` not a string or integer (null, float, out of range, object, too long) | -32600 | 400 |
//! | a message with neither `method` nor exactly one of `result`/`error` | -32600 | 400 |
//! | `params` present but not an object | -32602 | 400 |

use super::jsonrpc;
use serde_json::{Map, Value};

/// Longest `method` accepted (MCP's are short; the name becomes an audit field and a label).
pub const MAX_METHOD_BYTES: usize = 128;
/// Longest string `id` accepted (it is echoed back and written to the audit log).
pub const MAX_ID_BYTES: usize = 256;

/// A parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// A request (with `id`) or a notification (without).
    Call(Call),
    /// A response to a server→client request; the gateway relays none, so it is dropped.
    ClientResponse,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// A string or an integer; `None` for a notification.
    pub id: Option<Value>,
    pub method: String,
    /// `{}` when the message had none.
    pub params: Map<String, Value>,
}

/// A refused envelope: the JSON-RPC error to answer (always with HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EnvelopeError {
    pub code: i64,
    pub message: String,
    /// The message's id when it had a usable one, else null.
    pub id: Value,
}

impl EnvelopeError {
    fn parse() -> EnvelopeError {
        EnvelopeError {
            code: jsonrpc::PARSE_ERROR,
            message: "Parse error".into(),
            id: Value::Null,
        }
    }
    fn invalid(id: &Value, detail: &str) -> EnvelopeError {
        EnvelopeError {
            code: jsonrpc::INVALID_REQUEST,
            message: format!("Invalid Request: {detail}"),
            id: id.clone(),
        }
    }
}

/// A usable JSON-RPC id: a string (bounded) or an integer.
fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(s) => s.len() <= MAX_ID_BYTES,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let msg: Value = serde_json::from_slice(bytes).map_err(|_| EnvelopeError::parse())?;
    let obj = match msg {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err(EnvelopeError::invalid(
                &Value::Null,
                "batches are not supported",
            ));
        }
        _ => {
            return Err(EnvelopeError::invalid(
                &Value::Null,
                "not a JSON-RPC object",
            ));
        }
    };
    let id = obj.get("id");
    let echo = id.filter(|v| valid_id(v)).cloned().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(EnvelopeError::invalid(&echo, "jsonrpc must be \"2.0\""));
    }
    if let Some(id) = id
        && !valid_id(id)
    {
        return Err(EnvelopeError::invalid(
            &Value::Null,
            &format!("id must be a string of at most {MAX_ID_BYTES} bytes or an integer"),
        ));
    }
    let Some(method) = obj.get("method") else {
        let has_result = obj.contains_key("result");
        let has_error = obj.contains_key("error");
        if id.is_some() && has_result != has_error {
            return Ok(Envelope::ClientResponse);
        }
        return Err(EnvelopeError::invalid(
            &echo,
            "a message needs a method, or an id with a result or an error",
        ));
    };
    let Some(method) = method.as_str() else {
        return Err(EnvelopeError::invalid(&echo, "method must be a string"));
    };
    if method.is_empty() || method.len() > MAX_METHOD_BYTES {
        return Err(EnvelopeError::invalid(
            &echo,
            &format!("method must be 1 to {MAX_METHOD_BYTES} bytes"),
        ));
    }
    let params = match obj.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => {
            return Err(EnvelopeError {
                code: jsonrpc::INVALID_PARAMS,
                message: "Invalid params: params must be an object".into(),
                id: echo,
            });
        }
    };
    Ok(Envelope::Call(Call {
        id: id.cloned(),
        method: method.to_string(),
        params,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses() {
        let call = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).unwrap();
        assert_eq!(
            call,
            Envelope::Call(Call {
                id: Some(Value::from(7)),
                method: "tools/list".into(),
                params: Map::new(),
            })
        );
        let note = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(note, Envelope::Call(Call { id: None, .. })));
        let resp = parse(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
        assert_eq!(resp, Envelope::ClientResponse);
    }
}
