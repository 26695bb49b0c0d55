//! Routing: a Graph path, its type-cast segments normalised once, to the resource handler.

use super::assignments::{Side, assignments, delete_assignment};
use super::caller::Caller;
use super::odata::{GraphError, cast};
use super::reply::{GResult, Out, method_not_allowed};
use super::request::Req;
use super::{applications, blueprints, credentials, grants, people, principals, users};
use agentid_directory::applications::People;
use agentid_directory::model::SpKind;
use axum::http::Method;

/// A path ready for routing: segments cast-stripped and lowercased, and the type cast that
/// may follow an object key (`applications/{id}/microsoft.graph.agentIdentityBlueprint/…`,
/// `servicePrincipals/{id}/microsoft.graph.agentIdentity/…`) taken out of the path.
struct Normalized {
    segs: Vec<String>,
    /// The original segments, in the same positions as `segs` (object keys keep their case).
    raw: Vec<String>,
}

/// The item cast each collection allows, and the navigations that may follow it (the only
/// ones that exist on the cast type); `inheritablePermissions` exists only on the cast.
const ITEM_CASTS: [(&str, &str, &[&str]); 2] = [
    (
        "applications",
        "agentidentityblueprint",
        &[
            "federatedidentitycredentials",
            "owners",
            "sponsors",
            "inheritablepermissions",
        ],
    ),
    ("serviceprincipals", "agentidentity", &["sponsors"]),
];

/// Navigations reachable only through the item cast.
const CAST_ONLY: [&str; 1] = ["inheritablepermissions"];

/// `None` when the path names nothing: a cast that is not followed by one of its navigations,
/// or a cast-only navigation reached without the cast.
fn normalize(segs: &[String]) -> Option<Normalized> {
    let mut lower: Vec<String> = segs.iter().map(|s| cast(s)).collect();
    let mut raw = segs.to_vec();
    let mut item_cast = false;
    if lower.len() >= 3
        && let Some((_, _, navs)) = ITEM_CASTS
            .iter()
            .find(|(coll, c, _)| lower[0] == *coll && lower[2] == *c)
    {
        if !lower.get(3).is_some_and(|n| navs.contains(&n.as_str())) {
            return None;
        }
        lower.remove(2);
        raw.remove(2);
        item_cast = true;
    }
    if !item_cast
        && lower.len() >= 3
        && lower[0] == "applications"
        && CAST_ONLY.contains(&lower[2].as_str())
    {
        return None;
    }
    Some(Normalized { segs: lower, raw })
}

pub(super) async fn route(req: &Req<'_>, c: &Caller, path: &[String]) -> GResult<Out> {
    let not_found = || GraphError::not_found(&path.join("/"));
    let n = normalize(path).ok_or_else(not_found)?;
    let l: Vec<&str> = n.segs.iter().map(String::as_str).collect();
    let segs = &n.raw;
    let m = req.method.clone();
    match (m, l.as_slice()) {
        (Method::GET, ["me"]) => users::me(req, c),
        (Method::GET, ["users"]) => users::list_users(req, c).await,
        (Method::POST, ["users"]) => users::create_user(req, c).await,
        (m, ["users", _]) => match m {
            Method::GET => users::get_user(req, c, &segs[1]).await,
            Method::PATCH => users::patch_user(req, c, &segs[1]).await,
            Method::DELETE => users::delete_user(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (Method::POST, ["users", _, "revokesigninsessions"]) => {
            users::revoke_sessions(req, c, &segs[1]).await
        }
        (m, ["applications", _, "inheritablepermissions"]) => {
            blueprints::inheritable(req, c, m, &segs[1], None).await
        }
        (m, ["applications", _, "inheritablepermissions", _]) => {
            blueprints::inheritable(req, c, m, &segs[1], Some(&segs[3])).await
        }
        (Method::GET, ["applications"]) => applications::list_applications(req, c, false).await,
        (Method::GET, ["applications", "agentidentityblueprint"]) => {
            applications::list_applications(req, c, true).await
        }
        (Method::POST, ["applications"]) => {
            let blueprint = req.odata_type().as_deref() == Some("agentidentityblueprint");
            applications::create_application(req, c, blueprint).await
        }
        (Method::POST, ["applications", "agentidentityblueprint"]) => {
            applications::create_application(req, c, true).await
        }
        (m, ["applications", _]) => match m {
            Method::GET => applications::get_application(req, c, &segs[1]).await,
            Method::PATCH => applications::patch_application(req, c, &segs[1]).await,
            Method::DELETE => applications::delete_application(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (Method::POST, ["applications", _, "addpassword"]) => {
            credentials::add_password(req, c, &segs[1]).await
        }
        (Method::POST, ["applications", _, "removepassword"]) => {
            credentials::remove_password(req, c, &segs[1]).await
        }
        (m, ["applications", _, "federatedidentitycredentials"]) => match m {
            Method::GET => credentials::list_fics(req, c, &segs[1]).await,
            Method::POST => credentials::create_fic(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (m, ["applications", _, "federatedidentitycredentials", _]) => {
            credentials::fic_item(req, c, m, &segs[1], &segs[3]).await
        }
        (_, ["applications", _, "owners", rest @ ..]) => {
            people::app_people(req, c, &segs[1], People::Owners, rest).await
        }
        (_, ["applications", _, "sponsors", rest @ ..]) => {
            people::app_people(req, c, &segs[1], People::Sponsors, rest).await
        }
        (Method::GET, ["serviceprincipals"]) => principals::list_principals(req, c, None).await,
        (Method::GET, ["serviceprincipals", "agentidentity"]) => {
            principals::list_principals(req, c, Some(SpKind::AgentIdentity)).await
        }
        (Method::GET, ["serviceprincipals", "agentidentityblueprintprincipal"]) => {
            principals::list_principals(req, c, Some(SpKind::BlueprintPrincipal)).await
        }
        (Method::POST, ["serviceprincipals"]) => principals::create_principal(req, c, false).await,
        (Method::POST, ["serviceprincipals", "agentidentityblueprintprincipal"]) => {
            principals::create_principal(req, c, true).await
        }
        (Method::POST, ["serviceprincipals", "agentidentity"]) => {
            principals::create_agent(req, c).await
        }
        (m, ["serviceprincipals", _]) => match m {
            Method::GET => principals::get_principal(req, c, &segs[1]).await,
            Method::PATCH => principals::patch_principal(req, c, &segs[1]).await,
            Method::DELETE => principals::delete_principal(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (Method::GET, ["serviceprincipals", _, "oauth2permissiongrants"]) => {
            grants::list_grants(req, c, Some(&segs[1])).await
        }
        (m, ["serviceprincipals", _, "approleassignments"]) => {
            assignments(req, c, m, &segs[1], Side::Principal).await
        }
        (m, ["serviceprincipals", _, "approleassignedto"]) => {
            assignments(req, c, m, &segs[1], Side::Resource).await
        }
        (m, ["users", _, "approleassignments"]) => {
            assignments(req, c, m, &segs[1], Side::User).await
        }
        (
            Method::DELETE,
            [
                "serviceprincipals",
                _,
                "approleassignments" | "approleassignedto",
                _,
            ],
        )
        | (Method::DELETE, ["users", _, "approleassignments", _]) => {
            delete_assignment(c, req, &segs[3]).await
        }
        (_, ["serviceprincipals", _, "sponsors", rest @ ..]) => {
            people::agent_sponsors(req, c, &segs[1], rest).await
        }
        (Method::GET, ["oauth2permissiongrants"]) => grants::list_grants(req, c, None).await,
        (Method::POST, ["oauth2permissiongrants"]) => grants::create_grant(req, c).await,
        (m, ["oauth2permissiongrants", _]) => grants::grant_item(req, c, m, &segs[1]).await,
        _ => Err(not_found()),
    }
}
