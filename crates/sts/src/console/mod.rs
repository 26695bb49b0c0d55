//! The web console at `/console` (docs/console.md): server-rendered pages for administrators
//! of agents — blueprints, agent identities and their credentials, consents, users, the audit
//! timeline and the delegation chain of any token — and the actions that stop an agent.
//! Sign-in is the STS's own code + PKCE flow (`signin`), access needs a directory role
//! (`gate`), every write goes through the Graph handlers (`crate::graph::console`).

mod actions;
mod chain;
pub mod gate;
mod model;
mod page;
mod signin;
mod views;

pub use page::CSP;

use crate::state::Sts;
use axum::Router;
use axum::routing::get;

/// The console's routes, merged into the STS router.
pub fn router() -> Router<Sts> {
    Router::new()
        .route("/console", get(views::home))
        .route("/console/", get(views::home))
        .route("/console/static/console.css", get(views::stylesheet))
        .route("/console/signin", get(signin::start))
        .route("/console/callback", get(signin::callback))
        .route("/console/signout", axum::routing::post(signin::signout))
        .route("/console/blueprints", get(views::blueprints))
        .route(
            "/console/blueprints/new",
            get(actions::new_blueprint).post(actions::create_blueprint),
        )
        .route("/console/blueprints/{app_id}", get(views::blueprint))
        .route(
            "/console/blueprints/{app_id}/agents/new",
            get(actions::new_agent).post(actions::create_agent),
        )
        .route(
            "/console/blueprints/{app_id}/secrets/{key_id}/remove",
            get(actions::confirm_remove_secret).post(actions::remove_secret),
        )
        .route(
            "/console/agents/{id}/{op}",
            get(actions::confirm_agent).post(actions::agent_action),
        )
        .route("/console/consents", get(views::consents))
        .route(
            "/console/consents/{id}/revoke",
            get(actions::confirm_revoke_consent).post(actions::revoke_consent),
        )
        .route("/console/users", get(views::users))
        .route(
            "/console/users/{id}/revoke-sessions",
            get(actions::confirm_revoke_sessions).post(actions::revoke_sessions),
        )
        .route("/console/audit", get(views::audit))
        .route("/console/chains/{uti}", get(chain::chain))
        .route("/console/chains/{uti}/svg", get(chain::svg))
}
