//! HTTPS material (docs/sts.md §2.1): a configured certificate, or a local CA and server
//! certificate generated on first start and kept in the database so every replica serves the
//! same one. The CA certificate is written out for clients to trust.

use agentid_directory::Store;
use agentid_directory::secrets::MasterKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pem(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(transparent)]
    Directory(#[from] agentid_directory::DirectoryError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot write CA certificate to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What the server presents, and the CA (if generated) that clients should trust.
pub struct TlsMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca_pem: Option<String>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn odt(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).expect("valid timestamp")
}

/// Loads a configured certificate chain and key (PEM files).
pub fn load_files(cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError::Pem(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| TlsError::Pem(format!("{}: {e}", key.display())))?;
    Ok(TlsMaterial {
        chain,
        key,
        ca_pem: None,
    })
}

/// The SANs the server certificate must carry.
fn wanted_sans(public_base_url: &str, extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(u) = url::Url::parse(public_base_url)
        && let Some(h) = u.host_str()
    {
        sans.push(h.trim_start_matches('[').trim_end_matches(']').to_string());
    }
    sans.extend(extra.iter().cloned());
    sans.sort();
    sans.dedup();
    sans
}

/// Loads or generates the local CA and server certificate, renewing the server certificate
/// when it has fewer than 30 days left or lacks a needed name.
pub async fn local_ca(
    store: &Store,
    master: &MasterKey,
    public_base_url: &str,
    extra_sans: &[String],
) -> Result<TlsMaterial, TlsError> {
    let t = now();
    let (ca_pem, ca_key) = match store.tls_material("ca").await? {
        Some((pem, key_enc, _)) => (
            pem,
            String::from_utf8(master.decrypt(&key_enc)?)
                .map_err(|e| TlsError::Pem(e.to_string()))?,
        ),
        None => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            let id = uuid::Uuid::new_v4().simple().to_string();
            p.distinguished_name.push(
                DnType::CommonName,
                format!("agentid local CA {}", &id[..12]),
            );
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p.not_before = odt(t - 3600);
            p.not_after = odt(t + 10 * 365 * 86400);
            let cert = p.self_signed(&key)?;
            let pem = cert.pem();
            store
                .put_tls_material(
                    "ca",
                    &pem,
                    &master.encrypt(key.serialize_pem().as_bytes()),
                    t + 10 * 365 * 86400,
                )
                .await?;
            (pem, key.serialize_pem())
        }
    };
    let sans = wanted_sans(public_base_url, extra_sans);
    let sans_key = sans.join(",");
    let existing = store.tls_material("server").await?;
    let reuse = match &existing {
        Some((pem, key_enc, not_after)) if *not_after - t > 30 * 86400 => {
            // The stored cert is reusable only if it was made for the same names.
            let names_ok = store
                .tls_material("server-sans")
                .await?
                .is_some_and(|(s, _, _)| s == sans_key);
            if names_ok {
                Some((
                    pem.clone(),
                    String::from_utf8(master.decrypt(key_enc)?)
                        .map_err(|e| TlsError::Pem(e.to_string()))?,
                ))
            } else {
                None
            }
        }
        _ => None,
    };
    let (server_pem, server_key) = match reuse {
        Some(x) => x,
        None => {
            let ca_kp = KeyPair::from_pem(&ca_key)?;
            let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem)?;
            let ca_cert = ca_params.self_signed(&ca_kp)?;
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut p = CertificateParams::new(sans.clone())?;
            p.distinguished_name.push(DnType::CommonName, "agentid STS");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.not_before = odt(t - 3600);
            p.not_after = odt(t + 365 * 86400);
            let cert = p.signed_by(&key, &ca_cert, &ca_kp)?;
            let pem = cert.pem();
            store
                .put_tls_material(
                    "server",
                    &pem,
                    &master.encrypt(key.serialize_pem().as_bytes()),
                    t + 365 * 86400,
                )
                .await?;
            store
                .put_tls_material("server-sans", &sans_key, "", 0)
                .await?;
            (pem, key.serialize_pem())
        }
    };
    let mut chain = CertificateDer::pem_slice_iter(server_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    chain.extend(
        CertificateDer::pem_slice_iter(ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(e.to_string()))?,
    );
    let key = PrivateKeyDer::from_pem_slice(server_key.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    Ok(TlsMaterial {
        chain,
        key,
        ca_pem: Some(ca_pem),
    })
}

/// Writes the CA certificate where clients look for it.
pub fn write_ca(path: &Path, pem: &str) -> Result<(), TlsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    std::fs::write(path, pem).map_err(|source| TlsError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// A rustls server config offering HTTP/2 and HTTP/1.1.
pub fn server_config(m: TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(m.chain, m.key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
