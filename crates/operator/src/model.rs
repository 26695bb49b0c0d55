//! Parse, don't validate (docs/operator.md §2.4): a custom resource's spec becomes typed values
//! here, once. The validating webhook refuses what does not parse, with the same messages the
//! controllers put in a condition when a resource got in before the webhook was installed.

use crate::crd::{
    AgentBlueprintSpec, AgentIdentitySpec, CredentialKind, DeletionPolicy, DirectoryConnectionSpec,
    DownstreamApi, IssuerRegistration, KeyRef,
};

/// Every reason a spec is refused, one sentence each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

/// Collects problems; `finish` turns them into the parsed value or an [`InvalidSpec`].
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }
    fn finish<T>(self, v: T) -> Result<T, InvalidSpec> {
        if self.0.is_empty() {
            Ok(v)
        } else {
            Err(InvalidSpec(self.0))
        }
    }
}

/// At most this many sponsors, owners, service accounts, consents or downstream APIs (each
/// becomes directory calls on every reconcile).
pub const MAX_ITEMS: usize = 32;

/// A DNS-1123 label (service account, ConfigMap, Secret and resource names used here).
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_upn(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.-_+'".contains(&b))
}

fn display_name(p: &mut Problems, field: &str, v: &str) {
    p.check(!v.trim().is_empty() && v.chars().count() <= 256, || {
        format!("{field} must be 1 to 256 characters")
    });
    p.check(!v.chars().any(char::is_control), || {
        format!("{field} must not contain control characters")
    });
}

fn upns(p: &mut Problems, field: &str, v: &[String]) {
    p.check(v.len() <= MAX_ITEMS, || {
        format!("{field} has more than {MAX_ITEMS} entries")
    });
    for u in v {
        p.check(is_upn(u), || {
            format!("{field}: {u:?} is not a user principal name (user@domain)")
        });
    }
}

/// A delegated permission: `RESOURCE/scope` (RESOURCE a URI) or a bare Graph scope.
fn permission(p: &mut Problems, field: &str, v: &str) {
    let scope = v.rsplit('/').next().unwrap_or_default();
    let resource_ok =
        !v.contains('/') || (v.contains("://") && url_ok(&v[..v.len() - scope.len() - 1], false));
    p.check(
        resource_ok
            && !scope.is_empty()
            && scope.len() <= 120
            && scope
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        || format!("{field}: {v:?} is not RESOURCE/scope or a Graph scope"),
    );
}

fn url_ok(v: &str, https_only: bool) -> bool {
    match url::Url::parse(v) {
        Ok(u) => {
            (u.scheme() == "https"
                || (!https_only && (u.scheme() == "http" || u.scheme() == "api")))
                && u.has_host()
        }
        Err(_) => false,
    }
}

/// How the operator signs in to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ClientSecret { secret: String },
    Password { secret: String },
    WorkloadIdentity { client_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// No trailing slash.
    pub authority: String,
    pub tenant: String,
    pub graph: Option<String>,
    pub ca: Option<KeyRef>,
    pub credential: Credential,
    pub issuer_registration: IssuerRegistration,
}

impl Connection {
    /// `AZURE_AUTHORITY_HOST`: the authority without its tenant.
    pub fn authority_host(&self) -> String {
        let host = &self.authority[..self.authority.len() - self.tenant.len()];
        host.to_string()
    }
}

pub fn connection(s: &DirectoryConnectionSpec) -> Result<Connection, InvalidSpec> {
    let mut p = Problems::default();
    let authority = s.authority.trim_end_matches('/').to_string();
    let parsed = url::Url::parse(&authority).ok();
    let tenant = parsed
        .as_ref()
        .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
        .unwrap_or_default();
    p.check(url_ok(&authority, true) && !tenant.is_empty(), || {
        "authority must be https://HOST[:PORT]/TENANT".into()
    });
    p.check(tenant.len() <= 100 && !tenant.contains(['?', '#']), || {
        "authority's tenant is not a tenant id or domain".into()
    });
    if let Some(g) = &s.graph {
        p.check(url_ok(g, true), || "graph must be an https URL".into());
    }
    if let Some(ca) = &s.ca_config_map {
        p.check(is_dns_name(&ca.name) && !ca.key.is_empty(), || {
            "caConfigMap needs a ConfigMap name and key".into()
        });
    }
    let c = &s.credential;
    let credential = match c.kind {
        CredentialKind::ClientSecret | CredentialKind::Password => {
            let secret = c.secret_name.clone().unwrap_or_default();
            p.check(is_dns_name(&secret), || {
                format!("credential {:?} needs secretName", c.kind)
            });
            if c.kind == CredentialKind::Password {
                Credential::Password { secret }
            } else {
                Credential::ClientSecret { secret }
            }
        }
        CredentialKind::WorkloadIdentity => {
            let client_id = c.client_id.clone().unwrap_or_default();
            p.check(uuid::Uuid::parse_str(&client_id).is_ok(), || {
                "credential WorkloadIdentity needs clientId (a GUID)".into()
            });
            Credential::WorkloadIdentity { client_id }
        }
    };
    p.finish(Connection {
        authority,
        tenant,
        graph: s.graph.clone(),
        ca: s.ca_config_map.clone(),
        credential,
        issuer_registration: s.issuer_registration,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blueprint {
    pub directory: String,
    pub display_name: String,
    pub sponsors: Vec<String>,
    pub owners: Vec<String>,
    pub service_accounts: Vec<String>,
    pub secret_name: String,
    pub inheritable_permissions: Vec<String>,
    pub deletion: DeletionPolicy,
}

pub fn blueprint(name: &str, s: &AgentBlueprintSpec) -> Result<Blueprint, InvalidSpec> {
    let mut p = Problems::default();
    p.check(is_dns_name(&s.directory_ref), || {
        "directoryRef must name a DirectoryConnection".into()
    });
    display_name(&mut p, "displayName", &s.display_name);
    upns(&mut p, "sponsors", &s.sponsors);
    upns(&mut p, "owners", &s.owners);
    p.check(s.service_accounts.len() <= MAX_ITEMS, || {
        format!("serviceAccounts has more than {MAX_ITEMS} entries")
    });
    for sa in &s.service_accounts {
        p.check(is_dns_name(sa) && !sa.contains('.'), || {
            format!("serviceAccounts: {sa:?} is not a service account name of this namespace")
        });
    }
    let secret_name = s
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{name}-blueprint-credential"));
    p.check(is_dns_name(&secret_name), || {
        "secretName must be a Secret name".into()
    });
    p.check(s.inheritable_permissions.len() <= MAX_ITEMS, || {
        format!("inheritablePermissions has more than {MAX_ITEMS} entries")
    });
    for perm in &s.inheritable_permissions {
        permission(&mut p, "inheritablePermissions", perm);
    }
    let mut service_accounts = s.service_accounts.clone();
    service_accounts.sort();
    service_accounts.dedup();
    p.finish(Blueprint {
        directory: s.directory_ref.clone(),
        display_name: s.display_name.clone(),
        owners: if s.owners.is_empty() {
            s.sponsors.clone()
        } else {
            s.owners.clone()
        },
        sponsors: s.sponsors.clone(),
        service_accounts,
        secret_name,
        inheritable_permissions: s.inheritable_permissions.clone(),
        deletion: s.deletion_policy,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub blueprint: String,
    pub display_name: String,
    pub sponsors: Vec<String>,
    pub admin_consents: Vec<String>,
    pub downstream_apis: Vec<(String, DownstreamApi)>,
    pub deletion: DeletionPolicy,
}

/// A downstream API's name becomes part of environment variable names.
fn is_api_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub fn agent(s: &AgentIdentitySpec) -> Result<Agent, InvalidSpec> {
    let mut p = Problems::default();
    p.check(is_dns_name(&s.blueprint_ref), || {
        "blueprintRef must name an AgentBlueprint of this namespace".into()
    });
    display_name(&mut p, "displayName", &s.display_name);
    upns(&mut p, "sponsors", &s.sponsors);
    p.check(s.admin_consents.len() <= MAX_ITEMS, || {
        format!("adminConsents has more than {MAX_ITEMS} entries")
    });
    for c in &s.admin_consents {
        permission(&mut p, "adminConsents", c);
    }
    p.check(s.downstream_apis.len() <= MAX_ITEMS, || {
        format!("downstreamApis has more than {MAX_ITEMS} entries")
    });
    for (name, api) in &s.downstream_apis {
        p.check(is_api_name(name), || {
            format!("downstreamApis: {name:?} must be letters, digits and '-' (at most 64)")
        });
        if let Some(u) = &api.base_url {
            p.check(url_ok(u, false), || {
                format!("downstreamApis.{name}.baseUrl must be an http(s) URL")
            });
        }
        p.check(
            !api.scopes.is_empty()
                && api.scopes.len() <= 16
                && api.scopes.iter().all(|s| {
                    !s.is_empty() && s.len() <= 300 && !s.chars().any(char::is_whitespace)
                }),
            || format!("downstreamApis.{name}.scopes must hold 1 to 16 scopes"),
        );
    }
    p.finish(Agent {
        blueprint: s.blueprint_ref.clone(),
        display_name: s.display_name.clone(),
        sponsors: s.sponsors.clone(),
        admin_consents: s.admin_consents.clone(),
        downstream_apis: s
            .downstream_apis
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        deletion: s.deletion_policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_would_break_env_names_and_filters() {
        let mut s = AgentIdentitySpec {
            blueprint_ref: "bp".into(),
            display_name: "A".into(),
            ..Default::default()
        };
        s.downstream_apis.insert(
            "x__y".into(),
            DownstreamApi {
                scopes: vec!["s".into()],
                ..Default::default()
            },
        );
        s.sponsors.push("not a upn".into());
        let e = agent(&s).unwrap_err().to_string();
        assert!(e.contains("downstreamApis: \"x__y\""), "{e}");
        assert!(e.contains("user principal name"), "{e}");
    }

    #[test]
    fn authority_host_drops_the_tenant() {
        let c = connection(&DirectoryConnectionSpec {
            authority: "https://sts.example:8443/contoso.test/".into(),
            credential: crate::crd::DirectoryCredential {
                kind: CredentialKind::Password,
                secret_name: Some("admin".into()),
                client_id: None,
            },
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (c.tenant.as_str(), c.authority_host().as_str()),
            ("contoso.test", "https://sts.example:8443/")
        );
    }
}
