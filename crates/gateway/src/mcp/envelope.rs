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
use super::raw::{members, write_object};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Longest `method` accepted (MCP's are short; the name becomes an audit field and a label).
pub const MAX_METHOD_BYTES: usize = 128;
/// Longest string `id` accepted (it is echoed back and written to the audit log).
pub const MAX_ID_BYTES: usize = 256;
/// Deepest nesting of arrays and objects accepted (serde_json's own recursion limit, kept
/// although members are now scanned, not built: `nesting`).
pub const MAX_DEPTH: usize = 128;

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
    /// Empty when the message had none.
    pub params: Params,
}

/// A request's `params` (docs/performance.md §6.2): its members in order, each name at most
/// once (compared decoded, so `"na\u006de"` is `name`), each value as the client wrote it.
/// Nothing is built from a value until something reads it, and what goes upstream is written
/// from these members ([`Params::forward`]): a name the gateway read and authorized is the one
/// name the target receives, whatever the client's duplicates or escapes were.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, Box<RawValue>)>);

impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && v1.get() == v2.get())
    }
}

impl Params {
    /// A member as written.
    pub fn raw(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// A member parsed (`None` when absent, or when it is no JSON serde_json can hold).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.raw(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// A string member (`None` when absent or not a string).
    pub fn str(&self, key: &str) -> Option<String> {
        self.raw(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// All members parsed (those serde_json cannot hold are left out).
    pub fn to_map(&self) -> Map<String, Value> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v.get()).ok()?)))
            .collect()
    }

    /// The object to send upstream, as JSON text: every member as written, except those named
    /// in `set`, written from the given values (and added when absent). Member names are
    /// written escaped by us, each once.
    pub fn forward(&self, set: &[(&str, &Value)]) -> String {
        write_object(self.0.iter().map(|(k, v)| (k.as_str(), v.get())), set)
    }

    fn parse(raw: &RawValue) -> Result<Params, serde_json::Error> {
        let members = members(raw.get())?;
        Ok(Params(
            members
                .into_iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect(),
        ))
    }
}

/// The deepest nesting of arrays and objects in a JSON text (strings skipped).
fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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

/// Parses a client's message. The members are scanned, not built: only `jsonrpc`, `id`,
/// `method` and `params`' member names are read here; values are read when used.
pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let msg: &RawValue = serde_json::from_slice(bytes).map_err(|_| EnvelopeError::parse())?;
    if nesting(msg.get().as_bytes()) > MAX_DEPTH {
        return Err(EnvelopeError::parse());
    }
    match msg.get().trim_start().as_bytes().first() {
        Some(b'{') => {}
        Some(b'[') => {
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
    }
    let obj =
        members(msg.get()).map_err(|e| EnvelopeError::invalid(&Value::Null, &e.to_string()))?;
    let member = |key: &str| obj.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    // A value serde_json cannot hold (a number beyond f64) is a parse error, as it was when
    // the whole message was built.
    let value = |key: &str| -> Result<Option<Value>, EnvelopeError> {
        member(key)
            .map(|v| serde_json::from_str(v.get()).map_err(|_| EnvelopeError::parse()))
            .transpose()
    };
    let id = value("id")?;
    let echo = id
        .as_ref()
        .filter(|v| valid_id(v))
        .cloned()
        .unwrap_or(Value::Null);
    if value("jsonrpc")?.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(EnvelopeError::invalid(&echo, "jsonrpc must be \"2.0\""));
    }
    if let Some(id) = &id
        && !valid_id(id)
    {
        return Err(EnvelopeError::invalid(
            &Value::Null,
            &format!("id must be a string of at most {MAX_ID_BYTES} bytes or an integer"),
        ));
    }
    let Some(method) = value("method")? else {
        let has_result = member("result").is_some();
        let has_error = member("error").is_some();
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
    let invalid_params = |detail: String| EnvelopeError {
        code: jsonrpc::INVALID_PARAMS,
        message: format!("Invalid params: {detail}"),
        id: echo.clone(),
    };
    let params = match member("params") {
        None => Params::default(),
        Some(p) if p.get() == "null" => Params::default(),
        Some(p) if p.get().starts_with('{') => {
            Params::parse(p).map_err(|e| invalid_params(e.to_string()))?
        }
        Some(_) => return Err(invalid_params("params must be an object".into())),
    };
    Ok(Envelope::Call(Call {
        id,
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
                params: Params::default(),
            })
        );
        let note = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(note, Envelope::Call(Call { id: None, .. })));
        let resp = parse(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
        assert_eq!(resp, Envelope::ClientResponse);
    }
}
