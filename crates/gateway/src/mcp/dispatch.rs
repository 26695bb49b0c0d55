//! A session's JSON-RPC request (docs/gateway.md §9.6): lists go to `list`; calls are resolved
//! to their target, authorized per item ("Unknown tool" when denied) and relayed.

use super::ctx::Ctx;
use super::jsonrpc;
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

#[allow(clippy::too_many_arguments)]
pub(super) async fn dispatch(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    session: &Arc<Session>,
    sid: &str,
    method: &str,
    id: Value,
    params: &Value,
    part: &mut McpPart,
) -> (StatusCode, Value) {
    let data = json!({"correlationId": ex.correlation_id});
    match method {
        "ping" => (StatusCode::OK, jsonrpc::result(&id, json!({}))),
        "tools/list" => list(cx, ex, session, sid, Kind::Tool, id, params, part).await,
        "prompts/list" => list(cx, ex, session, sid, Kind::Prompt, id, params, part).await,
        "resources/list" => list(cx, ex, session, sid, Kind::Resource, id, params, part).await,
        "resources/templates/list" => {
            list(cx, ex, session, sid, Kind::Template, id, params, part).await
        }
        "tools/call"
        | "prompts/get"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "completion/complete" => {
            let (kind, exposed) = match method {
                "tools/call" => (
                    Kind::Tool,
                    params
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                "prompts/get" => (
                    Kind::Prompt,
                    params
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                "completion/complete" => {
                    let Some(r) = params.get("ref").filter(|r| r.is_object()).cloned() else {
                        return (
                            StatusCode::OK,
                            jsonrpc::error(
                                &id,
                                jsonrpc::INVALID_PARAMS,
                                "Invalid params: ref must be an object",
                                data,
                            ),
                        );
                    };
                    if r.get("type").and_then(Value::as_str) == Some("ref/prompt") {
                        (
                            Kind::Prompt,
                            r.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        )
                    } else {
                        (
                            Kind::Resource,
                            r.get("uri")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        )
                    }
                }
                _ => (
                    Kind::Resource,
                    params
                        .get("uri")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
            };
            let unknown = |what: &str| {
                jsonrpc::error(
                    &id,
                    jsonrpc::INVALID_PARAMS,
                    &format!("Unknown {what}: {exposed}"),
                    data.clone(),
                )
            };
            let what = match kind {
                Kind::Tool => "tool",
                Kind::Prompt => "prompt",
                _ => "resource",
            };
            let Some((idx, upstream_name)) = resolve(cx, session, kind, &exposed) else {
                return (StatusCode::OK, unknown(what));
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
            let item = McpItem {
                name: upstream_name.clone(),
                target: target_name.clone(),
                arguments: None,
            };
            let info = McpInfo {
                method: method.to_string(),
                session_id: Some(sid.to_string()),
                tool: (kind == Kind::Tool).then(|| McpItem {
                    name: upstream_name.clone(),
                    target: target_name.clone(),
                    arguments: params.get("arguments").cloned(),
                }),
                prompt: (kind == Kind::Prompt).then(|| McpItem {
                    name: item.name.clone(),
                    target: item.target.clone(),
                    arguments: None,
                }),
                resource: matches!(kind, Kind::Resource | Kind::Template).then_some(item),
            };
            let d = cx.authorize(ex, &info);
            ex.record_decision("mcpAuthorization", &d);
            if !d.allow {
                return (StatusCode::OK, unknown(what));
            }
            let mut upstream_params = params.clone();
            match (method, kind) {
                ("completion/complete", Kind::Prompt) => {
                    upstream_params["ref"]["name"] = Value::String(upstream_name)
                }
                ("completion/complete", _) => {
                    upstream_params["ref"]["uri"] = Value::String(upstream_name)
                }
                (_, Kind::Tool) | (_, Kind::Prompt) => {
                    upstream_params["name"] = Value::String(upstream_name)
                }
                _ => upstream_params["uri"] = Value::String(upstream_name),
            }
            match call_target(cx, ex, session, idx, method, upstream_params).await {
                Ok(mut reply) => {
                    reply["id"] = id;
                    if method == "resources/read"
                        && cx.mcp.prefixed()
                        && let Some(contents) = reply
                            .pointer_mut("/result/contents")
                            .and_then(Value::as_array_mut)
                    {
                        for c in contents {
                            if let Some(uri) =
                                c.get("uri").and_then(Value::as_str).map(str::to_string)
                            {
                                c["uri"] =
                                    Value::String(expose(cx, Kind::Resource, &target_name, &uri));
                            }
                        }
                    }
                    (StatusCode::OK, reply)
                }
                Err(msg) => (
                    StatusCode::OK,
                    jsonrpc::error(
                        &id,
                        jsonrpc::INTERNAL_ERROR,
                        &msg,
                        json!({"correlationId": ex.correlation_id, "target": target_name}),
                    ),
                ),
            }
        }
        "logging/setLevel" => {
            for i in 0..cx.mcp.targets.len() {
                let _ = call_target(cx, ex, session, i, method, params.clone()).await;
            }
            (StatusCode::OK, jsonrpc::result(&id, json!({})))
        }
        other => (
            StatusCode::OK,
            jsonrpc::error(
                &id,
                jsonrpc::METHOD_NOT_FOUND,
                &format!("Method not found: {other}"),
                data,
            ),
        ),
    }
}
