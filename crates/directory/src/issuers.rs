//! Trusted issuers of federated assertions (docs/directory.md §2.7): what a record may hold,
//! checked the same way for tenant files and the Graph extension API, and the only code that
//! writes the `trusted_issuers` table.

use crate::error::{DirectoryError, Result, is_unique_violation};
use crate::model::TrustedIssuer;
use crate::store::json;
use crate::store::{AnyConnection, Store};
use agentid_claims::jwk::JwkSet;
use agentid_claims::verify::VerificationKey;
use sqlx::FromRow;
use uuid::Uuid;

/// The largest CA bundle accepted (a handful of certificates).
pub const MAX_CA_BUNDLE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    #[error("jwks must hold RSA or EC (P-256, P-384) public keys, each with a kid")]
    Jwks,
    #[error("caBundle must be PEM CA certificates: {0}")]
    CaBundle(String),
    #[error("issuer must be an https URL (http only with allowHttp)")]
    Issuer,
    #[error("A trusted issuer with the same issuer already exists.")]
    Exists,
}

/// A stored key set: at least one key, each usable and named by a `kid`.
pub fn check_jwks(set: &JwkSet) -> std::result::Result<(), IssuerError> {
    let usable = |k: &agentid_claims::jwk::Jwk| {
        k.kid.as_deref().is_some_and(|kid| !kid.is_empty()) && VerificationKey::from_jwk(k).is_ok()
    };
    if set.keys.is_empty() || !set.keys.iter().all(usable) {
        return Err(IssuerError::Jwks);
    }
    Ok(())
}

/// A CA bundle: one or more PEM certificates, at most [`MAX_CA_BUNDLE_BYTES`].
pub fn check_ca_bundle(pem: &str) -> std::result::Result<(), IssuerError> {
    if pem.len() > MAX_CA_BUNDLE_BYTES {
        return Err(IssuerError::CaBundle("larger than 64 KiB".into()));
    }
    let mut count = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| IssuerError::CaBundle(e.to_string()))?;
        if block.label != "CERTIFICATE" {
            return Err(IssuerError::CaBundle(format!(
                "a '{}' block is not a certificate",
                block.label.chars().take(40).collect::<String>()
            )));
        }
        block
            .parse_x509()
            .map_err(|e| IssuerError::CaBundle(e.to_string()))?;
        count += 1;
    }
    if count == 0 {
        return Err(IssuerError::CaBundle("no certificate in it".into()));
    }
    Ok(())
}

/// The issuer URL: https, or http when the record allows it.
pub fn check_issuer(issuer: &str, allow_http: bool) -> std::result::Result<(), IssuerError> {
    match url::Url::parse(issuer) {
        Ok(u) if u.scheme() == "https" || (allow_http && u.scheme() == "http") => Ok(()),
        _ => Err(IssuerError::Issuer),
    }
}

/// A trusted issuer as stored.
#[derive(Debug, Clone, FromRow)]
pub struct TrustedIssuerRow {
    pub id: String,
    pub issuer: String,
    /// The JWKS as JSON, or `None` to use the issuer's discovery document.
    pub jwks: Option<String>,
    pub allow_http: i64,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// PEM CA certificates for the issuer's discovery and JWKS endpoints.
    pub ca_bundle: Option<String>,
}

const TI_COLS: &str =
    "id, issuer, jwks, allow_http, description, created_at, updated_at, ca_bundle";

fn taken(e: sqlx::Error) -> DirectoryError {
    if is_unique_violation(&e) {
        DirectoryError::Conflict(IssuerError::Exists.to_string())
    } else {
        e.into()
    }
}

/// Writes a new trusted issuer; a second record for the same issuer is a conflict.
pub async fn insert(conn: &mut AnyConnection, tenant: &Uuid, t: &TrustedIssuerRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO trusted_issuers (id, tenant_id, issuer, jwks, allow_http, description, created_at, updated_at, ca_bundle) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&t.id)
    .bind(tenant.to_string())
    .bind(&t.issuer)
    .bind(&t.jwks)
    .bind(t.allow_http)
    .bind(&t.description)
    .bind(t.created_at)
    .bind(t.updated_at)
    .bind(&t.ca_bundle)
    .execute(&mut *conn)
    .await
    .map_err(taken)?;
    Ok(())
}

/// Rewrites a trusted issuer's keys, `allowHttp`, description and CA bundle (the issuer URL
/// never changes).
pub async fn update(conn: &mut AnyConnection, tenant: &Uuid, t: &TrustedIssuerRow) -> Result<()> {
    sqlx::query("UPDATE trusted_issuers SET jwks = $1, allow_http = $2, description = $3, updated_at = $4, ca_bundle = $5 WHERE id = $6 AND tenant_id = $7")
        .bind(&t.jwks)
        .bind(t.allow_http)
        .bind(&t.description)
        .bind(t.updated_at)
        .bind(&t.ca_bundle)
        .bind(&t.id)
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await
        .map_err(taken)?;
    Ok(())
}

/// The record for `issuer`, read inside a transaction.
pub async fn find(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    issuer: &str,
) -> Result<Option<TrustedIssuerRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TI_COLS} FROM trusted_issuers WHERE tenant_id = $1 AND issuer = $2"
    ))
    .bind(tenant.to_string())
    .bind(issuer)
    .fetch_optional(&mut *conn)
    .await?)
}

impl Store {
    pub async fn trusted_issuer(
        &self,
        tenant: &Uuid,
        issuer: &str,
    ) -> Result<Option<TrustedIssuer>> {
        let row: Option<(String, Option<String>, i64, Option<String>)> =
            sqlx::query_as("SELECT issuer, jwks, allow_http, ca_bundle FROM trusted_issuers WHERE tenant_id = $1 AND issuer = $2")
                .bind(tenant.to_string())
                .bind(issuer)
                .fetch_optional(self.pool())
                .await?;
        row.map(|(issuer, jwks, allow_http, ca_bundle)| {
            Ok(TrustedIssuer {
                issuer,
                jwks: jwks
                    .as_deref()
                    .map(|j| json(j, "trusted issuer JWKS"))
                    .transpose()?,
                allow_http: allow_http != 0,
                ca_bundle,
            })
        })
        .transpose()
    }

    pub async fn trusted_issuers(&self, tenant: &Uuid) -> Result<Vec<TrustedIssuerRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TI_COLS} FROM trusted_issuers WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant.to_string())
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn trusted_issuer_by_id(
        &self,
        tenant: &Uuid,
        id: &str,
    ) -> Result<Option<TrustedIssuerRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TI_COLS} FROM trusted_issuers WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Creates (`create`) or rewrites a trusted issuer, in one transaction.
    pub async fn put_trusted_issuer(
        &self,
        tenant: &Uuid,
        t: &TrustedIssuerRow,
        create: bool,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if create {
            insert(&mut tx, tenant, t).await?;
        } else {
            update(&mut tx, tenant, t).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_trusted_issuer(&self, tenant: &Uuid, id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM trusted_issuers WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(id)
                .execute(self.pool())
                .await?
                .rows_affected()
                == 1,
        )
    }
}
