//! The JSON-RPC messages the gateway writes to MCP clients (docs/gateway.md §9.7); requests
//! are parsed by `envelope`.

use crate::body::{self, Body};
use http::{Response, StatusCode};
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
