//! The signed revocation feed (docs/sts.md §17): `GET /{tenant}/agentid/v1/revocations` and
//! `GET /{tenant}/v2.0/agentid/v1/revocations` answer a compact JWS of type
//! `agentid-revocations+jwt`, signed with the tenant's current token-signing key, whose `iss`
//! is the issuer form of the path. `?afterVersion=N&wait=S` holds the request until the
//! tenant's version passes N or S seconds (at most 25) pass ([`watch`]).

pub mod watch;

use crate::context::RequestContext;
use crate::error::OAuthError;
use crate::state::Sts;
use agentid_claims::revocation::FEED_TYP;
use agentid_directory::revocations::Snapshot;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

/// A feed document is valid this long: a consumer that cannot refresh it stops trusting it
/// (and applies its failure mode) rather than keep a replayed old document.
pub const FEED_LIFETIME: i64 = 300;

/// The longest long poll (seconds); larger `wait` values are taken as this.
pub const MAX_WAIT_SECS: u64 = 25;

/// `GET /{tenant}/agentid/v1/revocations` (v1 issuer form).
pub async fn feed_v1(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    feed(sts, segment, q, headers, false).await
}

/// `GET /{tenant}/v2.0/agentid/v1/revocations` (v2 issuer form).
pub async fn feed_v2(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    feed(sts, segment, q, headers, true).await
}

/// `afterVersion` and `wait`, parsed at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LongPoll {
    after: i64,
    wait: Duration,
}

fn long_poll(q: &HashMap<String, String>) -> Result<Option<LongPoll>, OAuthError> {
    let after =
        match q.get("afterVersion") {
            None => return Ok(None),
            Some(v) => v.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                OAuthError::malformed("afterVersion must be a non-negative integer.")
            })?,
        };
    let wait = match q.get("wait") {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| OAuthError::malformed("wait must be a number of seconds."))?,
    };
    Ok(Some(LongPoll {
        after,
        wait: Duration::from_secs(wait.min(MAX_WAIT_SECS)),
    }))
}

async fn feed(
    sts: Sts,
    segment: String,
    q: HashMap<String, String>,
    headers: HeaderMap,
    v2: bool,
) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    let poll = match long_poll(&q) {
        Ok(p) => p,
        Err(e) => return ctx.error_response(&sts.base, &e),
    };
    let tenant = match sts.store.tenant_by_segment(&segment).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return ctx.error_response(&sts.base, &OAuthError::unknown_tenant(&segment));
        }
        Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
    };
    if let Some(p) = poll
        && !p.wait.is_zero()
    {
        let waited = watch::wait_past(&sts.store, &sts.revocations, tenant.id, p.after, p.wait);
        tokio::select! {
            r = waited => {
                if let Err(e) = r {
                    return ctx.error_response(&sts.base, &crate::token::internal(e));
                }
            }
            // A drain does not wait for long polls: they answer now.
            _ = sts.drain.begun() => {}
        }
    }
    let now = agentid_directory::now();
    let snapshot = match sts.store.revocation_snapshot(&tenant.id, now).await {
        Ok(s) => s,
        Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
    };
    let iss = if v2 {
        sts.issuer_v2(&tenant.id)
    } else {
        sts.issuer_v1(&tenant.id)
    };
    let key = match sts.keys.signer(&tenant.id, now).await {
        Ok(k) => k,
        Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
    };
    let mut header = jsonwebtoken::Header::new(key.alg.jwt());
    header.typ = Some(FEED_TYP.into());
    header.kid = Some(key.kid.clone());
    let jws = match key.sign(&header, &payload(&iss, now, &snapshot)) {
        Ok(j) => j,
        Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
    };
    let mut resp = jws.into_response();
    ctx.decorate(&mut resp, true);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwt"),
    );
    resp
}

/// The feed's claims (docs/sts.md §17.1).
fn payload(iss: &str, now: i64, s: &Snapshot) -> serde_json::Value {
    let users: Vec<_> = s
        .revoked_users
        .iter()
        .map(|(oid, at)| json!({ "oid": oid, "revokedAt": at }))
        .collect();
    let deleted: Vec<_> = s
        .deleted_agents
        .iter()
        .map(|(app, at)| json!({ "appId": app, "deletedAt": at }))
        .collect();
    let grants: Vec<_> = s
        .revoked_grants
        .iter()
        .map(|g| match &g.user {
            Some(oid) => json!({ "appId": g.client, "oid": oid, "revokedAt": g.revoked_at }),
            None => json!({ "appId": g.client, "revokedAt": g.revoked_at }),
        })
        .collect();
    let mut p = json!({
        "iss": iss,
        "version": s.version,
        "iat": now,
        "exp": now + FEED_LIFETIME,
        "disabledAgents": s.disabled_agents,
        "disabledBlueprints": s.disabled_blueprints,
        "revokedUsers": users,
        "revokedTokens": s.revoked_tokens,
        "deletedAgents": deleted,
        "revokedGrants": grants,
    });
    if s.truncated {
        p["truncated"] = json!(true);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn long_poll_parameters_are_parsed_at_the_edge() {
        assert_eq!(long_poll(&q(&[])).unwrap(), None);
        assert_eq!(
            long_poll(&q(&[("afterVersion", "3"), ("wait", "999")])).unwrap(),
            Some(LongPoll {
                after: 3,
                wait: Duration::from_secs(25)
            })
        );
        for bad in [
            &[("afterVersion", "-1")][..],
            &[("afterVersion", "x")],
            &[("afterVersion", "1"), ("wait", "-2")],
            &[("afterVersion", "1"), ("wait", "1.5")],
            &[("afterVersion", "99999999999999999999")],
        ] {
            assert!(long_poll(&q(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_truncated_snapshot_says_so() {
        let s = Snapshot {
            version: 4,
            truncated: true,
            revoked_users: vec![("u".into(), 7)],
            deleted_agents: vec![("a".into(), 8)],
            revoked_grants: vec![
                agentid_directory::revocations::RevokedGrant {
                    client: "c".into(),
                    user: Some("u".into()),
                    revoked_at: 9,
                },
                agentid_directory::revocations::RevokedGrant {
                    client: "c".into(),
                    user: None,
                    revoked_at: 9,
                },
            ],
            ..Default::default()
        };
        let p = payload("https://x/t/v2.0", 10, &s);
        assert_eq!(p["deletedAgents"][0], json!({"appId": "a", "deletedAt": 8}));
        assert_eq!(
            p["revokedGrants"],
            json!([{"appId": "c", "oid": "u", "revokedAt": 9}, {"appId": "c", "revokedAt": 9}])
        );
        assert_eq!(p["truncated"], true);
        assert_eq!(p["exp"], 10 + FEED_LIFETIME);
        assert_eq!(p["revokedUsers"][0]["revokedAt"], 7);
        assert!(
            payload("i", 1, &Snapshot::default())
                .get("truncated")
                .is_none()
        );
    }
}
