//! RFC 8414 authorization server metadata (docs/sts.md §16.1) at the path-inserted
//! well-known location of each tenant issuer: `/.well-known/oauth-authorization-server/{tenant}/v2.0`
//! (v2 issuer) and `/.well-known/oauth-authorization-server/{tenant}` (v1 issuer). The members
//! are the OIDC discovery document's (`discovery::v2_document`), plus what MCP clients read.

use crate::context::RequestContext;
use crate::discovery::{cacheable, tenant_or_error, v1_document, v2_document};
use crate::state::Sts;
use agentid_directory::mcp_clients::{MetadataDocumentMode, RegistrationMode};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

/// Adds the RFC 8414 members; `registration_endpoint` only where registration is on, and
/// client ID metadata documents supported unless the tenant's policy is `off` (§16.4).
pub fn oauth_document(
    mut doc: Value,
    base: &str,
    tid: &str,
    registration: bool,
    metadata_documents: bool,
) -> Value {
    doc["code_challenge_methods_supported"] = json!(["S256"]);
    doc["client_id_metadata_document_supported"] = json!(metadata_documents);
    doc["token_endpoint_auth_methods_supported"] = json!([
        "none",
        "client_secret_post",
        "private_key_jwt",
        "client_secret_basic"
    ]);
    doc["resource_parameter_supported"] = json!(true);
    if registration {
        doc["registration_endpoint"] = json!(format!("{base}/{tid}/oauth2/v2.0/register"));
    }
    doc
}

async fn serve(sts: Sts, segment: String, headers: HeaderMap, v2: bool) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    let t = match tenant_or_error(&sts, &ctx, &segment).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let registration = match sts.store.registration_policy(&t.id).await {
        Ok(p) => p.mode != RegistrationMode::Off,
        Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
    };
    let documents = match sts.store.metadata_document_policy(&t.id).await {
        Ok(p) => p.mode != MetadataDocumentMode::Off,
        Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
    };
    let tid = t.id.to_string();
    let doc = if v2 {
        v2_document(&sts.base, &tid)
    } else {
        v1_document(&sts.base, &tid)
    };
    cacheable(
        &ctx,
        oauth_document(doc, &sts.base, &tid, registration, documents),
    )
}

pub async fn oauth_v2(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(sts, segment, headers, true).await
}

pub async fn oauth_v1(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(sts, segment, headers, false).await
}
