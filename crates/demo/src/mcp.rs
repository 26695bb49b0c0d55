//! The demo MCP server: tools that make the caller's identity visible (`whoami`), use it
//! downstream (`get_my_profile`, a chained on-behalf-of exchange to Graph), and keep per-user
//! state (`add_note`, `list_notes`) so that gateway policies have something to allow and deny.
//!
//! The bearer check runs as axum middleware in front of rmcp's streamable HTTP service; rmcp
//! hands each request's `http::request::Parts` (with the [`Caller`] the middleware added) to the
//! tool handlers through the request context's extensions.

use crate::auth::{Caller, error_chain};
use agentid_claims::Identity;
use http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData as McpError, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Graph permission `get_my_profile` asks for on the caller's behalf.
pub const GRAPH_USER_READ: &str = "https://graph.microsoft.com/User.Read";
/// Bounds on the in-memory notes, so that a caller cannot grow the server without limit.
const MAX_NOTE_CHARS: usize = 2000;
const MAX_NOTES_PER_OWNER: usize = 200;

/// What the tools need besides the caller: the downstream exchange and the notes.
pub struct McpState {
    pub http: reqwest::Client,
    pub token_endpoint: String,
    pub graph_base: String,
    pub client_id: String,
    pub client_secret: String,
    notes: Mutex<HashMap<String, Vec<Value>>>,
}

impl McpState {
    pub fn new(
        http: reqwest::Client,
        token_endpoint: String,
        graph_base: String,
        client_id: String,
        client_secret: String,
    ) -> Self {
        Self {
            http,
            token_endpoint,
            graph_base: graph_base.trim_end_matches('/').to_string(),
            client_id,
            client_secret,
            notes: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Clone)]
pub struct DemoMcp {
    state: Arc<McpState>,
    tool_router: ToolRouter<DemoMcp>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddNote {
    /// The text of the note.
    pub text: String,
}

fn s<'a>(c: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    c.get(k).and_then(Value::as_str)
}

/// True when the token carries a signed-in user (delegated), as the shared derivation says.
fn is_user_token(c: &Map<String, Value>) -> bool {
    Identity::derive(c).token_type.as_deref() == Some("user")
}

/// Whose notes a call touches: the user (by tenant and object id) or, app-only, the application.
fn owner_key(c: &Map<String, Value>) -> (String, String) {
    let tid = s(c, "tid").unwrap_or("");
    let id = Identity::derive(c);
    if id.token_type.as_deref() == Some("user") {
        let oid = s(c, "oid").or_else(|| s(c, "sub")).unwrap_or("?");
        let shown = id.user_upn.as_deref().unwrap_or(oid).to_string();
        (format!("user:{tid}:{oid}"), shown)
    } else {
        let app = s(c, "azp").or_else(|| s(c, "appid")).unwrap_or("?");
        (format!("app:{tid}:{app}"), format!("application {app}"))
    }
}

/// The caller as this server sees it, plus a one-line sentence saying who acts for whom.
pub fn describe(c: &Map<String, Value>) -> (String, Value) {
    let id = Identity::derive(c);
    let actor = id.client.as_deref().unwrap_or("an unknown client");
    let is_agent = id.is_agent;
    let is_user = id.token_type.as_deref() == Some("user");
    let user = is_user.then(|| {
        json!({
            "oid": id.user_oid,
            "upn": id.user_upn,
            "name": id.user_name,
        })
    });
    let scopes: Vec<&str> = s(c, "scp")
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    let roles: Vec<&str> = c
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let kind = if is_agent { "agent" } else { "application" };
    let blueprint = id.blueprint.as_deref();
    let mut sentence = match (&user, id.user_upn.as_deref().or(id.user_oid.as_deref())) {
        (Some(_), Some(u)) => format!("{kind} {actor} acting on behalf of {u}"),
        (Some(_), None) => format!("{kind} {actor} acting on behalf of a user"),
        (None, _) => format!("{kind} {actor} acting as itself (no signed-in user)"),
    };
    if let Some(bp) = blueprint {
        sentence.push_str(&format!(", blueprint {bp}"));
    }
    let audience = match c.get("aud") {
        Some(Value::Array(a)) => Value::Array(a.clone()),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let value = json!({
        "summary": sentence,
        "user": user,
        "agent": {
            "id": actor,
            "displayName": s(c, "app_displayname"),
            "isAgent": is_agent,
        },
        "blueprint": blueprint,
        "scopes": scopes,
        "roles": roles,
        "tokenType": id.token_type,
        "audience": audience,
        "issuer": s(c, "iss"),
        "tenantId": s(c, "tid"),
    });
    (sentence, value)
}

fn caller(parts: &Parts) -> Result<Caller, McpError> {
    parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
        McpError::internal_error(
            "the request reached the tool without a validated token",
            None,
        )
    })
}

fn text_and_json(text: String, value: Value) -> CallToolResult {
    let mut r = CallToolResult::structured(value);
    r.content.insert(0, ContentBlock::text(text));
    r
}

fn tool_error(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text.into())])
}

impl DemoMcp {
    pub fn new(state: Arc<McpState>) -> Self {
        Self {
            state,
            tool_router: Self::tool_router(),
        }
    }

    /// On-behalf-of: the caller's token for a Graph token that names this server as the actor.
    async fn graph_token(&self, assertion: &str) -> Result<String, String> {
        let st = &self.state;
        let resp = st
            .http
            .post(&st.token_endpoint)
            .timeout(Duration::from_secs(20))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("requested_token_use", "on_behalf_of"),
                ("client_id", st.client_id.as_str()),
                ("client_secret", st.client_secret.as_str()),
                ("assertion", assertion),
                ("scope", GRAPH_USER_READ),
            ])
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the token endpoint {} could not be reached: {}",
                    st.token_endpoint,
                    error_chain(&e)
                )
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if let Some(t) = body.get("access_token").and_then(Value::as_str)
            && status.is_success()
        {
            return Ok(t.to_string());
        }
        let why = body
            .get("error_description")
            .and_then(Value::as_str)
            .or_else(|| body.get("error").and_then(Value::as_str))
            .map(|d| d.to_string())
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(format!(
            "the on-behalf-of exchange for Microsoft Graph ({GRAPH_USER_READ}) as {} was refused: {why}",
            st.client_id
        ))
    }
}

#[tool_router]
impl DemoMcp {
    #[tool(
        description = "Who is calling, as this server sees the validated access token: the signed-in user, the agent (or application) acting for them, the agent's blueprint, the delegated scopes and application roles, and the token type."
    )]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, McpError> {
        let c = caller(&parts)?;
        let (sentence, value) = describe(c.claims());
        tracing::info!(token = %c.0.log_id(), "whoami: {sentence}");
        Ok(text_and_json(format!("You are {sentence}."), value))
    }

    #[tool(
        description = "The signed-in user's profile from Microsoft Graph (/v1.0/me). The server exchanges the caller's token on behalf of the user for a Graph token, so it needs a user: app-only callers get an error."
    )]
    async fn get_my_profile(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, McpError> {
        let c = caller(&parts)?;
        let claims = c.claims();
        if !is_user_token(claims) {
            let (sentence, _) = describe(claims);
            return Ok(tool_error(format!(
                "get_my_profile needs a signed-in user, but this call carries an app-only token ({sentence}). Call it with a token the agent obtained on behalf of a user."
            )));
        }
        let graph = match self.graph_token(c.0.raw()).await {
            Ok(t) => t,
            Err(why) => {
                tracing::info!(token = %c.0.log_id(), "get_my_profile: {why}");
                return Ok(tool_error(why));
            }
        };
        let url = format!("{}/v1.0/me", self.state.graph_base);
        let resp = match self
            .state
            .http
            .get(&url)
            .bearer_auth(&graph)
            .timeout(Duration::from_secs(20))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(tool_error(format!(
                    "Microsoft Graph at {url} could not be reached: {}",
                    error_chain(&e)
                )));
            }
        };
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("");
            let message = body["error"]["message"].as_str().unwrap_or("");
            return Ok(tool_error(format!(
                "Microsoft Graph refused GET /v1.0/me (HTTP {status}): {code} {message}"
            )));
        }
        let mut profile = match body {
            Value::Object(o) => o,
            _ => {
                return Ok(tool_error(format!(
                    "Microsoft Graph answered GET /v1.0/me with something that is not a user object (HTTP {status})"
                )));
            }
        };
        // OData annotations mean nothing to a model or a person reading the result.
        profile.retain(|k, _| !k.starts_with('@'));
        let name = profile
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let upn = profile
            .get("userPrincipalName")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let text = format!("Profile of {name} ({upn}) from Microsoft Graph, read on their behalf.");
        tracing::info!(token = %c.0.log_id(), "get_my_profile for {upn}");
        Ok(text_and_json(text, Value::Object(profile)))
    }

    #[tool(
        description = "Add a note to the caller's notes. Notes are kept in memory, per user (or per application for app-only callers)."
    )]
    async fn add_note(
        &self,
        Parameters(AddNote { text }): Parameters<AddNote>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, McpError> {
        let c = caller(&parts)?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Ok(tool_error("A note needs some text."));
        }
        if text.chars().count() > MAX_NOTE_CHARS {
            return Ok(tool_error(format!(
                "A note may have at most {MAX_NOTE_CHARS} characters."
            )));
        }
        let (key, owner) = owner_key(c.claims());
        let result = {
            let mut notes = self
                .state
                .notes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let list = notes.entry(key).or_default();
            if list.len() >= MAX_NOTES_PER_OWNER {
                None
            } else {
                let note = json!({
                    "id": list.len() + 1,
                    "text": text,
                    "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                list.push(note.clone());
                Some((note, list.len()))
            }
        };
        let Some((note, count)) = result else {
            return Ok(tool_error(format!(
                "{owner} already has {MAX_NOTES_PER_OWNER} notes, the most this demo keeps."
            )));
        };
        Ok(text_and_json(
            format!("Noted for {owner} (note {count})."),
            json!({"owner": owner, "note": note, "count": count}),
        ))
    }

    #[tool(
        description = "List the caller's notes (per user, or per application for app-only callers)."
    )]
    async fn list_notes(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, McpError> {
        let c = caller(&parts)?;
        let (key, owner) = owner_key(c.claims());
        let notes = self
            .state
            .notes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let text = if notes.is_empty() {
            format!("{owner} has no notes.")
        } else {
            let lines: Vec<String> = notes
                .iter()
                .map(|n| format!("{}. {}", n["id"], n["text"].as_str().unwrap_or("")))
                .collect();
            format!("Notes of {owner}:\n{}", lines.join("\n"))
        };
        Ok(text_and_json(text, json!({"owner": owner, "notes": notes})))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("agentid-demo-mcp", env!("CARGO_PKG_VERSION"))
                    .with_title("agentid demo MCP server"),
            )
            .with_instructions(
                "Tools that show who is calling (whoami), read the signed-in user's profile on their behalf (get_my_profile), and keep per-user notes (add_note, list_notes).",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_agent_obo_and_autonomous_agent() {
        let obo = json!({"aud":"api://mcp","appid":"f3897825","idtyp":"user","upn":"demo@agentid.local",
            "oid":"U","name":"Demo User","scp":"access_as_user","xms_act_fct":"11 9 3","xms_par_app_azp":"BP"});
        let (sentence, v) = describe(obo.as_object().unwrap());
        assert_eq!(
            sentence,
            "agent f3897825 acting on behalf of demo@agentid.local, blueprint BP"
        );
        assert_eq!(v["agent"]["isAgent"], true);
        assert_eq!(v["user"]["oid"], "U");
        assert_eq!(v["scopes"], json!(["access_as_user"]));

        let app = json!({"azp":"A2","idtyp":"app","roles":["Tools.Invoke"],"xms_act_fct":"3 11 9"});
        let (sentence, v) = describe(app.as_object().unwrap());
        assert_eq!(sentence, "agent A2 acting as itself (no signed-in user)");
        assert_eq!(v["user"], Value::Null);
        assert_eq!(v["roles"], json!(["Tools.Invoke"]));
        assert_eq!(owner_key(app.as_object().unwrap()).0, "app::A2");

        let plain = json!({"appid":"P","scp":"User.Read","preferred_username":"x@y"});
        assert_eq!(
            describe(plain.as_object().unwrap()).0,
            "application P acting on behalf of x@y"
        );
    }
}
