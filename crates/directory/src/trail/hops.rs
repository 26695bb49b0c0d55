//! Turning audit rows and gateway events into hops (docs/audit.md §3.2), with the directory's
//! names for the ids they carry. Names are looked up once per chain.

use super::events::GatewayEvent;
use super::summary::of_gateway_event;
use super::{Fact, Hop, HopKind, Outcome};
use crate::audit::AuditEvent;
use crate::error::Result;
use crate::store::Store;
use agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID;
use std::collections::HashMap;
use uuid::Uuid;

pub(super) struct Names<'a> {
    store: &'a Store,
    tenant: Uuid,
    apps: HashMap<String, Option<(String, String)>>,
}

fn time_text(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn grant_label(g: &str) -> &'static str {
    match g {
        "password" => "password",
        "authorization_code" => "browser sign-in, authorization code",
        "device_code" => "device code",
        _ => "sign-in",
    }
}

/// `system:serviceaccount:NS:NAME` spelled out, the subject of a Kubernetes projected token.
pub(super) fn service_account(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| format!("Kubernetes service account {name} in namespace {ns}"))
}

impl<'a> Names<'a> {
    pub(super) fn new(store: &'a Store, tenant: Uuid) -> Self {
        Names {
            store,
            tenant,
            apps: HashMap::new(),
        }
    }

    /// (display name, service principal object id) of an appId of the tenant.
    async fn app(&mut self, app_id: &str) -> Result<Option<(String, String)>> {
        if let Some(hit) = self.apps.get(app_id) {
            return Ok(hit.clone());
        }
        let found = match Uuid::parse_str(app_id) {
            Ok(id) => self
                .store
                .service_principal_by_app_id(&self.tenant, &id)
                .await?
                .map(|sp| (sp.display_name, sp.id.to_string())),
            Err(_) => None,
        };
        self.apps.insert(app_id.to_string(), found.clone());
        Ok(found)
    }

    /// `Name (appId)`, or the bare id when the directory no longer knows it.
    async fn named(&mut self, app_id: &str) -> Result<String> {
        if app_id == TOKEN_EXCHANGE_APP_ID {
            return Ok(format!("token exchange ({app_id})"));
        }
        Ok(match self.app(app_id).await? {
            Some((name, _)) => format!("{name} ({app_id})"),
            None => app_id.to_string(),
        })
    }

    async fn short(&mut self, app_id: &str) -> Result<String> {
        Ok(self
            .app(app_id)
            .await?
            .map(|(n, _)| n)
            .unwrap_or_else(|| app_id.to_string()))
    }

    /// The hops a token row contributes: where it came from (sign-in, credential, consent), then
    /// the token itself.
    pub(super) async fn token_hops(&mut self, t: &AuditEvent, out: &mut Vec<Hop>) -> Result<()> {
        let client = t.client_id.clone().unwrap_or_default();
        let client_name = self.short(&client).await?;
        let user = t
            .user_principal_name
            .clone()
            .or_else(|| t.user_id.clone())
            .unwrap_or_default();
        let parent = t.parent_kind.as_deref().unwrap_or_default();
        if matches!(parent, "password" | "authorization_code" | "device_code") {
            let mut facts = vec![
                Fact::new("user", user.clone()),
                Fact::new("how", grant_label(parent)),
                Fact::new("client", self.named(&client).await?),
            ];
            if let Some(ip) = &t.source_ip {
                facts.push(Fact::new("from", ip.clone()));
            }
            out.push(Hop {
                kind: HopKind::SignIn,
                time: t.time,
                title: format!("{user} signed in to {client_name}"),
                id: t.user_id.clone(),
                outcome: Outcome::Info,
                facts,
            });
        }
        if matches!(parent, "secret" | "private_key_jwt" | "federated") {
            out.push(self.credential_hop(t, &client, &client_name).await?);
        }
        if t.user_id.is_some() && t.scopes_granted.is_some() {
            out.push(self.consent_hop(t, &client, &client_name, &user).await?);
        }
        out.push(self.token_hop(t, &client_name, &user).await?);
        Ok(())
    }

    async fn credential_hop(&mut self, t: &AuditEvent, client: &str, name: &str) -> Result<Hop> {
        let kind = t.credential_type.as_deref().unwrap_or_default();
        let id = t.credential_id.clone().unwrap_or_default();
        let mut facts = vec![Fact::new("application", self.named(client).await?)];
        let what = match kind {
            "secret" => {
                facts.push(Fact::new("secret id", id));
                "a client secret".to_string()
            }
            "private_key_jwt" => {
                facts.push(Fact::new("certificate key id", id.clone()));
                if let Some(tp) = self.thumbprint(client, &id).await? {
                    facts.push(Fact::new("certificate thumbprint (SHA-1)", tp));
                }
                "a certificate".to_string()
            }
            _ => {
                let iss = t.federated_issuer.clone().unwrap_or_default();
                let sub = t.federated_subject.clone().unwrap_or_default();
                facts.push(Fact::new("issuer", iss));
                facts.push(Fact::new("subject", sub.clone()));
                facts.push(Fact::new("federated credential id", id));
                match service_account(&sub) {
                    Some(sa) => {
                        facts.push(Fact::new("workload", sa.clone()));
                        sa
                    }
                    None => "a federated assertion".to_string(),
                }
            }
        };
        Ok(Hop {
            kind: HopKind::Credential,
            time: t.time,
            title: format!("{name} proved itself with {what}"),
            id: t.credential_id.clone(),
            outcome: Outcome::Info,
            facts,
        })
    }

    async fn thumbprint(&mut self, client: &str, key_id: &str) -> Result<Option<String>> {
        let (Ok(app_id), Ok(key)) = (Uuid::parse_str(client), Uuid::parse_str(key_id)) else {
            return Ok(None);
        };
        let Some(app) = self
            .store
            .application_by_app_id(&self.tenant, &app_id)
            .await?
        else {
            return Ok(None);
        };
        Ok(self
            .store
            .key_credentials(&app.id)
            .await?
            .into_iter()
            .find(|k| k.key_id == key)
            .map(|k| k.thumbprint_sha1))
    }

    /// The delegated grants the token relied on, as they stand now.
    async fn consent_hop(
        &mut self,
        t: &AuditEvent,
        client: &str,
        client_name: &str,
        user: &str,
    ) -> Result<Hop> {
        let resource = t.resource.clone().unwrap_or_default();
        let resource_name = self.short(&resource).await?;
        let mut facts = vec![
            Fact::new("client", self.named(client).await?),
            Fact::new("resource", self.named(&resource).await?),
        ];
        let client_sp = self.app(client).await?.map(|(_, sp)| sp);
        let resource_sp = self.app(&resource).await?.map(|(_, sp)| sp);
        // Agents also inherit their blueprint's tenant-wide grants (docs/sts.md §6.5).
        let mut holders = vec![(client_sp, "client")];
        if let Some(bp) = &t.blueprint_id {
            holders.push((self.app(bp).await?.map(|(_, sp)| sp), "blueprint"));
        }
        let mut found = 0;
        if let Some(rsp) = resource_sp {
            for (sp, whose) in holders {
                let Some(sp) = sp else { continue };
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT consent_type, principal_key, scope FROM oauth2_permission_grants \
                     WHERE client_id = $1 AND resource_id = $2 AND (consent_type = 'AllPrincipals' \
                     OR (consent_type = 'Principal' AND principal_key = $3)) ORDER BY consent_type, id",
                )
                .bind(&sp)
                .bind(&rsp)
                .bind(t.user_id.clone().unwrap_or_default())
                .fetch_all(self.store.pool())
                .await?;
                for (ct, _, scope) in rows {
                    found += 1;
                    let by = if ct == "AllPrincipals" {
                        "an administrator, for all users"
                    } else {
                        "the user"
                    };
                    facts.push(Fact::new(
                        &format!("{whose} grant"),
                        format!("{scope} (consented by {by})"),
                    ));
                }
            }
        }
        if found == 0 {
            facts.push(Fact::new("grant", "none now: the consent was revoked"));
        }
        Ok(Hop {
            kind: HopKind::Consent,
            time: t.time,
            title: format!("{user} consented: {client_name} may call {resource_name}"),
            id: None,
            outcome: if found == 0 {
                Outcome::Deny
            } else {
                Outcome::Info
            },
            facts,
        })
    }

    async fn token_hop(&mut self, t: &AuditEvent, client_name: &str, user: &str) -> Result<Hop> {
        let audience = t.audience.clone().unwrap_or_default();
        let agent = t.agent_id.clone();
        let (kind, title) = if audience == TOKEN_EXCHANGE_APP_ID && agent.is_some() {
            let a = self.short(agent.as_deref().unwrap_or_default()).await?;
            (
                HopKind::ExchangeToken,
                format!("T1: blueprint {client_name} may act as agent {a}"),
            )
        } else if t.client_kind.as_deref() == Some("agent") {
            let mode = match (t.user_id.is_some(), t.parent_kind.as_deref()) {
                (true, Some("t2_prime")) => format!("as its agent user {user}"),
                (true, _) => format!("on behalf of {user}"),
                (false, _) => "autonomously".to_string(),
            };
            (
                HopKind::AgentToken,
                format!("agent {client_name} acts {mode}"),
            )
        } else if t.user_id.is_some() {
            (
                HopKind::UserToken,
                format!("token of {user} for {client_name}"),
            )
        } else {
            (HopKind::AppToken, format!("token of {client_name}"))
        };
        let mut facts = Vec::new();
        if let Some(c) = &t.client_id {
            facts.push(Fact::new("client", self.named(c).await?));
        }
        if let Some(b) = &t.blueprint_id {
            facts.push(Fact::new("blueprint", self.named(b).await?));
        }
        if kind == HopKind::ExchangeToken
            && let Some(a) = &agent
        {
            facts.push(Fact::new("agent", self.named(a).await?));
        }
        if t.user_id.is_some() {
            facts.push(Fact::new("user", user.to_string()));
        }
        if let Some(r) = &t.resource {
            facts.push(Fact::new("audience", self.named(r).await?));
        }
        if let Some(s) = &t.scopes_granted {
            facts.push(Fact::new("scopes", s.clone()));
        }
        if let Some(r) = &t.roles {
            facts.push(Fact::new("roles", r.clone()));
        }
        if let Some(g) = &t.grant_type {
            facts.push(Fact::new("grant", g.clone()));
        }
        if let Some(e) = t.token_expires_at {
            facts.push(Fact::new("expires", time_text(e)));
        }
        if let Some(u) = &t.token_id {
            facts.push(Fact::new("uti", u.clone()));
        }
        Ok(Hop {
            kind,
            time: t.time,
            title,
            id: t.token_id.clone(),
            outcome: Outcome::Info,
            facts,
        })
    }

    /// Who made the request a gateway decided on, in the trail's one wording.
    pub(super) async fn who(&mut self, e: &GatewayEvent) -> Result<String> {
        let mut known = HashMap::new();
        for id in [&e.agent_id, &e.client_app_id].into_iter().flatten() {
            known.insert(id.clone(), self.short(id).await?);
        }
        Ok(of_gateway_event(e, &|id| {
            known.get(id).cloned().unwrap_or_else(|| id.to_string())
        }))
    }

    pub(super) async fn decision_hop(&mut self, e: &GatewayEvent) -> Result<Hop> {
        let allow = e.decision == "allow";
        let who = self.who(e).await?;
        let what = match (&e.tool, &e.method, &e.path) {
            (Some(tool), _, _) => format!("tool {tool}"),
            (None, Some(m), Some(p)) => format!("{m} {p}"),
            _ => e.kind.clone(),
        };
        let route = e.route.clone().unwrap_or_else(|| "-".into());
        let mut facts = vec![
            Fact::new("who", who.clone()),
            Fact::new("route", route.clone()),
            Fact::new("kind", e.kind.clone()),
        ];
        if let Some(t) = &e.tool {
            facts.push(Fact::new("tool", t.clone()));
        }
        if let (Some(m), Some(p)) = (&e.method, &e.path) {
            facts.push(Fact::new("request", format!("{m} {p}")));
        }
        if let Some(r) = &e.rule {
            facts.push(Fact::new("rule", r.clone()));
        }
        if let Some(r) = &e.reason {
            facts.push(Fact::new("reason", r.clone()));
        }
        if let Some(s) = e.upstream_status {
            facts.push(Fact::new("upstream status", s.to_string()));
        }
        if let Some(s) = e.status {
            facts.push(Fact::new("status", s.to_string()));
        }
        if let Some(t) = &e.token_id {
            facts.push(Fact::new("token", t.clone()));
        }
        facts.push(Fact::new(
            "gateway",
            self.named(&e.gateway_client_id).await?,
        ));
        Ok(Hop {
            kind: HopKind::Decision,
            time: e.time,
            title: format!(
                "gateway {} {what} on route {route} ({who})",
                if allow { "allowed" } else { "refused" }
            ),
            id: Some(e.event_id.clone()),
            outcome: if allow { Outcome::Allow } else { Outcome::Deny },
            facts,
        })
    }
}
