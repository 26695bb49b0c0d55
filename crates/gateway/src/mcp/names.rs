//! Names across targets (docs/gateway.md §9.4): how a target's tool, prompt or resource is
//! exposed to the client, and which target an exposed name belongs to.

use super::ctx::Ctx;
use super::session::Session;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Tool,
    Prompt,
    Resource,
    Template,
}

impl Kind {
    pub(super) fn list_key(self) -> &'static str {
        match self {
            Kind::Tool => "tools",
            Kind::Prompt => "prompts",
            Kind::Resource => "resources",
            Kind::Template => "resourceTemplates",
        }
    }
    pub(super) fn name_key(self) -> &'static str {
        match self {
            Kind::Tool | Kind::Prompt => "name",
            Kind::Resource => "uri",
            Kind::Template => "uriTemplate",
        }
    }
}

pub(super) fn expose(cx: &Ctx<'_>, kind: Kind, target: &str, name: &str) -> String {
    if !cx.mcp.prefixed() {
        return name.to_string();
    }
    match kind {
        Kind::Tool | Kind::Prompt => format!("{target}_{name}"),
        Kind::Resource | Kind::Template => {
            if name.contains("://") || name.contains(':') {
                format!("{target}+{name}")
            } else {
                name.to_string()
            }
        }
    }
}

/// Splits an exposed name into (target index, upstream name).
pub(super) fn resolve(
    cx: &Ctx<'_>,
    session: &Session,
    kind: Kind,
    exposed: &str,
) -> Option<(usize, String)> {
    if !cx.mcp.prefixed() {
        if cx.mcp.targets.len() == 1 {
            return Some((0, exposed.to_string()));
        }
        // prefixMode never with several targets: the index of the last list decides.
        let lists = session.lists.lock().ok()?;
        let idx = lists.get(&format!("index:{}", kind.list_key()))?.1.clone();
        return idx.iter().find_map(|v| {
            (v.get("name").and_then(Value::as_str) == Some(exposed))
                .then(|| {
                    v.get("target")
                        .and_then(Value::as_u64)
                        .map(|t| (t as usize, exposed.to_string()))
                })
                .flatten()
        });
    }
    let sep = match kind {
        Kind::Tool | Kind::Prompt => '_',
        _ => '+',
    };
    let (target, name) = exposed.split_once(sep)?;
    let idx = cx.mcp.targets.iter().position(|t| t.name == target)?;
    Some((idx, name.to_string()))
}
