//! private_key_jwt with a certificate from PEM files (docs/sidecar.md §9.3, SourceType `Path`):
//! a fresh assertion per request, signed RS256 (or ES256 for a P-256 key), with `x5t` and
//! `x5t#S256` (and `x5c` when `AzureAd__SendX5C=true`). The files are re-read when their
//! modification time changes, checked at most every 60 s, so cert-manager rotation is seen.

use crate::clock::SharedClock;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pemfile::Item;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

const MTIME_CHECK_INTERVAL: i64 = 60;
const ASSERTION_LIFETIME: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read {0} ({1})")]
    Unreadable(String, String),
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    #[error("no unencrypted private key (PKCS#8, PKCS#1 or SEC1) in {0}")]
    NoKey(String),
    #[error("the private key in {0} cannot be used ({1})")]
    BadKey(String, String),
}

struct Material {
    key: EncodingKey,
    alg: Algorithm,
    x5t: String,
    x5t_s256: String,
    x5c: Vec<String>,
}

struct Loaded {
    material: Arc<Material>,
    mtimes: (Option<SystemTime>, Option<SystemTime>),
    checked_at: i64,
}

pub struct CertificateCredential {
    cert_path: PathBuf,
    key_path: Option<PathBuf>,
    client_id: String,
    send_x5c: bool,
    clock: SharedClock,
    loaded: std::sync::Mutex<Option<Loaded>>,
}

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Wraps a SEC1 `ECPrivateKey` (P-256) into PKCS#8, which the signer expects.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    fn len(n: usize) -> Vec<u8> {
        if n < 0x80 {
            vec![n as u8]
        } else if n < 0x100 {
            vec![0x81, n as u8]
        } else {
            vec![0x82, (n >> 8) as u8, n as u8]
        }
    }
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend(len(content.len()));
        v.extend_from_slice(content);
        v
    }
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    let alg_id: [u8; 21] = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&alg_id);
    body.extend(tlv(0x04, sec1));
    tlv(0x30, &body)
}

const RSA_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn load(cert_path: &PathBuf, key_path: Option<&PathBuf>) -> Result<Material, CertificateError> {
    let shown = |p: &PathBuf| p.display().to_string();
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| CertificateError::Unreadable(shown(p), e.kind().to_string()))
    };
    let cert_pem = read(cert_path)?;
    let key_pem = match key_path {
        Some(k) => read(k)?,
        None => cert_pem.clone(),
    };
    let items = |pem: &[u8]| -> Vec<Item> {
        rustls_pemfile::read_all(&mut &pem[..])
            .filter_map(Result::ok)
            .collect()
    };
    let certs: Vec<Vec<u8>> = items(&cert_pem)
        .into_iter()
        .filter_map(|i| match i {
            Item::X509Certificate(c) => Some(c.as_ref().to_vec()),
            _ => None,
        })
        .collect();
    let leaf = certs
        .first()
        .ok_or_else(|| CertificateError::NoCertificate(shown(cert_path)))?;
    let key_file = key_path.unwrap_or(cert_path);
    let bad =
        |e: jsonwebtoken::errors::Error| CertificateError::BadKey(shown(key_file), e.to_string());
    let (key, alg) = items(&key_pem)
        .into_iter()
        .find_map(|i| match i {
            Item::Pkcs1Key(k) => Some(Ok((
                EncodingKey::from_rsa_der(k.secret_pkcs1_der()),
                Algorithm::RS256,
            ))),
            Item::Pkcs8Key(k) => {
                let der = k.secret_pkcs8_der();
                let is_rsa = der.windows(RSA_OID.len()).take(32).any(|w| w == RSA_OID);
                Some(if is_rsa {
                    EncodingKey::from_rsa_pem(pem_block("PRIVATE KEY", der).as_bytes())
                        .map(|k| (k, Algorithm::RS256))
                        .map_err(bad)
                } else {
                    Ok((EncodingKey::from_ec_der(der), Algorithm::ES256))
                })
            }
            Item::Sec1Key(k) => Some(Ok((
                EncodingKey::from_ec_der(&sec1_to_pkcs8(k.secret_sec1_der())),
                Algorithm::ES256,
            ))),
            _ => None,
        })
        .ok_or_else(|| CertificateError::NoKey(shown(key_file)))??;
    Ok(Material {
        key,
        alg,
        x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(leaf)),
        x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(leaf)),
        x5c: certs.iter().map(|c| STANDARD.encode(c)).collect(),
    })
}

impl CertificateCredential {
    pub fn new(
        cert_path: PathBuf,
        key_path: Option<PathBuf>,
        client_id: &str,
        send_x5c: bool,
        clock: SharedClock,
    ) -> Self {
        Self {
            cert_path,
            key_path,
            client_id: client_id.to_string(),
            send_x5c,
            clock,
            loaded: std::sync::Mutex::new(None),
        }
    }

    fn material(&self) -> Result<Arc<Material>, CertificateError> {
        let now = self.clock.now();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = loaded.as_mut() {
            if now < l.checked_at + MTIME_CHECK_INTERVAL {
                return Ok(l.material.clone());
            }
            let mtimes = (
                mtime(&self.cert_path),
                self.key_path.as_ref().and_then(mtime),
            );
            if mtimes == l.mtimes {
                l.checked_at = now;
                return Ok(l.material.clone());
            }
        }
        let mtimes = (
            mtime(&self.cert_path),
            self.key_path.as_ref().and_then(mtime),
        );
        let material = Arc::new(load(&self.cert_path, self.key_path.as_ref())?);
        *loaded = Some(Loaded {
            material: material.clone(),
            mtimes,
            checked_at: now,
        });
        Ok(material)
    }

    /// A signed client assertion for the token endpoint `audience`.
    pub fn assertion(&self, audience: &str) -> Result<String, CertificateError> {
        let m = self.material()?;
        let now = self.clock.now();
        let mut header = Header::new(m.alg);
        header.x5t = Some(m.x5t.clone());
        header.x5t_s256 = Some(m.x5t_s256.clone());
        if self.send_x5c {
            header.x5c = Some(m.x5c.clone());
        }
        let claims = serde_json::json!({
            "aud": audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        jsonwebtoken::encode(&header, &claims, &m.key).map_err(|e| {
            CertificateError::BadKey(self.cert_path.display().to_string(), e.to_string())
        })
    }
}
