//! Application credentials (docs/directory.md §2.4): client secrets, certificates and federated
//! identity credentials. What a credential may hold is checked here, with Entra's wording,
//! for the Graph API and tenant files alike; this is the only code that writes the
//! `password_credentials`, `key_credentials` and `federated_credentials` tables.

use crate::error::{DirectoryError, Result, is_unique_violation};
use crate::model::{Application, FederatedCredential};
use crate::model::{KeyCredential, PasswordCredential};
use crate::secrets;
use crate::store::uuid;
use crate::store::{AnyConnection, Store};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Federated identity credentials an application may have (docs/directory.md §2.1).
pub const MAX_FICS_PER_APPLICATION: usize = 20;
/// The audience of a federated credential that names none.
pub const DEFAULT_FIC_AUDIENCE: &str = "api://AzureADTokenExchange";
/// How long a client secret lives when its end is not given: two years.
pub const DEFAULT_SECRET_LIFETIME_SECS: i64 = 2 * 365 * 86400;

/// Why a federated identity credential is refused: one variant per property.
#[derive(Debug, thiserror::Error)]
pub enum FicError {
    #[error("name must be 3–120 characters of letters, digits, '-' and '_'.")]
    Name,
    #[error(
        "issuer must be an https URL of at most 600 characters (http only for a trusted issuer with allowHttp)."
    )]
    Issuer,
    #[error("subject must be 1–600 characters.")]
    Subject,
    #[error("audiences must hold exactly one value of at most 600 characters.")]
    Audiences,
    #[error("claimsMatchingExpression (flexible federated identity credentials) is not supported.")]
    ClaimsMatchingExpression,
    #[error("An application can have at most 20 federated identity credentials.")]
    TooMany,
    #[error(
        "FederatedIdentityCredential with the same name or the same issuer and subject already exists."
    )]
    Exists,
    #[error("FederatedIdentityCredential with the same issuer and subject already exists.")]
    IssuerSubjectTaken,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl FicError {
    /// The property the error is about, for messages that name a path.
    pub fn property(&self) -> Option<&'static str> {
        match self {
            FicError::Name => Some("name"),
            FicError::Issuer => Some("issuer"),
            FicError::Subject => Some("subject"),
            FicError::Audiences => Some("audiences"),
            FicError::ClaimsMatchingExpression => Some("claimsMatchingExpression"),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for FicError {
    fn from(e: sqlx::Error) -> Self {
        FicError::Directory(e.into())
    }
}

/// 3–120 characters of letters, digits, `-` and `_`.
pub fn check_fic_name(name: &str) -> Result<(), FicError> {
    let ok = (3..=120).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(FicError::Name) }
}

/// An https URL of at most 600 characters; http only when the tenant trusts the issuer with
/// `allowHttp` (`http_ok`).
pub fn check_fic_issuer(issuer: &str, http_ok: bool) -> Result<(), FicError> {
    let ok_url = url::Url::parse(issuer)
        .is_ok_and(|u| u.scheme() == "https" || (http_ok && u.scheme() == "http"));
    if ok_url && issuer.len() <= 600 {
        Ok(())
    } else {
        Err(FicError::Issuer)
    }
}

pub fn check_fic_subject(subject: &str) -> Result<(), FicError> {
    if subject.is_empty() || subject.len() > 600 {
        return Err(FicError::Subject);
    }
    Ok(())
}

/// At most one audience, 1–600 characters.
pub fn check_fic_audiences<S: AsRef<str>>(audiences: &[S]) -> Result<(), FicError> {
    if audiences.len() > 1
        || audiences
            .iter()
            .any(|a| a.as_ref().is_empty() || a.as_ref().len() > 600)
    {
        return Err(FicError::Audiences);
    }
    Ok(())
}

/// Writes a new federated credential. The caller has checked its properties and
/// [`MAX_FICS_PER_APPLICATION`]; names and (issuer, subject) are unique per application.
pub async fn insert_fic(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    application: &Uuid,
    f: &FederatedCredential,
    description: Option<&str>,
) -> Result<(), FicError> {
    sqlx::query(
        "INSERT INTO federated_credentials (id, tenant_id, application_id, name, name_lower, issuer, subject, audience, description) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(f.id.to_string())
    .bind(tenant.to_string())
    .bind(application.to_string())
    .bind(&f.name)
    .bind(f.name.to_lowercase())
    .bind(&f.issuer)
    .bind(&f.subject)
    .bind(&f.audience)
    .bind(description)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            FicError::Exists
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// Rewrites a federated credential's issuer, subject, audience and description (its name
/// never changes).
pub async fn update_fic(
    conn: &mut AnyConnection,
    f: &FederatedCredential,
    description: Option<&str>,
) -> Result<(), FicError> {
    sqlx::query("UPDATE federated_credentials SET issuer = $1, subject = $2, audience = $3, description = $4 WHERE id = $5")
        .bind(&f.issuer)
        .bind(&f.subject)
        .bind(&f.audience)
        .bind(description)
        .bind(f.id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                FicError::IssuerSubjectTaken
            } else {
                e.into()
            }
        })?;
    Ok(())
}

/// A client secret's public part: what Graph shows and what is stored beside its hash.
#[derive(Debug, Clone)]
pub struct NewPassword {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub hint: String,
    pub start_at: i64,
    pub end_at: i64,
}

impl NewPassword {
    /// A credential for `secret` starting now; the hint is its first three characters.
    pub fn for_secret(
        secret: &str,
        key_id: Uuid,
        display_name: Option<String>,
        end_at: Option<i64>,
    ) -> Self {
        let now = crate::now();
        Self {
            key_id,
            display_name,
            hint: secret.chars().take(3).collect(),
            start_at: now,
            end_at: end_at.unwrap_or(now + DEFAULT_SECRET_LIFETIME_SECS),
        }
    }
}

/// A secret shown once.
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// Stores a client secret as its SHA-256 (docs/sts.md §6.3); the clear value is never written.
pub async fn insert_password(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    application: &Uuid,
    p: &NewPassword,
    secret: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO password_credentials (key_id, tenant_id, application_id, display_name, hint, secret_sha256, start_at, end_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(p.key_id.to_string())
    .bind(tenant.to_string())
    .bind(application.to_string())
    .bind(&p.display_name)
    .bind(&p.hint)
    .bind(secrets::sha256_hex(secret))
    .bind(p.start_at)
    .bind(p.end_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes a client secret; whether one was there. `application` scopes the key id, when given.
pub async fn delete_password(
    conn: &mut AnyConnection,
    application: Option<&Uuid>,
    key_id: &str,
) -> Result<bool> {
    let done = match application {
        Some(app) => {
            sqlx::query(
                "DELETE FROM password_credentials WHERE application_id = $1 AND key_id = $2",
            )
            .bind(app.to_string())
            .bind(key_id)
            .execute(&mut *conn)
            .await?
        }
        None => {
            sqlx::query("DELETE FROM password_credentials WHERE key_id = $1")
                .bind(key_id)
                .execute(&mut *conn)
                .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("not a PEM certificate: {0}")]
    Pem(String),
    #[error("not an X.509 certificate: {0}")]
    X509(String),
}

/// A certificate credential as stored: the DER and its SHA-1 and SHA-256 thumbprints.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub der: Vec<u8>,
    pub sha1: String,
    pub sha256: String,
    pub not_before: i64,
    pub not_after: i64,
}

impl NewCertificate {
    /// The first PEM certificate of `pem`, parsed.
    pub fn from_pem(pem: &str) -> Result<Self, CertificateError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| CertificateError::Pem(e.to_string()))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| CertificateError::X509(e.to_string()))?;
        let v = cert.validity();
        Ok(Self {
            sha1: agentid_claims::jwt::hex(&Sha1::digest(&pem.contents)),
            sha256: agentid_claims::jwt::hex(&Sha256::digest(&pem.contents)),
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
            der: pem.contents.clone(),
        })
    }
}

/// Stores a certificate credential under `key_id`, replacing one with the same key id.
pub async fn put_certificate(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    application: &Uuid,
    key_id: &str,
    display_name: Option<&str>,
    cert: &NewCertificate,
) -> Result<()> {
    sqlx::query("DELETE FROM key_credentials WHERE key_id = $1")
        .bind(key_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO key_credentials (key_id, tenant_id, application_id, display_name, cert_der, thumbprint_sha1, thumbprint_sha256, start_at, end_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(key_id)
    .bind(tenant.to_string())
    .bind(application.to_string())
    .bind(display_name)
    .bind(STANDARD.encode(&cert.der))
    .bind(&cert.sha1)
    .bind(&cert.sha256)
    .bind(cert.not_before)
    .bind(cert.not_after)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    pub async fn password_credentials(
        &self,
        application_id: &Uuid,
    ) -> Result<Vec<PasswordCredential>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT key_id, secret_sha256, start_at, end_at FROM password_credentials WHERE application_id = $1",
        )
        .bind(application_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(k, h, s, e)| {
                Ok(PasswordCredential {
                    key_id: uuid(&k, "keyId")?,
                    secret_sha256: h,
                    start_at: s,
                    end_at: e,
                })
            })
            .collect()
    }
    pub async fn key_credentials(&self, application_id: &Uuid) -> Result<Vec<KeyCredential>> {
        let rows: Vec<(String, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT key_id, cert_der, thumbprint_sha1, thumbprint_sha256, start_at, end_at FROM key_credentials WHERE application_id = $1",
        )
        .bind(application_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(k, der, t1, t256, s, e)| {
                Ok(KeyCredential {
                    key_id: uuid(&k, "keyId")?,
                    cert_der: STANDARD
                        .decode(der)
                        .map_err(|e| DirectoryError::corrupt("certificate", e))?,
                    thumbprint_sha1: t1,
                    thumbprint_sha256: t256,
                    start_at: s,
                    end_at: e,
                })
            })
            .collect()
    }
    pub async fn federated_credentials(
        &self,
        application_id: &Uuid,
    ) -> Result<Vec<FederatedCredential>> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, name, issuer, subject, audience FROM federated_credentials WHERE application_id = $1 ORDER BY name_lower",
        )
        .bind(application_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, name, issuer, subject, audience)| {
                Ok(FederatedCredential {
                    id: uuid(&id, "federated credential id")?,
                    name,
                    issuer,
                    subject,
                    audience,
                })
            })
            .collect()
    }

    /// Adds a generated client secret (Graph `addPassword`); the secret is returned once.
    pub async fn add_password(
        &self,
        tenant: &Uuid,
        app: &Application,
        display_name: Option<&str>,
        end_at: Option<i64>,
    ) -> Result<(NewPassword, SecretText)> {
        let secret = secrets::random_client_secret();
        let p = NewPassword::for_secret(
            &secret,
            Uuid::new_v4(),
            display_name.map(str::to_string),
            end_at,
        );
        let mut tx = self.begin_write().await?;
        insert_password(&mut tx, tenant, &app.id, &p, &secret).await?;
        tx.commit().await?;
        Ok((p, SecretText(secret)))
    }

    /// Password credentials as Graph lists them (no secret).
    pub async fn password_credential_list(
        &self,
        app: &Uuid,
    ) -> Result<Vec<(String, Option<String>, String, i64, i64)>> {
        Ok(sqlx::query_as("SELECT key_id, display_name, hint, start_at, end_at FROM password_credentials WHERE application_id = $1 ORDER BY start_at")
            .bind(app.to_string())
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn remove_password(&self, app: &Uuid, key_id: &Uuid) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let removed = delete_password(&mut tx, Some(app), &key_id.to_string()).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Creates a federated credential; at most [`MAX_FICS_PER_APPLICATION`] per application.
    pub async fn create_fic(
        &self,
        tenant: &Uuid,
        app: &Uuid,
        f: &FederatedCredential,
        description: Option<&str>,
    ) -> Result<(), FicError> {
        let mut tx = self.begin_write().await?;
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM federated_credentials WHERE application_id = $1")
                .bind(app.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if n >= MAX_FICS_PER_APPLICATION as i64 {
            return Err(FicError::TooMany);
        }
        insert_fic(&mut tx, tenant, app, f, description).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn fic_description(&self, id: &Uuid) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT description FROM federated_credentials WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.and_then(|(d,)| d))
    }

    pub async fn update_fic(
        &self,
        f: &FederatedCredential,
        description: Option<&str>,
    ) -> Result<(), FicError> {
        let mut tx = self.begin_write().await?;
        update_fic(&mut tx, f, description).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_fic(&self, id: &Uuid) -> Result<()> {
        sqlx::query("DELETE FROM federated_credentials WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
