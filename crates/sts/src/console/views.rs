//! The console's read-only pages (docs/console.md §4): each loads the admin's tenant from the
//! directory and turns it into plain rows of text for its template.

use super::gate::{self, Admin};
use super::model::*;
use super::page::{self, Chrome, Reply};
use crate::state::Sts;
use agentid_directory::audit::{AuditEvent, AuditQuery};
use agentid_directory::model::{SpKind, User};
use agentid_directory::trail::{TrailEvent, merge_newest_first};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::collections::HashMap;
use uuid::Uuid;

/// `2026-12-05 04:00:00`, or empty.
pub fn when(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `system:serviceaccount:NS:NAME` → (NS, NAME).
pub fn service_account(subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (ns.to_string(), name.to_string()))
}

impl Admin {
    pub fn chrome(&self) -> Chrome<'_> {
        Chrome {
            upn: &self.user.upn,
            tenant: self.tenant.name(),
            csrf: &self.csrf,
        }
    }
}

/// Resolves user ids (JSON array text or a list) to UPNs.
fn people(ids: &[String], users: &HashMap<String, String>) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(|i| users.get(i).cloned().unwrap_or_else(|| i.clone()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn user_names(sts: &Sts, tenant: &Uuid) -> Result<HashMap<String, String>, Response> {
    Ok(sts
        .store
        .users(tenant)
        .await
        .map_err(page::internal)?
        .into_iter()
        .map(|u| (u.id.to_string(), u.upn))
        .collect())
}

pub async fn home(State(sts): State<Sts>, headers: HeaderMap) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let t = &a.tenant.id;
    let blueprints = sts
        .store
        .applications(t, true)
        .await
        .map_err(page::internal)?
        .len();
    let agents = sts
        .store
        .service_principals(t, Some(SpKind::AgentIdentity))
        .await
        .map_err(page::internal)?
        .len();
    let grants = sts.store.grants(t).await.map_err(page::internal)?.len();
    let users = sts.store.users(t).await.map_err(page::internal)?.len();
    Ok(page::html(
        StatusCode::OK,
        &page::Home {
            title: "Overview",
            chrome: Some(a.chrome()),
            counts: vec![
                ("Blueprints", "/console/blueprints", blueprints),
                ("Agent identities", "/console/blueprints", agents),
                ("Consents", "/console/consents", grants),
                ("Users", "/console/users", users),
            ],
        },
    ))
}

pub async fn blueprints(State(sts): State<Sts>, headers: HeaderMap) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let t = &a.tenant.id;
    let apps = sts
        .store
        .applications(t, true)
        .await
        .map_err(page::internal)?;
    let agents = sts
        .store
        .service_principals(t, Some(SpKind::AgentIdentity))
        .await
        .map_err(page::internal)?;
    let mut rows = Vec::new();
    for app in apps {
        let extras = sts
            .store
            .application_extras(&app.id)
            .await
            .map_err(page::internal)?;
        rows.push(BlueprintRow {
            agents: agents
                .iter()
                .filter(|r| r.sp.blueprint_app_id == Some(app.app_id))
                .count(),
            name: app.display_name,
            app_id: app.app_id.to_string(),
            created: when(extras.created_at),
        });
    }
    Ok(page::html(
        StatusCode::OK,
        &page::Blueprints {
            title: "Blueprints",
            chrome: Some(a.chrome()),
            rows,
        },
    ))
}

pub async fn blueprint(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let t = &a.tenant.id;
    let Some(app_id) = agentid_claims::guid::parse(&app_id) else {
        return Err(page::not_found("No blueprint has that app ID."));
    };
    let app = match sts
        .store
        .application_by_app_id(t, &app_id)
        .await
        .map_err(page::internal)?
    {
        Some(app) if app.kind == agentid_directory::model::AppKind::Blueprint => app,
        _ => return Err(page::not_found("No blueprint has that app ID.")),
    };
    let users = user_names(&sts, t).await?;
    let extras = sts
        .store
        .application_extras(&app.id)
        .await
        .map_err(page::internal)?;
    let list = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
    let agents = sts
        .store
        .service_principals(t, Some(SpKind::AgentIdentity))
        .await
        .map_err(page::internal)?
        .into_iter()
        .filter(|r| r.sp.blueprint_app_id == Some(app.app_id))
        .map(|r| AgentRow {
            name: r.sp.display_name.clone(),
            id: r.sp.id.to_string(),
            enabled: r.sp.account_enabled,
            sponsors: people(&r.sponsors, &users),
        })
        .collect();
    let fics = sts
        .store
        .federated_credentials(&app.id)
        .await
        .map_err(page::internal)?
        .into_iter()
        .map(|f| FicRow {
            k8s: service_account(&f.subject),
            name: f.name,
            issuer: f.issuer,
            subject: f.subject,
            audience: f.audience,
        })
        .collect();
    let secrets = sts
        .store
        .password_credential_list(&app.id)
        .await
        .map_err(page::internal)?
        .into_iter()
        .map(|(key_id, name, hint, _, end)| SecretRow {
            key_id,
            name: name.unwrap_or_default(),
            hint,
            expires: when(end),
        })
        .collect();
    let b = BlueprintDetail {
        name: app.display_name.clone(),
        app_id: app.app_id.to_string(),
        object_id: app.id.to_string(),
        agents,
        fics,
        secrets,
        owners: people(&list(&extras.owners), &users),
        sponsors: people(&list(&extras.sponsors), &users),
    };
    Ok(page::html(
        StatusCode::OK,
        &page::Blueprint {
            title: &format!("Blueprint {}", app.display_name),
            chrome: Some(a.chrome()),
            b,
        },
    ))
}

/// Display names of every principal of the tenant, by object id and by appId (audit events
/// name clients by appId).
pub async fn principal_names(
    sts: &Sts,
    tenant: &Uuid,
) -> Result<HashMap<String, String>, agentid_directory::DirectoryError> {
    Ok(sts
        .store
        .service_principals(tenant, None)
        .await?
        .into_iter()
        .flat_map(|r| {
            [
                (r.sp.id.to_string(), r.sp.display_name.clone()),
                (r.sp.app_id.to_string(), r.sp.display_name),
            ]
        })
        .collect())
}

pub async fn consents(State(sts): State<Sts>, headers: HeaderMap) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let t = &a.tenant.id;
    let names = principal_names(&sts, t).await.map_err(page::internal)?;
    let users = user_names(&sts, t).await?;
    // Who created each grant through Graph or the console: the directory audit's actor.
    let q = AuditQuery {
        tenant_id: Some(t.to_string()),
        category: Some("directory".into()),
        limit: 10_000,
        ..Default::default()
    };
    let granted_by: HashMap<String, String> = sts
        .store
        .audit_events(&q)
        .await
        .map_err(page::internal)?
        .into_iter()
        .filter(|e| {
            e.result == "succeeded"
                && e.operation
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case("POST /oauth2PermissionGrants"))
        })
        .filter_map(|e| Some((e.target?, e.user_principal_name.unwrap_or_default())))
        .collect();
    let rows = sts
        .store
        .grants(t)
        .await
        .map_err(page::internal)?
        .into_iter()
        .map(|g| {
            let all = g.consent_type == "AllPrincipals";
            let principal = if all {
                "all users (admin consent)".to_string()
            } else {
                users
                    .get(&g.principal_key)
                    .cloned()
                    .unwrap_or_else(|| g.principal_key.clone())
            };
            let given_by = match granted_by.get(&g.id) {
                Some(upn) if !upn.is_empty() => format!("{upn} (directory API)"),
                _ if all => "an administrator (tenant file or consent page)".into(),
                _ => format!("{principal} (consent page or tenant file)"),
            };
            ConsentRow {
                client: names.get(&g.client_id).cloned().unwrap_or(g.client_id),
                resource: names.get(&g.resource_id).cloned().unwrap_or(g.resource_id),
                scope: g.scope,
                principal,
                given_by,
                id: g.id,
            }
        })
        .collect();
    Ok(page::html(
        StatusCode::OK,
        &page::Consents {
            title: "Consents",
            chrome: Some(a.chrome()),
            rows,
        },
    ))
}

fn user_row(u: User) -> UserRow {
    UserRow {
        id: u.id.to_string(),
        kind: match u.kind {
            agentid_directory::model::UserKind::AgentUser => "agent user",
            _ => "user",
        },
        roles: if u.roles.is_empty() {
            "none".into()
        } else {
            u.roles.join(", ")
        },
        enabled: u.account_enabled,
        revoked: u.sessions_revoked_at.map(when).unwrap_or_default(),
        upn: u.upn,
        name: u.display_name,
    }
}

pub async fn users(State(sts): State<Sts>, headers: HeaderMap) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let rows = sts
        .store
        .users(&a.tenant.id)
        .await
        .map_err(page::internal)?
        .into_iter()
        .map(user_row)
        .collect();
    Ok(page::html(
        StatusCode::OK,
        &page::Users {
            title: "Users",
            chrome: Some(a.chrome()),
            rows,
        },
    ))
}

/// The decisions the timeline filters on (`result` of an audit event).
const DECISIONS: [(&str, &str); 5] = [
    ("", "Any"),
    ("succeeded", "Succeeded"),
    ("refused", "Refused"),
    ("allow", "Allowed (gateway)"),
    ("deny", "Denied (gateway)"),
];

/// How many events one timeline page shows.
const TIMELINE_LIMIT: i64 = 500;

/// An id as the console prints it: the directory's name, else the id.
fn named<'a>(names: &'a HashMap<String, String>) -> impl Fn(&str) -> String + 'a {
    |id| names.get(id).cloned().unwrap_or_else(|| id.to_string())
}

fn event_row(e: AuditEvent, names: &HashMap<String, String>) -> EventRow {
    let who = agentid_directory::trail::of_sts_event(&e, &named(names));
    let source = e.category.clone().unwrap_or_else(|| "token".into());
    let what = match (&e.operation, &e.grant_type) {
        (Some(op), _) => op.clone(),
        (None, Some(g)) => format!("{} {g}", e.endpoint),
        (None, None) => e.endpoint.clone(),
    };
    EventRow {
        time: when(e.time),
        refused: matches!(e.result.as_str(), "refused" | "deny" | "failed"),
        result: e.result.clone(),
        reason: e.error.clone().unwrap_or_default(),
        who,
        uti: e.token_id.clone().filter(|u| valid_uti(u)),
        source,
        what,
    }
}

/// A gateway decision as a timeline row.
fn gateway_row(
    g: agentid_directory::trail::GatewayEvent,
    names: &std::collections::HashMap<String, String>,
) -> EventRow {
    let who = agentid_directory::trail::of_gateway_event(&g, &named(names));
    let what = [g.route.clone(), g.tool.clone().map(|t| format!("tool {t}"))]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    EventRow {
        time: when(g.time),
        source: format!("gateway {}", g.kind),
        refused: g.decision == "deny",
        result: g.decision.clone(),
        what,
        reason: g.reason.clone().unwrap_or_default(),
        who,
        uti: g.token_id.clone().filter(|u| valid_uti(u)),
    }
}

/// An event of the merged timeline (trail) as a row.
pub fn trail_row(e: TrailEvent, names: &HashMap<String, String>) -> EventRow {
    match e {
        TrailEvent::Sts(e) => event_row(*e, names),
        TrailEvent::Gateway(g) => gateway_row(*g, names),
    }
}

/// A `uti` as this STS mints them (base64url); anything else is not linked or looked up.
pub fn valid_uti(uti: &str) -> bool {
    !uti.is_empty()
        && uti.len() <= 128
        && uti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `YYYY-MM-DDTHH:MM[:SS]` (UTC, as `datetime-local` sends it) or RFC 3339.
pub fn parse_since(s: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp());
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|d| d.and_utc().timestamp())
}

pub async fn audit(State(sts): State<Sts>, headers: HeaderMap, RawQuery(q): RawQuery) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let p: HashMap<String, String> = q
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let get = |k: &str| {
        p.get(k)
            .map(|v| v.trim().chars().take(256).collect::<String>())
            .unwrap_or_default()
    };
    let mut f = AuditFilters {
        agent: get("agent"),
        user: get("user"),
        blueprint: get("blueprint"),
        decision: get("decision"),
        since: get("since"),
        decisions: DECISIONS.to_vec(),
        error: None,
    };
    let since = if f.since.is_empty() {
        None
    } else {
        let s = parse_since(&f.since);
        if s.is_none() {
            f.error = Some("'Since' must be a date and time such as 2026-12-05T04:00.".into());
        }
        s
    };
    let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
    let query = AuditQuery {
        tenant_id: Some(a.tenant.id.to_string()),
        agent_id: nonempty(&f.agent),
        user: nonempty(&f.user),
        blueprint_id: nonempty(&f.blueprint),
        result: nonempty(&f.decision),
        since,
        limit: TIMELINE_LIMIT,
        ..Default::default()
    };
    let gq = agentid_directory::trail::GatewayEventQuery {
        tenant_id: a.tenant.id.to_string(),
        agent: nonempty(&f.agent),
        user: nonempty(&f.user),
        blueprint: nonempty(&f.blueprint),
        decision: nonempty(&f.decision),
        since,
        limit: TIMELINE_LIMIT,
        ..Default::default()
    };
    let names = principal_names(&sts, &a.tenant.id)
        .await
        .map_err(page::internal)?;
    // The STS's own events and the gateways' decisions (trail), newest first.
    let (merged, ..) = merge_newest_first(
        sts.store
            .audit_events(&query)
            .await
            .map_err(page::internal)?,
        sts.store
            .gateway_events(&gq)
            .await
            .map_err(page::internal)?,
        TIMELINE_LIMIT as usize,
    );
    let rows = merged.into_iter().map(|e| trail_row(e, &names)).collect();
    Ok(page::html(
        StatusCode::OK,
        &page::Audit {
            title: "Audit timeline",
            chrome: Some(a.chrome()),
            f,
            rows,
        },
    ))
}

pub async fn stylesheet() -> Response {
    let mut r = axum::response::IntoResponse::into_response(page::STYLESHEET);
    page::secure(&mut r, "text/css; charset=utf-8");
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("max-age=3600"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_are_spelled_out_and_nothing_else_is() {
        assert_eq!(
            service_account("system:serviceaccount:agents:blog-agent"),
            Some(("agents".into(), "blog-agent".into()))
        );
        for s in [
            "",
            "system:serviceaccount:",
            "system:serviceaccount:agents",
            "system:serviceaccount::name",
            "system:serviceaccount:ns:",
            "system:serviceaccount:ns:a:b",
            "repo:org/x:ref:refs/heads/main",
            "SYSTEM:SERVICEACCOUNT:ns:name",
            "<script>:x",
        ] {
            assert_eq!(service_account(s), None, "{s:?}");
        }
    }

    #[test]
    fn since_accepts_datetime_local_and_rfc3339_only() {
        assert_eq!(parse_since("2026-12-05T04:00"), Some(1_796_443_200));
        assert_eq!(parse_since("2026-12-05T04:00:30"), Some(1_796_443_230));
        assert_eq!(
            parse_since("2026-12-05T05:00:00+01:00"),
            Some(1_796_443_200)
        );
        for s in [
            "",
            "yesterday",
            "2026-13-05T04:00",
            "1796443200",
            "2026-12-05",
            "'; DROP TABLE x",
        ] {
            assert_eq!(parse_since(s), None, "{s:?}");
        }
    }
}
