//! The chosen route as a backend handler sees it: the gateway, the config snapshot the request
//! runs on, the route and backend, their composed upstream policy, and the request target.

use crate::config::model::{Backend, Route, Snapshot, UpstreamPolicy};
use crate::gateway::Gateway;
use crate::request_path::RequestTarget;
use std::sync::Arc;

pub struct RouteCtx<'a> {
    pub gw: &'a Arc<Gateway>,
    /// The snapshot taken when the request arrived; a reload mid-request does not change it.
    pub snap: &'a Arc<Snapshot>,
    pub route: &'a Arc<Route>,
    pub backend: &'a Backend,
    /// The route's upstream policies with the backend's over them (docs/gateway.md §5.6).
    pub policy: UpstreamPolicy,
    /// The `PathPrefix` the route matched, for `urlRewrite` (docs/gateway.md §5.2).
    pub matched_prefix: Option<&'a str>,
    /// The request's canonical target (`request_path`).
    pub target: RequestTarget,
}

impl<'a> RouteCtx<'a> {
    pub fn new(
        gw: &'a Arc<Gateway>,
        snap: &'a Arc<Snapshot>,
        route: &'a Arc<Route>,
        backend: &'a Backend,
        matched_prefix: Option<&'a str>,
        target: RequestTarget,
    ) -> RouteCtx<'a> {
        RouteCtx {
            gw,
            snap,
            route,
            backend,
            policy: route.policies.upstream.overlay(&backend.policies),
            matched_prefix,
            target,
        }
    }
}
