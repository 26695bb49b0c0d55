//! agentid's own additions under `/agentid/v1` (docs/directory.md §5.6): trusted issuers of federated
//! assertions, the audit log and chains (routed to `crate::trail`), and token revocation
//! (`super::revoked_tokens`).

use super::caller::Caller;
use super::odata::GraphError;
use super::reply::{GResult, Out, created, method_not_allowed, ok};
use super::request::Req;
use agentid_claims::jwk::JwkSet;
use agentid_directory::issuers::TrustedIssuerRow;
use agentid_directory::issuers::{check_ca_bundle, check_issuer, check_jwks};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

pub(super) async fn route(req: &Req<'_>, c: &Caller, segs: &[String]) -> GResult<Out> {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (req.method.clone(), l.as_slice()) {
        // The trail (docs/audit.md §4).
        (Method::GET, ["auditevents"]) => crate::trail::api::query(req, c).await,
        (Method::POST, ["auditevents"]) => crate::trail::api::ingest(req, c).await,
        (Method::GET, ["chains", _]) => crate::trail::api::chain(req, c, &segs[1]).await,
        (Method::GET, ["trustedissuers"]) => {
            policy(c)?;
            let items: Vec<Value> = req
                .sts
                .store
                .trusted_issuers(&c.tenant.id)
                .await?
                .iter()
                .map(issuer_json)
                .collect();
            ok(req.collection("trustedIssuers", items)?)
        }
        (Method::POST, ["trustedissuers"]) => create_issuer(req, c).await,
        // The kill switch for one token (docs/sts.md §17).
        (Method::POST, ["revokedtokens"]) => super::revoked_tokens::revoke(req, c).await,
        (m, ["trustedissuers", _]) => issuer_item(req, c, m, &segs[1]).await,
        _ => Err(GraphError::not_found(&segs.join("/"))),
    }
}

fn policy(c: &Caller) -> GResult<()> {
    if c.manage_policy() {
        Ok(())
    } else {
        Err(GraphError::denied())
    }
}

fn issuer_json(t: &TrustedIssuerRow) -> Value {
    json!({"id": t.id, "issuer": t.issuer, "jwks": t.jwks.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
        "allowHttp": t.allow_http != 0, "caBundle": t.ca_bundle, "description": t.description,
        "createdDateTime": super::reply::iso(t.created_at), "updatedDateTime": super::reply::iso(t.updated_at)})
}

/// A JWKS of RSA or EC public keys, each with a `kid`.
fn parse_jwks(v: &Value) -> GResult<Option<String>> {
    if v.is_null() {
        return Ok(None);
    }
    let set: JwkSet = serde_json::from_value(v.clone())
        .map_err(|e| GraphError::bad_request(format!("jwks is not a JSON Web Key Set: {e}.")))?;
    check_jwks(&set).map_err(|e| GraphError::bad_request(format!("{e}.")))?;
    serde_json::to_string(&set)
        .map(Some)
        .map_err(|e| GraphError::bad_request(format!("jwks: {e}.")))
}

/// PEM CA certificates for the issuer's endpoints, or null.
fn parse_ca_bundle(v: &Value) -> GResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(pem) => {
            check_ca_bundle(pem).map_err(|e| GraphError::bad_request(format!("{e}.")))?;
            Ok(Some(pem.clone()))
        }
        _ => Err(GraphError::bad_request(
            "caBundle must be a string of PEM certificates.",
        )),
    }
}

async fn create_issuer(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    policy(c)?;
    let b = req.body_object(
        "trustedIssuer",
        &["issuer", "jwks", "allowHttp", "caBundle", "description"],
        &["id", "createdDateTime", "updatedDateTime"],
    )?;
    let issuer = b
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let allow_http = b.get("allowHttp").and_then(Value::as_bool).unwrap_or(false);
    check_issuer(&issuer, allow_http).map_err(|e| GraphError::bad_request(format!("{e}.")))?;
    let now = chrono::Utc::now().timestamp();
    let t = TrustedIssuerRow {
        id: uuid::Uuid::new_v4().to_string(),
        issuer,
        jwks: parse_jwks(b.get("jwks").unwrap_or(&Value::Null))?,
        allow_http: allow_http as i64,
        description: b
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        created_at: now,
        updated_at: now,
        ca_bundle: parse_ca_bundle(b.get("caBundle").unwrap_or(&Value::Null))?,
    };
    req.sts
        .store
        .put_trusted_issuer(&c.tenant.id, &t, true)
        .await?;
    created(issuer_json(&t))
}

async fn issuer_item(req: &Req<'_>, c: &Caller, m: Method, id: &str) -> GResult<Out> {
    policy(c)?;
    let mut t = req
        .sts
        .store
        .trusted_issuer_by_id(&c.tenant.id, id)
        .await?
        .ok_or_else(|| GraphError::not_found(id))?;
    match m {
        Method::GET => ok(issuer_json(&t)),
        Method::PATCH => {
            let b = req.body_object(
                "trustedIssuer",
                &["jwks", "allowHttp", "caBundle", "description"],
                &["id", "issuer", "createdDateTime", "updatedDateTime"],
            )?;
            if let Some(j) = b.get("jwks") {
                t.jwks = parse_jwks(j)?;
            }
            if let Some(h) = b.get("allowHttp").and_then(Value::as_bool) {
                t.allow_http = h as i64;
            }
            if let Some(c) = b.get("caBundle") {
                t.ca_bundle = parse_ca_bundle(c)?;
            }
            if let Some(d) = b.get("description") {
                t.description = d.as_str().map(str::to_string);
            }
            t.updated_at = chrono::Utc::now().timestamp();
            req.sts
                .store
                .put_trusted_issuer(&c.tenant.id, &t, false)
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        Method::DELETE => {
            req.sts
                .store
                .delete_trusted_issuer(&c.tenant.id, id)
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        _ => Err(method_not_allowed()),
    }
}
