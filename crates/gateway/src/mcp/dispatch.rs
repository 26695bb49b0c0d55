//! A session's JSON-RPC request (docs/gateway.md §9.6): lists go to `list`; calls are resolved
//! to their target, authorized per item ("Unknown tool" when denied) and relayed.

use super::ctx::Ctx;
use super::envelope::Params;
use super::jsonrpc::{self, Answer};
use super::list::list;
use super::names::{Kind, expose, resolve};
use super::session::Session;
use super::target::call_target;
use crate::audit::McpPart;
use crate::exchange::Exchange;
use crate::rules::{McpInfo, McpItem};
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// The `data` of a JSON-RPC error: the exchange's correlation id. Built on error paths only.
fn error_data(ex: &Exchange) -> Value {
    json!({"correlationId": ex.correlation_id})
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn dispatch(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    session: &Arc<Session>,
    sid: &str,
    method: &str,
    id: Value,
    params: &Params,
    part: &mut McpPart,
) -> (StatusCode, Answer) {
    match method {
        "ping" => (
            StatusCode::OK,
            Answer::Built(jsonrpc::result(&id, json!({}))),
        ),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            let kind = match method {
                "tools/list" => Kind::Tool,
                "prompts/list" => Kind::Prompt,
                "resources/list" => Kind::Resource,
                _ => Kind::Template,
            };
            let (status, reply) = list(cx, ex, session, sid, kind, id, params, part).await;
            (status, Answer::Built(reply))
        }
        "tools/call"
        | "prompts/get"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "completion/complete" => call(cx, ex, session, sid, method, id, params, part).await,
        "logging/setLevel" => {
            let forwarded = params.forward(&[]);
            for i in 0..cx.mcp.targets.len() {
                let _ = call_target(cx, ex, session, i, method, &forwarded).await;
            }
            (
                StatusCode::OK,
                Answer::Built(jsonrpc::result(&id, json!({}))),
            )
        }
        other => (
            StatusCode::OK,
            Answer::Built(jsonrpc::error(
                &id,
                jsonrpc::METHOD_NOT_FOUND,
                &format!("Method not found: {other}"),
                error_data(ex),
            )),
        ),
    }
}

/// A call on one item (a tool, a prompt, a resource): the exposed name is resolved to its
/// target and upstream name, authorized, and forwarded. The name authorized is the name sent:
/// the params go upstream as the client wrote them (`Params::forward`) but for the name's
/// member, written from the very string `mcpAuthorization` saw; the arguments too when a rule
/// could read them (then they go as the rule read them, re-serialised).
#[allow(clippy::too_many_arguments)]
async fn call(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    session: &Arc<Session>,
    sid: &str,
    method: &str,
    id: Value,
    params: &Params,
    part: &mut McpPart,
) -> (StatusCode, Answer) {
    // The member naming the item, and (for completion/complete) the `ref` object holding it.
    let (kind, key, reference) = match method {
        "tools/call" => (Kind::Tool, "name", None),
        "prompts/get" => (Kind::Prompt, "name", None),
        "completion/complete" => {
            let Some(r) = params.get("ref").filter(Value::is_object) else {
                return (
                    StatusCode::OK,
                    Answer::Built(jsonrpc::error(
                        &id,
                        jsonrpc::INVALID_PARAMS,
                        "Invalid params: ref must be an object",
                        error_data(ex),
                    )),
                );
            };
            if r.get("type").and_then(Value::as_str) == Some("ref/prompt") {
                (Kind::Prompt, "name", Some(r))
            } else {
                (Kind::Resource, "uri", Some(r))
            }
        }
        _ => (Kind::Resource, "uri", None),
    };
    let exposed = match &reference {
        Some(r) => r.get(key).and_then(Value::as_str).map(str::to_string),
        None => params.str(key),
    }
    .unwrap_or_default();
    let what = match kind {
        Kind::Tool => "tool",
        Kind::Prompt => "prompt",
        _ => "resource",
    };
    let unknown = |data| {
        jsonrpc::error(
            &id,
            jsonrpc::INVALID_PARAMS,
            &format!("Unknown {what}: {exposed}"),
            data,
        )
    };
    let Some((idx, upstream_name)) = resolve(cx, session, kind, &exposed) else {
        return (StatusCode::OK, Answer::Built(unknown(error_data(ex))));
    };
    let target_name = cx.mcp.targets[idx].name.clone();
    part.target = Some(target_name.clone());
    match kind {
        Kind::Tool => {
            part.tool = Some(upstream_name.clone());
            part.exposed_name = Some(exposed.clone());
        }
        Kind::Prompt => part.prompt = Some(upstream_name.clone()),
        _ => part.resource = Some(upstream_name.clone()),
    }
    // The arguments are built only for rules that can read them (`mcp.tool.arguments`).
    let reads_mcp = cx.rules_levels().iter().any(|(_, r)| r.references_mcp());
    let arguments = match (kind, reads_mcp, params.raw("arguments")) {
        (Kind::Tool, true, Some(raw)) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(v) => Some(v),
            Err(_) => {
                return (
                    StatusCode::OK,
                    Answer::Built(jsonrpc::error(
                        &id,
                        jsonrpc::INVALID_PARAMS,
                        "Invalid params: arguments are not JSON the gateway can read",
                        error_data(ex),
                    )),
                );
            }
        },
        _ => None,
    };
    let item = || McpItem {
        name: upstream_name.clone(),
        target: target_name.clone(),
        arguments: None,
    };
    let info = McpInfo {
        method: method.to_string(),
        session_id: Some(sid.to_string()),
        tool: (kind == Kind::Tool).then(|| McpItem {
            arguments: arguments.clone(),
            ..item()
        }),
        prompt: (kind == Kind::Prompt).then(item),
        resource: matches!(kind, Kind::Resource | Kind::Template).then(item),
    };
    let d = cx.authorize(ex, &info);
    ex.record_decision("mcpAuthorization", &d);
    if !d.allow {
        return (StatusCode::OK, Answer::Built(unknown(error_data(ex))));
    }
    let name = Value::String(upstream_name);
    let forwarded = match (reference, &arguments) {
        (Some(mut r), _) => {
            r[key] = name;
            params.forward(&[("ref", &r)])
        }
        (None, Some(args)) => params.forward(&[(key, &name), ("arguments", args)]),
        (None, None) => params.forward(&[(key, &name)]),
    };
    match call_target(cx, ex, session, idx, method, &forwarded).await {
        // Resources read through a prefixed route carry their exposed URIs.
        Ok(reply) if method == "resources/read" && cx.mcp.prefixed() => {
            let mut reply = reply.value();
            reply["id"] = id;
            if let Some(contents) = reply
                .pointer_mut("/result/contents")
                .and_then(Value::as_array_mut)
            {
                for c in contents {
                    if let Some(uri) = c.get("uri").and_then(Value::as_str).map(str::to_string) {
                        c["uri"] = Value::String(expose(cx, Kind::Resource, &target_name, &uri));
                    }
                }
            }
            (StatusCode::OK, Answer::Built(reply))
        }
        Ok(reply) => (StatusCode::OK, reply.for_client(&id)),
        Err(msg) => (
            StatusCode::OK,
            Answer::Built(jsonrpc::error(
                &id,
                jsonrpc::INTERNAL_ERROR,
                &msg,
                json!({"correlationId": ex.correlation_id, "target": target_name}),
            )),
        ),
    }
}
