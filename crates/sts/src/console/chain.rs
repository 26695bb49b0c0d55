//! The delegation chain of one token (docs/console.md §4.5): trail's server-rendered SVG, the
//! same hops as an accessible table, and the audit events that name the token.

use super::model::{EventRow, HopRow};
use super::page;
use super::views::{admin, event_row, principal_names, tri};
use crate::state::Sts;
use agentid_directory::audit::AuditQuery;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// A `uti` as this STS mints them (base64url); anything else is not looked up.
pub fn valid_uti(uti: &str) -> bool {
    !uti.is_empty()
        && uti.len() <= 128
        && uti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the page shows: the SVG (when the chain can be drawn), the hops and the events.
async fn assemble(
    sts: &Sts,
    tenant: &uuid::Uuid,
    uti: &str,
) -> Result<(Option<String>, Vec<HopRow>, Vec<EventRow>), agentid_directory::DirectoryError> {
    let names = principal_names(sts, tenant).await?;
    let q = AuditQuery {
        tenant_id: Some(tenant.to_string()),
        limit: 10_000,
        ..Default::default()
    };
    let events = sts
        .store
        .audit_events(&q)
        .await?
        .into_iter()
        .filter(|e| e.token_id.as_deref() == Some(uti))
        .map(|e| event_row(e, &names))
        .collect();
    // The chain model and its picture come from trail (docs/console.md §4.5); until it is
    // merged there is no picture and no hop list.
    Ok((None, Vec::new(), events))
}

pub async fn chain(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(uti): Path<String>,
) -> Response {
    let a = admin!(sts, headers);
    if !valid_uti(&uti) {
        return page::not_found("That is not a token id.");
    }
    let (svg, hops, events) = tri!(assemble(&sts, &a.tenant.id, &uti).await);
    page::html(
        StatusCode::OK,
        &page::Chain {
            title: "Delegation chain",
            chrome: Some(a.chrome()),
            uti: &uti,
            svg,
            hops,
            events,
        },
    )
}

/// The chain's SVG alone, for the page's `<img>`: an image cannot run script, and the CSP
/// forbids it anyway.
pub async fn svg(State(sts): State<Sts>, headers: HeaderMap, Path(uti): Path<String>) -> Response {
    let a = admin!(sts, headers);
    if !valid_uti(&uti) {
        return page::not_found("That is not a token id.");
    }
    match tri!(assemble(&sts, &a.tenant.id, &uti).await).0 {
        Some(svg) => {
            let mut r = axum::response::IntoResponse::into_response(svg);
            page::secure(&mut r, "image/svg+xml");
            r
        }
        None => page::not_found("No chain is recorded for this token."),
    }
}
