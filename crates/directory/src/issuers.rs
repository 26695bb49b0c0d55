//! Trusted issuers of federated assertions: what a record may hold, checked the same way for
//! tenant files and the Graph extension API.

use agentid_claims::jwk::JwkSet;
use agentid_claims::verify::VerificationKey;

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
}

/// A stored key set: at least one key, each usable and named by a `kid`.
pub fn check_jwks(set: &JwkSet) -> Result<(), IssuerError> {
    let usable = |k: &agentid_claims::jwk::Jwk| {
        k.kid.as_deref().is_some_and(|kid| !kid.is_empty()) && VerificationKey::from_jwk(k).is_ok()
    };
    if set.keys.is_empty() || !set.keys.iter().all(usable) {
        return Err(IssuerError::Jwks);
    }
    Ok(())
}

/// A CA bundle: one or more PEM certificates, at most [`MAX_CA_BUNDLE_BYTES`].
pub fn check_ca_bundle(pem: &str) -> Result<(), IssuerError> {
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
pub fn check_issuer(issuer: &str, allow_http: bool) -> Result<(), IssuerError> {
    match url::Url::parse(issuer) {
        Ok(u) if u.scheme() == "https" || (allow_http && u.scheme() == "http") => Ok(()),
        _ => Err(IssuerError::Issuer),
    }
}
