//! What every resource handler returns: a status with an optional JSON body, or a Graph error.

use super::odata::GraphError;
use axum::http::StatusCode;
use serde_json::Value;

pub(crate) type GResult<T> = Result<T, GraphError>;

pub(crate) fn iso(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

pub(crate) type Out = (StatusCode, Option<Value>);

pub(crate) fn ok(v: Value) -> GResult<Out> {
    Ok((StatusCode::OK, Some(v)))
}

pub(crate) fn created(v: Value) -> GResult<Out> {
    Ok((StatusCode::CREATED, Some(v)))
}

pub(crate) fn method_not_allowed() -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "The HTTP method is not allowed on this resource.",
    )
}
