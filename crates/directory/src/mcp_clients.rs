//! What MCP clients need from the directory (docs/sts.md §16): each tenant's dynamic client
//! registration policy, the public clients registered through it (written with the
//! applications and principals write paths, in one transaction), the gateway route
//! resources (RFC 8707 `resource` values) registered for an application, and (§16.4) the host
//! policy for client ID metadata documents with the application created for each document URL.

use crate::applications::{self, NewApplication, RedirectUri};
use crate::error::{DirectoryError, Result};
use crate::model::SpKind;
use crate::model::{AppKind, normalize_uri};
use crate::principals::{self, NewPrincipal};
use crate::secrets::sha256_hex;
use crate::store::{AnyConnection, Store};
use uuid::Uuid;

/// Who may register a client at the tenant's registration endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationMode {
    /// No registration endpoint (the default).
    Off,
    /// Anyone (rate limited): what MCP clients that know nothing of the tenant need.
    Open,
    /// Only with the tenant's initial access token (RFC 7591 §3).
    Token,
}

impl RegistrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Off => "off",
            RegistrationMode::Open => "open",
            RegistrationMode::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => RegistrationMode::Off,
            "open" => RegistrationMode::Open,
            "token" => RegistrationMode::Token,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPolicy {
    pub mode: RegistrationMode,
    /// SHA-256 (hex) of the initial access token; set when `mode` is `Token`.
    pub initial_access_token_sha256: Option<String>,
}

impl RegistrationPolicy {
    pub const OFF: RegistrationPolicy = RegistrationPolicy {
        mode: RegistrationMode::Off,
        initial_access_token_sha256: None,
    };
}

impl Store {
    pub async fn registration_policy(&self, tenant: &Uuid) -> Result<RegistrationPolicy> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT mode, initial_access_token_sha256 FROM client_registration_policies WHERE tenant_id = $1",
        )
        .bind(tenant.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => RegistrationPolicy::OFF,
            Some((mode, hash)) => RegistrationPolicy {
                mode: RegistrationMode::parse(&mode).unwrap_or(RegistrationMode::Off),
                initial_access_token_sha256: hash,
            },
        })
    }

    /// Sets the policy; `Token` needs the initial access token, which is stored hashed.
    pub async fn set_registration_policy(
        &self,
        tenant: &Uuid,
        mode: RegistrationMode,
        initial_access_token: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        write_registration_policy(&mut tx, tenant, mode, initial_access_token, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a dynamically registered client: a public client application with its redirect
    /// URIs and its service principal, in one transaction. Returns the new appId.
    pub async fn register_public_client(
        &self,
        tenant: &Uuid,
        display_name: &str,
        redirect_uris: &[RedirectUri],
    ) -> Result<Uuid> {
        let mut tx = self.begin_write().await?;
        let app_id = insert_public_client(&mut tx, tenant, display_name, redirect_uris).await?;
        tx.commit().await?;
        Ok(app_id)
    }

    /// The host policy for client ID metadata documents (open when none was set).
    pub async fn metadata_document_policy(&self, tenant: &Uuid) -> Result<MetadataDocumentPolicy> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT mode, allow_hosts, deny_hosts FROM client_metadata_policies WHERE tenant_id = $1",
        )
        .bind(tenant.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => MetadataDocumentPolicy::default(),
            Some((mode, allow, deny)) => MetadataDocumentPolicy {
                // A value this version does not know refuses rather than opens.
                mode: MetadataDocumentMode::parse(&mode).unwrap_or(MetadataDocumentMode::Off),
                allow_hosts: serde_json::from_str(&allow).unwrap_or_default(),
                deny_hosts: serde_json::from_str(&deny).unwrap_or_default(),
            },
        })
    }

    /// Replaces the tenant's host policy; host patterns are checked and stored lowercase.
    pub async fn set_metadata_document_policy(
        &self,
        tenant: &Uuid,
        policy: &MetadataDocumentPolicy,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        write_metadata_document_policy(&mut tx, tenant, policy, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The application created for a client ID metadata document URL, while it exists.
    pub async fn metadata_document_client(&self, tenant: &Uuid, url: &str) -> Result<Option<Uuid>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT m.app_id FROM client_metadata_clients m JOIN applications a \
             ON a.tenant_id = m.tenant_id AND a.app_id = m.app_id \
             WHERE m.tenant_id = $1 AND m.url = $2",
        )
        .bind(tenant.to_string())
        .bind(url)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|(a,)| Uuid::parse_str(&a).ok()))
    }

    /// The metadata document URL an application was created for, if it was.
    pub async fn metadata_document_url(
        &self,
        tenant: &Uuid,
        app_id: &Uuid,
    ) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT url FROM client_metadata_clients WHERE tenant_id = $1 AND app_id = $2",
        )
        .bind(tenant.to_string())
        .bind(app_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(u,)| u))
    }

    /// The application for a metadata document URL, created on first use: a public client
    /// application with the document's redirect URIs and its service principal, and the URL's
    /// record, in one transaction. Two first uses at once end with one application: the
    /// loser's transaction is rolled back and the winner's appId returned.
    pub async fn ensure_metadata_document_client(
        &self,
        tenant: &Uuid,
        url: &str,
        display_name: &str,
        redirect_uris: &[RedirectUri],
        now: i64,
    ) -> Result<Uuid> {
        if let Some(app) = self.metadata_document_client(tenant, url).await? {
            return Ok(app);
        }
        let mut tx = self.begin_write().await?;
        // A record whose application was deleted is replaced.
        sqlx::query(
            "DELETE FROM client_metadata_clients WHERE tenant_id = $1 AND url = $2 \
             AND NOT EXISTS (SELECT 1 FROM applications a WHERE a.tenant_id = $1 AND a.app_id = client_metadata_clients.app_id)",
        )
        .bind(tenant.to_string())
        .bind(url)
        .execute(&mut *tx)
        .await?;
        let app_id = insert_public_client(&mut tx, tenant, display_name, redirect_uris).await?;
        let inserted = sqlx::query(
            "INSERT INTO client_metadata_clients (tenant_id, url, app_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, url) DO NOTHING",
        )
        .bind(tenant.to_string())
        .bind(url)
        .bind(app_id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return self
                .metadata_document_client(tenant, url)
                .await?
                .ok_or_else(|| {
                    DirectoryError::Conflict("metadata document client vanished".into())
                });
        }
        tx.commit().await?;
        Ok(app_id)
    }

    /// Registers a gateway route's resource URL for an application (replacing an earlier one).
    pub async fn set_protected_resource(
        &self,
        tenant: &Uuid,
        resource: &str,
        app_id: &Uuid,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        write_protected_resource(&mut tx, tenant, resource, app_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The application a gateway route's resource URL was registered for.
    pub async fn protected_resource(&self, tenant: &Uuid, resource: &str) -> Result<Option<Uuid>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT app_id FROM protected_resources WHERE tenant_id = $1 AND resource = $2",
        )
        .bind(tenant.to_string())
        .bind(normalize_uri(resource))
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|(a,)| Uuid::parse_str(&a).ok()))
    }
}

/// [`Store::set_registration_policy`] inside a transaction (the tenant file's too).
pub(crate) async fn write_registration_policy(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    mode: RegistrationMode,
    initial_access_token: Option<&str>,
    now: i64,
) -> Result<()> {
    let hash = match (mode, initial_access_token) {
        (RegistrationMode::Token, Some(t)) if t.len() >= 16 => Some(sha256_hex(t)),
        (RegistrationMode::Token, _) => {
            return Err(DirectoryError::Conflict(
                "registration mode 'token' needs an initial access token of at least 16 characters"
                    .into(),
            ));
        }
        _ => None,
    };
    sqlx::query("DELETE FROM client_registration_policies WHERE tenant_id = $1")
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO client_registration_policies (tenant_id, mode, initial_access_token_sha256, updated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant.to_string())
    .bind(mode.as_str())
    .bind(hash)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`Store::set_protected_resource`] inside a transaction (the tenant file's too).
pub(crate) async fn write_protected_resource(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    resource: &str,
    app_id: &Uuid,
) -> Result<()> {
    let key = normalize_uri(resource);
    sqlx::query("DELETE FROM protected_resources WHERE tenant_id = $1 AND resource = $2")
        .bind(tenant.to_string())
        .bind(&key)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO protected_resources (tenant_id, resource, app_id) VALUES ($1, $2, $3)",
    )
    .bind(tenant.to_string())
    .bind(&key)
    .bind(app_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A public client application and its enabled service principal, inside `conn`'s transaction.
async fn insert_public_client(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    display_name: &str,
    redirect_uris: &[RedirectUri],
) -> Result<Uuid> {
    let app_id = Uuid::new_v4();
    applications::insert(
        conn,
        tenant,
        &NewApplication {
            id: Uuid::new_v4(),
            app_id,
            kind: AppKind::Application,
            display_name,
            scopes: &[],
            app_roles: &[],
            access_token_version: None,
            is_public_client: true,
            redirect_uris,
            inheritable_permissions: &[],
            owners: &[],
            sponsors: &[],
            signing_alg: "RS256",
        },
    )
    .await?;
    principals::insert(
        conn,
        tenant,
        &NewPrincipal {
            id: Uuid::new_v4(),
            app_id,
            kind: SpKind::ServicePrincipal,
            display_name,
            enabled: true,
            blueprint_app_id: None,
            sponsors: &[],
        },
    )
    .await
    .map_err(DirectoryError::from)?;
    Ok(app_id)
}

/// Which client ID metadata documents a tenant accepts (docs/sts.md §16.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataDocumentMode {
    /// No URL client ids; metadata says `client_id_metadata_document_supported: false`.
    Off,
    /// Any public https host not on the deny list (the default: what MCP clients expect).
    #[default]
    Open,
    /// Only hosts on the allow list (and not on the deny list).
    AllowList,
}

impl MetadataDocumentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataDocumentMode::Off => "off",
            MetadataDocumentMode::Open => "open",
            MetadataDocumentMode::AllowList => "allowList",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => MetadataDocumentMode::Off,
            "open" => MetadataDocumentMode::Open,
            "allowList" => MetadataDocumentMode::AllowList,
            _ => return None,
        })
    }
}

/// The tenant's host policy. Patterns are lowercase host names; `*.example.com` matches every
/// subdomain of example.com (not example.com itself).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataDocumentPolicy {
    pub mode: MetadataDocumentMode,
    pub allow_hosts: Vec<String>,
    pub deny_hosts: Vec<String>,
}

/// Most host patterns a policy holds (each list).
pub const MAX_HOST_PATTERNS: usize = 200;

impl MetadataDocumentPolicy {
    /// Whether a document on `host` may be used: the deny list wins, then the mode decides.
    pub fn admits(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let hit = |list: &[String]| list.iter().any(|p| host_matches(p, &host));
        match self.mode {
            MetadataDocumentMode::Off => false,
            _ if hit(&self.deny_hosts) => false,
            MetadataDocumentMode::Open => true,
            MetadataDocumentMode::AllowList => hit(&self.allow_hosts),
        }
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        None => pattern == host,
    }
}

/// A host pattern as stored: a DNS name or `*.` and one, lowercase; `None` when it is not one.
pub fn host_pattern(p: &str) -> Option<String> {
    let p = p.trim().to_ascii_lowercase();
    let name = p.strip_prefix("*.").unwrap_or(&p);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(p)
}

pub(crate) async fn write_metadata_document_policy(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    policy: &MetadataDocumentPolicy,
    now: i64,
) -> Result<()> {
    let mut lists = Vec::new();
    for list in [&policy.allow_hosts, &policy.deny_hosts] {
        if list.len() > MAX_HOST_PATTERNS {
            return Err(DirectoryError::Conflict(format!(
                "at most {MAX_HOST_PATTERNS} host patterns"
            )));
        }
        let mut checked = Vec::new();
        for p in list {
            checked.push(host_pattern(p).ok_or_else(|| {
                DirectoryError::Conflict(format!("'{p}' is not a host name or *.host pattern"))
            })?);
        }
        lists.push(serde_json::to_string(&checked).expect("json"));
    }
    sqlx::query("DELETE FROM client_metadata_policies WHERE tenant_id = $1")
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO client_metadata_policies (tenant_id, mode, allow_hosts, deny_hosts, updated_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant.to_string())
    .bind(policy.mode.as_str())
    .bind(&lists[0])
    .bind(&lists[1])
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_policy() {
        let p = |mode, allow: &[&str], deny: &[&str]| MetadataDocumentPolicy {
            mode,
            allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
            deny_hosts: deny.iter().map(|s| s.to_string()).collect(),
        };
        let open = p(
            MetadataDocumentMode::Open,
            &[],
            &["evil.example", "*.bad.example"],
        );
        assert!(open.admits("mcp.example.com"));
        assert!(!open.admits("EVIL.example"));
        assert!(!open.admits("a.bad.example"));
        assert!(open.admits("bad.example"));
        assert!(open.admits("notbad.example"));
        let list = p(
            MetadataDocumentMode::AllowList,
            &["*.claude.ai", "vscode.dev"],
            &["x.claude.ai"],
        );
        assert!(list.admits("a.claude.ai") && list.admits("vscode.dev"));
        assert!(
            !list.admits("claude.ai") && !list.admits("x.claude.ai") && !list.admits("evil.dev")
        );
        assert!(!p(MetadataDocumentMode::Off, &["a.b"], &[]).admits("a.b"));
    }

    #[test]
    fn host_patterns() {
        for ok in [
            "a.example",
            "*.Example.COM",
            "localhost",
            "xn--bcher-kva.example",
        ] {
            assert!(host_pattern(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "*.",
            "*",
            "a..b",
            "a b",
            "http://a",
            "a/b",
            "**.a",
            "a.*.b",
            &"a".repeat(64),
        ] {
            assert!(host_pattern(bad).is_none(), "{bad}");
        }
    }
}
