//! `POST /agentid/v1/revokedTokens` (docs/directory.md §5.6): the kill switch for one token.
//! The token is found by its `uti` among the tenant's issuance events and listed in the
//! revocation feed (docs/sts.md §17) until it expires, so gateways and sidecars refuse it within
//! seconds. Idempotent: a token already revoked answers 200 with the same revocation.

use super::caller::Caller;
use super::odata::GraphError;
use super::reply::{GResult, Out, created, iso, ok};
use super::request::Req;
use serde_json::{Value, json};

/// The longest `uti` accepted (the STS's are 22 characters).
const MAX_UTI: usize = 128;

/// A `uti` as the STS writes them: base64url characters, bounded.
fn parse_uti(v: Option<&Value>) -> GResult<String> {
    let bad =
        || GraphError::bad_request("uti must be a token identifier (base64url, 1-128 characters).");
    let uti = v.and_then(Value::as_str).ok_or_else(bad)?;
    let valid = !uti.is_empty()
        && uti.len() <= MAX_UTI
        && uti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(uti.to_string())
    } else {
        Err(bad())
    }
}

pub(super) async fn revoke(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if !c.revoke_tokens() {
        return Err(GraphError::denied());
    }
    let b = req.body_object(
        "revokedToken",
        &["uti"],
        &["id", "revokedDateTime", "expiresDateTime"],
    )?;
    let uti = parse_uti(b.get("uti"))?;
    let r = req
        .sts
        .store
        .revoke_issued_token(&c.tenant.id, &uti)
        .await?
        .ok_or_else(|| GraphError::not_found(&uti))?;
    let body = json!({
        "id": uti,
        "uti": uti,
        "revokedDateTime": iso(r.revoked_at),
        "expiresDateTime": iso(r.expires_at),
    });
    if r.already { ok(body) } else { created(body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uti_is_parsed_at_the_edge() {
        assert_eq!(parse_uti(Some(&json!("aB3_-x"))).unwrap(), "aB3_-x");
        let long = "a".repeat(MAX_UTI + 1);
        for bad in [
            json!(""),
            json!("a b"),
            json!("a.b"),
            json!("a/b"),
            json!("é"),
            json!(long),
            json!(7),
            json!(null),
        ] {
            assert!(parse_uti(Some(&bad)).is_err(), "{bad}");
        }
        assert!(parse_uti(None).is_err());
    }
}
