//! CEL rules: `authorization`, `mcpAuthorization`, log fields (gateway.md §7).
//! STUB on main: replaced by the gw-policy branch.
use crate::identity::Identity;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Allow,
    Deny,
    Require,
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub expr: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

pub struct RuleSet {
    pub specs: Vec<RuleSpec>,
}
impl RuleSet {
    pub fn compile(specs: Vec<RuleSpec>) -> Result<RuleSet, RuleError> {
        Ok(RuleSet { specs })
    }
    pub fn references_mcp(&self) -> bool {
        self.references("mcp.")
    }
    pub fn references(&self, prefix: &str) -> bool {
        self.specs.iter().any(|s| s.expr.contains(prefix))
    }
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Route,
    Backend,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub allow: bool,
    pub rule_kind: Option<RuleKind>,
    pub rule_index: Option<usize>,
    pub rule: Option<String>,
    pub level: Level,
    pub reason: &'static str,
}

pub struct RequestInfo {
    pub method: String,
    pub uri: String,
    pub host: String,
    pub scheme: String,
    pub path: String,
    pub path_and_query: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub start_time: String,
}

pub struct SourceInfo {
    pub address: String,
    pub port: u16,
}

pub struct McpItem {
    pub name: String,
    pub target: String,
}

pub struct McpToolInfo {
    pub name: String,
    pub target: String,
    pub arguments: Option<Value>,
}

pub struct McpInfo {
    pub method: String,
    pub session_id: Option<String>,
    pub tool: Option<McpToolInfo>,
    pub prompt: Option<McpItem>,
    pub resource: Option<McpItem>,
}

pub struct LlmInfo {
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub provider: String,
    pub streaming: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

pub struct BackendInfo {
    pub name: String,
    pub kind: String,
}

pub struct EvalContext<'a> {
    pub request: &'a RequestInfo,
    pub source: &'a SourceInfo,
    pub jwt: Option<&'a Map<String, Value>>,
    pub identity: &'a Identity,
    pub mcp: Option<&'a McpInfo>,
    pub response_code: Option<u16>,
    pub llm: Option<&'a LlmInfo>,
    pub backend: Option<&'a BackendInfo>,
}

pub fn evaluate(levels: &[(Level, &RuleSet)], _ctx: &EvalContext) -> Decision {
    let _ = levels;
    Decision {
        allow: true,
        rule_kind: None,
        rule_index: None,
        rule: None,
        level: Level::Route,
        reason: "no_rules",
    }
}

pub struct Expr {
    pub text: String,
}
impl Expr {
    pub fn compile(text: &str) -> Result<Expr, RuleError> {
        Ok(Expr {
            text: text.to_string(),
        })
    }
    pub fn eval(&self, _ctx: &EvalContext) -> Result<Value, RuleError> {
        Err(RuleError("stub".into()))
    }
}
