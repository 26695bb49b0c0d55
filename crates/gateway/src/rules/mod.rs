//! CEL rules: `authorization`, `mcpAuthorization`, log fields (docs/gateway.md §7).
//!
//! API used by the rest of the gateway:
//! - [`RuleSet::compile`] turns the config's rules into compiled programs (a compile error is a
//!   load error, §2.4 rule 1); [`RuleSet::references`] tells whether a set uses `mcp.`/`llm.`
//!   (§2.4 rule 10, and the §7.5 per-item optimization).
//! - [`EvalContext`] borrows what the request already has; [`Activation::new`] turns it into a
//!   CEL activation **once per request** without copying claims or headers (values borrow from
//!   the context). [`Activation::decide`] evaluates rule sets of one or more levels, optionally
//!   with a per-item [`McpInfo`] bound in a child scope (cheap: only `mcp` is built per item).
//!   [`evaluate`] is the one-shot convenience.
//! - [`Expr`] is a single expression for log / metric fields, evaluated to JSON.
//!
//! Variables (§7.1): `request`, `source`, `jwt` (only with a validated token), `agent`, `user`
//! (always; absent values are real nulls), `mcp` (when given; `tool`/`prompt`/`resource` that do
//! not apply to the operation are objects whose fields are null, so `mcp.tool.name == 'x'` on a
//! prompt operation is false rather than an error — the result agentgateway gives, under our
//! fail-closed deny semantics), `response` (when a code is given), `llm`, `backend`.
//! Functions: the CEL standard library, the cel-go strings extension and `facets(value)`.
//!
//! One file on purpose: the request facts, their CEL values and the evaluator share the
//! borrowing `Boxed` values and lifetimes of one activation; the tests are in `tests.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use cel::common::types::{
    self, CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError, Program};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::identity::Identity;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RuleError {
    #[error("CEL expression `{expr}` does not compile: {message}")]
    Compile { expr: String, message: String },
    #[error("CEL evaluation failed: {0}")]
    Eval(String),
    #[error("CEL result cannot be represented as JSON: {0}")]
    NotJson(String),
}

/// The shared environment: stdlib, strings extension, `facets`. Built once.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Neither call can fail on a fresh stdlib environment: the names are not declared yet.
    if let Err(e) = env.add_extension(cel::extensions::strings) {
        tracing::error!(error = %e, "CEL strings extension not registered");
    }
    if let Err(e) = env.add_overload("facets", "facets_dyn", vec![types::DYN_TYPE], cel_facets) {
        tracing::error!(error = %e, "CEL facets() not registered");
    }
    Arc::new(env)
});

/// `facets(value) -> list(int)`, §7.4, on CEL values.
fn cel_facets<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let arg = args
        .first()
        .ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))?;
    let value = cel::Value::try_from(&**arg)?;
    let json = match value {
        cel::Value::String(s) => Json::String(s.to_string()),
        cel::Value::List(items) => Json::Array(
            items
                .iter()
                .map(|i| match i {
                    cel::Value::Int(n) => Json::from(*n),
                    cel::Value::UInt(n) => Json::from(*n),
                    cel::Value::String(s) => Json::String(s.to_string()),
                    _ => Json::Null,
                })
                .collect(),
        ),
        _ => Json::Null,
    };
    let list: Vec<Box<dyn Val + 'v>> = crate::identity::facets(&json)
        .into_iter()
        .map(|i| Box::new(CelInt::from(i)) as Box<dyn Val + 'v>)
        .collect();
    Ok(CowVal::owned(CelList::from(list)))
}

fn compile(expr: &str) -> Result<Program, RuleError> {
    ENV.compile(expr).map_err(|e| RuleError::Compile {
        expr: expr.to_string(),
        message: e.to_string(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Allow,
    Deny,
    Require,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Allow => "allow",
            RuleKind::Deny => "deny",
            RuleKind::Require => "require",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub expr: String,
}

struct Rule {
    kind: RuleKind,
    /// Index in the configured list (file order), as recorded in audit events.
    index: usize,
    expr: String,
    program: Program,
}

/// A compiled rule list of one level (route or backend).
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Top-level variables referenced by any rule.
    variables: Vec<String>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| (r.kind, &r.expr)))
            .finish()
    }
}

impl RuleSet {
    pub fn compile(specs: Vec<RuleSpec>) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut variables: Vec<String> = Vec::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let program = compile(&spec.expr)?;
            for v in program.references().variables() {
                if !variables.iter().any(|x| x == v) {
                    variables.push(v.to_string());
                }
            }
            rules.push(Rule {
                kind: spec.kind,
                index,
                expr: spec.expr,
                program,
            });
        }
        Ok(RuleSet { rules, variables })
    }

    pub fn empty() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            variables: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether any rule references the variable named by `prefix` (`"mcp."`, `"llm"`, …).
    pub fn references(&self, prefix: &str) -> bool {
        let name = prefix.trim_end_matches('.');
        self.variables.iter().any(|v| v == name)
    }

    pub fn references_mcp(&self) -> bool {
        self.references("mcp")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Route,
    Backend,
}

/// The outcome of §7.5 over one or more levels, with the deciding rule for audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub rule_kind: Option<RuleKind>,
    pub rule_index: Option<usize>,
    pub rule: Option<String>,
    pub level: Level,
    /// `rule_matched` (an allow rule), `deny_matched`, `require_failed`, `rule_error` (a deny or
    /// require rule failed to evaluate), `no_allow_rule_matched`, `no_rules`, or
    /// `no_deny_matched` (only deny/require rules exist and none denied).
    pub reason: &'static str,
}

impl Decision {
    fn plain(allow: bool, level: Level, reason: &'static str) -> Decision {
        Decision {
            allow,
            rule_kind: None,
            rule_index: None,
            rule: None,
            level,
            reason,
        }
    }

    fn by(allow: bool, level: Level, rule: &Rule, reason: &'static str) -> Decision {
        Decision {
            allow,
            rule_kind: Some(rule.kind),
            rule_index: Some(rule.index),
            rule: Some(rule.expr.clone()),
            level,
            reason,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation context

/// `request.*`. Build it with [`RequestInfo::from_http`] so headers are normalized and redacted.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub method: String,
    pub uri: String,
    pub host: String,
    pub scheme: String,
    pub path: String,
    pub path_and_query: String,
    pub version: &'static str,
    /// The request's headers as received; `request.headers` (lower-case names, repeated values
    /// joined with `,`, credentials `<redacted>`) is built from them only for a rule that reads
    /// `request` ([`Self::cel_headers`]): most requests are evaluated by no such rule.
    pub headers: http::HeaderMap,
    pub start_time: chrono::DateTime<chrono::Utc>,
}

/// Headers whose values never reach CEL (§7.1).
const REDACTED_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "api-key",
    "x-api-key",
];

impl RequestInfo {
    /// From the parts of an inbound request. `scheme` is the listener's (`http`/`https`);
    /// `host` comes from the URI authority, else the `Host` header (without port).
    pub fn from_http(
        method: &http::Method,
        uri: &http::Uri,
        version: http::Version,
        headers: &http::HeaderMap,
        scheme: &str,
        start_time: chrono::DateTime<chrono::Utc>,
    ) -> RequestInfo {
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let host = match authority.parse::<http::uri::Authority>() {
            Ok(a) => a.host().to_string(),
            Err(_) => authority.clone(),
        };
        let path_and_query = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let full_uri = if uri.scheme().is_some() {
            uri.to_string()
        } else {
            format!("{scheme}://{authority}{path_and_query}")
        };
        RequestInfo {
            method: method.as_str().to_string(),
            uri: full_uri,
            host,
            scheme: scheme.to_string(),
            path: uri.path().to_string(),
            path_and_query,
            version: version_name(version),
            headers: headers.clone(),
            start_time,
        }
    }

    /// `request.headers`: lower-case names, repeated values joined with `,`, the values of
    /// credential headers `<redacted>`.
    pub fn cel_headers(&self) -> BTreeMap<&str, String> {
        let mut map: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in &self.headers {
            let name = name.as_str();
            let value = if REDACTED_HEADERS.contains(&name) {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            match map.get_mut(name) {
                Some(existing) if existing != "<redacted>" => {
                    existing.push(',');
                    existing.push_str(&value);
                }
                Some(_) => {}
                None => {
                    map.insert(name, value);
                }
            }
        }
        map
    }

    /// `request.startTime`: RFC 3339 with milliseconds.
    pub fn start_time_rfc3339(&self) -> String {
        self.start_time
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// The names `format!("{version:?}")` gives, without formatting per request.
fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

#[derive(Debug, Clone, Default)]
pub struct SourceInfo {
    pub address: String,
    pub port: u16,
}

/// A tool, prompt or resource as MCP rules see it: `name` is the upstream (unprefixed) name
/// (the URI for resources), `target` the target name.
#[derive(Debug, Clone, Default)]
pub struct McpItem {
    pub name: String,
    pub target: String,
    /// `tools/call` only; never logged.
    pub arguments: Option<Json>,
}

#[derive(Debug, Clone, Default)]
pub struct McpInfo {
    /// JSON-RPC method (`mcp.methodName`, alias `mcp.method`).
    pub method: String,
    pub session_id: Option<String>,
    pub tool: Option<McpItem>,
    pub prompt: Option<McpItem>,
    pub resource: Option<McpItem>,
}

#[derive(Debug, Clone, Default)]
pub struct LlmInfo {
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub provider: String,
    pub streaming: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct BackendInfo {
    pub name: String,
    /// `ai` | `mcp` | `static`.
    pub kind: String,
}

/// Everything a rule or log field may read, borrowed from the request's state.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    pub request: &'a RequestInfo,
    pub source: &'a SourceInfo,
    /// Claims of the validated token; `None` leaves `jwt` undefined (any use is an error).
    pub jwt: Option<&'a Map<String, Json>>,
    pub identity: &'a Identity,
    pub mcp: Option<&'a McpInfo>,
    pub response_code: Option<u16>,
    pub llm: Option<&'a LlmInfo>,
    pub backend: Option<&'a BackendInfo>,
}

type Boxed<'a> = Box<dyn Val + 'a>;

fn s(v: &str) -> Boxed<'_> {
    Box::new(CelString::from(v))
}

fn opt_s(v: Option<&str>) -> Boxed<'_> {
    match v {
        Some(v) => s(v),
        None => Box::new(CelNull),
    }
}

fn b<'a>(v: bool) -> Boxed<'a> {
    Box::new(CelBool::from(v))
}

fn int<'a>(v: i64) -> Boxed<'a> {
    Box::new(CelInt::from(v))
}

fn opt_u<'a>(v: Option<u64>) -> Boxed<'a> {
    match v {
        // Token counts fit an i64; CEL rules compare them with int literals.
        Some(v) => int(i64::try_from(v).unwrap_or(i64::MAX)),
        None => Box::new(CelNull),
    }
}

fn ints<'a>(v: &[i64]) -> Boxed<'a> {
    Box::new(CelList::from(v.iter().map(|i| int(*i)).collect::<Vec<_>>()))
}

fn object<'a>(fields: Vec<(&'static str, Boxed<'a>)>) -> Boxed<'a> {
    let map: HashMap<CelMapKey<'a>, Boxed<'a>> = fields
        .into_iter()
        .map(|(k, v)| (CelMapKey::from(k), v))
        .collect();
    Box::new(CelMap::from(map))
}

/// A JSON value as CEL sees it, borrowing strings. Integers stay ints, other numbers doubles.
fn json(v: &Json) -> Boxed<'_> {
    match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(x) => b(*x),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                int(i)
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Json::String(x) => s(x),
        Json::Array(items) => Box::new(CelList::from(items.iter().map(json).collect::<Vec<_>>())),
        Json::Object(m) => json_object(m),
    }
}

fn json_object(m: &Map<String, Json>) -> Boxed<'_> {
    let map: HashMap<CelMapKey<'_>, Boxed<'_>> = m
        .iter()
        .map(|(k, v)| (CelMapKey::from(k.as_str()), json(v)))
        .collect();
    Box::new(CelMap::from(map))
}

fn identity_vals(id: &Identity) -> (Boxed<'_>, Boxed<'_>) {
    let agent = object(vec![
        ("isAgent", b(id.is_agent)),
        ("id", opt_s(id.id.as_deref())),
        ("blueprint", opt_s(id.blueprint.as_deref())),
        ("tokenType", opt_s(id.token_type.as_deref())),
        ("autonomous", b(id.autonomous)),
        ("isAgentUser", b(id.is_agent_user)),
        ("onBehalfOfUser", b(id.on_behalf_of_user)),
        ("mode", s(id.mode.as_str())),
        ("actorFacets", ints(&id.actor_facets)),
        ("subjectFacets", ints(&id.subject_facets)),
    ]);
    let user = object(vec![
        ("oid", opt_s(id.user_oid.as_deref())),
        ("upn", opt_s(id.user_upn.as_deref())),
        ("name", opt_s(id.user_name.as_deref())),
        ("tenant", opt_s(id.user_tenant.as_deref())),
    ]);
    (agent, user)
}

fn mcp_item(item: Option<&McpItem>, with_arguments: bool) -> Boxed<'_> {
    let mut fields = vec![
        ("name", opt_s(item.map(|i| i.name.as_str()))),
        ("target", opt_s(item.map(|i| i.target.as_str()))),
    ];
    if with_arguments {
        fields.push((
            "arguments",
            match item.and_then(|i| i.arguments.as_ref()) {
                Some(a) => json(a),
                None => Box::new(CelNull),
            },
        ));
    }
    object(fields)
}

fn mcp_val(m: &McpInfo) -> Boxed<'_> {
    object(vec![
        ("methodName", s(&m.method)),
        ("method", s(&m.method)),
        ("sessionId", opt_s(m.session_id.as_deref())),
        ("tool", mcp_item(m.tool.as_ref(), true)),
        ("prompt", mcp_item(m.prompt.as_ref(), false)),
        ("resource", mcp_item(m.resource.as_ref(), false)),
    ])
}

/// A CEL activation built once per request; see the module docs.
pub struct Activation<'a> {
    ctx: cel::Context<'a, 'a>,
}

impl<'a> Activation<'a> {
    pub fn new(c: &EvalContext<'a>) -> Activation<'a> {
        Activation::with(c, |_| true)
    }

    /// Binds only the variables `wanted` names: the programs to run reference no others, and
    /// binding one (the token's claims, the headers) costs allocations per request.
    pub fn with(c: &EvalContext<'a>, wanted: impl Fn(&str) -> bool) -> Activation<'a> {
        let mut ctx = cel::Context::with_env(ENV.clone());
        let r = c.request;
        if wanted("request") {
            let headers: HashMap<CelMapKey<'a>, Boxed<'a>> = r
                .cel_headers()
                .into_iter()
                .map(|(k, v)| {
                    (
                        CelMapKey::from(k),
                        Box::new(CelString::from(v)) as Boxed<'a>,
                    )
                })
                .collect();
            ctx.add_variable_as_val(
                "request",
                object(vec![
                    ("method", s(&r.method)),
                    ("uri", s(&r.uri)),
                    ("host", s(&r.host)),
                    ("scheme", s(&r.scheme)),
                    ("path", s(&r.path)),
                    ("pathAndQuery", s(&r.path_and_query)),
                    ("version", s(r.version)),
                    ("headers", Box::new(CelMap::from(headers))),
                    (
                        "startTime",
                        Box::new(CelString::from(r.start_time_rfc3339())),
                    ),
                ]),
            );
        }
        if wanted("source") {
            ctx.add_variable_as_val(
                "source",
                object(vec![
                    ("address", s(&c.source.address)),
                    ("port", int(i64::from(c.source.port))),
                ]),
            );
        }
        if let Some(claims) = c.jwt
            && wanted("jwt")
        {
            ctx.add_variable_as_val("jwt", json_object(claims));
        }
        if wanted("agent") || wanted("user") {
            let (agent, user) = identity_vals(c.identity);
            ctx.add_variable_as_val("agent", agent);
            ctx.add_variable_as_val("user", user);
        }
        if let Some(m) = c.mcp
            && wanted("mcp")
        {
            ctx.add_variable_as_val("mcp", mcp_val(m));
        }
        if let Some(code) = c.response_code
            && wanted("response")
        {
            ctx.add_variable_as_val("response", object(vec![("code", int(i64::from(code)))]));
        }
        if let Some(l) = c.llm
            && wanted("llm")
        {
            ctx.add_variable_as_val(
                "llm",
                object(vec![
                    ("requestModel", opt_s(l.request_model.as_deref())),
                    ("responseModel", opt_s(l.response_model.as_deref())),
                    ("provider", s(&l.provider)),
                    ("streaming", b(l.streaming)),
                    ("inputTokens", opt_u(l.input_tokens)),
                    ("outputTokens", opt_u(l.output_tokens)),
                    ("totalTokens", opt_u(l.total_tokens)),
                ]),
            );
        }
        if let Some(be) = c.backend
            && wanted("backend")
        {
            ctx.add_variable_as_val(
                "backend",
                object(vec![("name", s(&be.name)), ("type", s(&be.kind))]),
            );
        }
        Activation { ctx }
    }

    /// §7.5 with the §5.6 combination: a deny at any level denies, every require at every level
    /// must hold, allows are OR-ed across levels. `mcp`, when given, is bound for this call only
    /// (per-item evaluation of `tools/list` and friends) and shadows the request's `mcp`.
    pub fn decide(&self, levels: &[(Level, &RuleSet)], mcp: Option<&McpInfo>) -> Decision {
        match mcp {
            Some(m) => {
                let mut child = self.ctx.new_inner_scope();
                child.add_variable_as_val("mcp", mcp_val(m));
                decide_in(&child, levels)
            }
            None => decide_in(&self.ctx, levels),
        }
    }

    fn run(&self, program: &Program) -> Result<cel::Value, ExecutionError> {
        program.execute(&self.ctx)
    }
}

/// One rule's outcome: `Some(bool)` or `None` for an error. A non-bool result counts as false.
fn outcome(ctx: &cel::Context<'_, '_>, rule: &Rule) -> Option<bool> {
    match rule.program.execute(ctx) {
        Ok(cel::Value::Bool(v)) => Some(v),
        Ok(_) => Some(false),
        Err(e) => {
            tracing::debug!(rule = %rule.expr, error = %e, "CEL rule evaluation error");
            None
        }
    }
}

fn decide_in(ctx: &cel::Context<'_, '_>, levels: &[(Level, &RuleSet)]) -> Decision {
    let first_level = levels.first().map(|(l, _)| *l).unwrap_or(Level::Route);
    if levels.iter().all(|(_, set)| set.is_empty()) {
        return Decision::plain(true, first_level, "no_rules");
    }
    let rules_of = |kind: RuleKind| {
        levels.iter().flat_map(move |(level, set)| {
            set.rules
                .iter()
                .filter(move |r| r.kind == kind)
                .map(move |r| (*level, r))
        })
    };
    for (level, rule) in rules_of(RuleKind::Deny) {
        match outcome(ctx, rule) {
            Some(true) => return Decision::by(false, level, rule, "deny_matched"),
            // Fail closed: an erroring deny rule denies (§2.6).
            None => return Decision::by(false, level, rule, "rule_error"),
            Some(false) => {}
        }
    }
    for (level, rule) in rules_of(RuleKind::Require) {
        match outcome(ctx, rule) {
            Some(false) => return Decision::by(false, level, rule, "require_failed"),
            None => return Decision::by(false, level, rule, "rule_error"),
            Some(true) => {}
        }
    }
    let mut allow_level = None;
    for (level, rule) in rules_of(RuleKind::Allow) {
        allow_level.get_or_insert(level);
        if outcome(ctx, rule) == Some(true) {
            return Decision::by(true, level, rule, "rule_matched");
        }
    }
    match allow_level {
        Some(level) => Decision::plain(false, level, "no_allow_rule_matched"),
        None => Decision::plain(true, first_level, "no_deny_matched"),
    }
}

/// One-shot: builds the activation from `ctx` (including `ctx.mcp`) and decides.
pub fn evaluate(levels: &[(Level, &RuleSet)], ctx: &EvalContext) -> Decision {
    if levels.iter().all(|(_, set)| set.is_empty()) {
        let first = levels.first().map(|(l, _)| *l).unwrap_or(Level::Route);
        return Decision::plain(true, first, "no_rules");
    }
    let wanted = |v: &str| levels.iter().any(|(_, set)| set.references(v));
    Activation::with(ctx, wanted).decide(levels, None)
}

/// A single compiled expression for log and metric fields.
pub struct Expr {
    source: String,
    program: Program,
    variables: Vec<String>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    pub fn compile(expr: &str) -> Result<Expr, RuleError> {
        let program = compile(expr)?;
        let variables = program
            .references()
            .variables()
            .into_iter()
            .map(str::to_string)
            .collect();
        Ok(Expr {
            source: expr.to_string(),
            program,
            variables,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression references the variable named by `prefix` (`"mcp."`, …).
    pub fn references(&self, prefix: &str) -> bool {
        let name = prefix.trim_end_matches('.');
        self.variables.iter().any(|v| v == name)
    }

    pub fn eval(&self, ctx: &EvalContext) -> Result<Json, RuleError> {
        self.eval_in(&Activation::with(ctx, |v| self.references(v)))
    }

    pub fn eval_in(&self, act: &Activation) -> Result<Json, RuleError> {
        let v = act
            .run(&self.program)
            .map_err(|e| RuleError::Eval(e.to_string()))?;
        to_json(&v)
    }
}

/// A CEL result as JSON (maps need string keys; bytes, types and functions are refused).
pub fn to_json(v: &cel::Value) -> Result<Json, RuleError> {
    Ok(match v {
        cel::Value::Null => Json::Null,
        cel::Value::Bool(x) => Json::Bool(*x),
        cel::Value::Int(i) => Json::from(*i),
        cel::Value::UInt(u) => Json::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        cel::Value::String(x) => Json::String(x.to_string()),
        cel::Value::List(items) => {
            Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        cel::Value::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    cel::objects::Key::String(x) => x.to_string(),
                    cel::objects::Key::Int(i) => i.to_string(),
                    cel::objects::Key::Uint(u) => u.to_string(),
                    cel::objects::Key::Bool(x) => x.to_string(),
                };
                out.insert(key, to_json(v)?);
            }
            Json::Object(out)
        }
        cel::Value::Timestamp(t) => Json::String(t.to_rfc3339()),
        cel::Value::Duration(d) => {
            Json::String(format!("{}s", d.num_milliseconds() as f64 / 1000.0))
        }
        other => return Err(RuleError::NotJson(format!("{:?}", other.type_of()))),
    })
}

#[cfg(test)]
mod tests;
