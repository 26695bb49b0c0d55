//! The delegation chain of one token (docs/console.md §4.5): trail's server-rendered SVG, the
//! same hops as an accessible table, and the audit events that name the token.

use super::gate;
use super::model::{EventRow, HopRow};
use super::page;
use super::page::Reply;
use super::views::{principal_names, trail_row, valid_uti};
use crate::state::Sts;
use agentid_directory::audit::AuditQuery;
use agentid_directory::trail::merge_newest_first;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

/// Audit events of the token the page lists at most (newest first).
const EVENTS: i64 = 500;

/// What the page shows: the SVG (when the chain can be drawn), the hops and the events.
async fn assemble(
    sts: &Sts,
    tenant: &uuid::Uuid,
    uti: &str,
) -> Result<(Option<String>, Vec<HopRow>, Vec<EventRow>), agentid_directory::DirectoryError> {
    let names = principal_names(sts, tenant).await?;
    let q = AuditQuery {
        tenant_id: Some(tenant.to_string()),
        token_id: Some(uti.to_string()),
        limit: EVENTS,
        ..Default::default()
    };
    let gq = agentid_directory::trail::GatewayEventQuery {
        tenant_id: tenant.to_string(),
        token_id: Some(uti.to_string()),
        limit: EVENTS,
        ..Default::default()
    };
    let (merged, ..) = merge_newest_first(
        sts.store.audit_events(&q).await?,
        sts.store.gateway_events(&gq).await?,
        EVENTS as usize,
    );
    let events = merged.into_iter().map(|e| trail_row(e, &names)).collect();
    // The chain model and its picture come from trail (docs/audit.md).
    let Some(chain) = agentid_directory::trail::chain(&sts.store, tenant, uti).await? else {
        return Ok((None, Vec::new(), events));
    };
    let hops = chain
        .hops
        .iter()
        .map(|h| HopRow {
            kind: h.kind.label().to_string(),
            who: h.title.clone(),
            details: h
                .facts
                .iter()
                .map(|f| format!("{}: {}", f.name, f.value))
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    Ok((Some(crate::trail::svg::render(&chain)), hops, events))
}

pub async fn chain(State(sts): State<Sts>, headers: HeaderMap, Path(uti): Path<String>) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    if !valid_uti(&uti) {
        return Err(page::not_found("That is not a token id."));
    }
    let (svg, hops, events) = assemble(&sts, &a.tenant.id, &uti)
        .await
        .map_err(page::internal)?;
    Ok(page::html(
        StatusCode::OK,
        &page::Chain {
            title: "Delegation chain",
            chrome: Some(a.chrome()),
            uti: &uti,
            svg,
            hops,
            events,
        },
    ))
}

/// The chain's SVG alone, for the page's `<img>`: an image cannot run script, and the CSP
/// forbids it anyway.
pub async fn svg(State(sts): State<Sts>, headers: HeaderMap, Path(uti): Path<String>) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    if !valid_uti(&uti) {
        return Err(page::not_found("That is not a token id."));
    }
    Ok(
        match assemble(&sts, &a.tenant.id, &uti)
            .await
            .map_err(page::internal)?
            .0
        {
            Some(svg) => {
                let mut r = axum::response::IntoResponse::into_response(svg);
                page::secure(&mut r, "image/svg+xml");
                r
            }
            None => page::not_found("No chain is recorded for this token."),
        },
    )
}
