//! What every MCP step reads: the route context and the MCP backend, and the
//! `mcpAuthorization` rules of both levels (docs/gateway.md §7.5).

use crate::config::model::McpBackend;
use crate::ctx::RouteCtx;
use crate::exchange::Exchange;
use crate::rules::{self, Decision, EvalContext, Level, McpInfo, RuleSet};
use std::ops::Deref;

pub(super) struct Ctx<'a> {
    pub route_ctx: &'a RouteCtx<'a>,
    pub mcp: &'a McpBackend,
}

impl<'a> Deref for Ctx<'a> {
    type Target = RouteCtx<'a>;
    fn deref(&self) -> &RouteCtx<'a> {
        self.route_ctx
    }
}

impl Ctx<'_> {
    /// The `mcpAuthorization` rules of the route, then of the backend.
    pub fn rules_levels(&self) -> Vec<(Level, &RuleSet)> {
        let mut levels = Vec::new();
        if let Some(r) = &self.route.policies.mcp_authorization {
            levels.push((Level::Route, r));
        }
        if let Some(r) = &self.backend.mcp_authorization {
            levels.push((Level::Backend, r));
        }
        levels
    }

    pub fn authorize(&self, ex: &Exchange, info: &McpInfo) -> Decision {
        let levels = self.rules_levels();
        let ctx = EvalContext {
            request: &ex.request,
            source: &ex.source_info,
            jwt: ex.claims(),
            identity: ex.identity(),
            mcp: Some(info),
            response_code: None,
            llm: None,
            backend: None,
        };
        rules::evaluate(&levels, &ctx)
    }
}
