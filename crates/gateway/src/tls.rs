//! TLS for listeners (server certs) and upstreams (system roots plus private CAs, optional
//! client certificates, and the explicitly insecure modes of `backendTLS`).

use crate::config::model::TlsPolicy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key")]
    NoKey { path: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey {
            path: path.display().to_string(),
        })
}

pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(read_certs(cert)?, read_key(key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// System roots (honouring `SSL_CERT_FILE`), webpki roots when the system has none, plus every
/// private CA given: private CAs are added to, never replace, the public roots.
pub fn root_store(extra: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for path in extra {
        for cert in read_certs(path)? {
            roots.add(cert)?;
        }
    }
    Ok(roots)
}

pub fn client_config(
    policy: Option<&TlsPolicy>,
    extra_roots: &[PathBuf],
) -> Result<rustls::ClientConfig, TlsError> {
    let mut extra: Vec<PathBuf> = extra_roots.to_vec();
    if let Some(root) = policy.and_then(|p| p.root.clone()) {
        extra.push(root);
    }
    let roots = Arc::new(root_store(&extra)?);
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let insecure = policy.is_some_and(|p| p.insecure);
    let insecure_host = policy.is_some_and(|p| p.insecure_host);
    let verify_as = match policy.and_then(|p| p.hostname.as_deref()) {
        Some(h) => Some(
            ServerName::try_from(h.to_string())
                .map_err(|_| rustls::Error::General(format!("{h:?} is not a TLS server name")))?,
        ),
        None => None,
    };
    let builder = if insecure || insecure_host || verify_as.is_some() {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Adjusted {
                inner,
                skip_chain: insecure,
                skip_name: insecure_host,
                verify_as,
            }))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match policy.and_then(|p| p.cert.clone().zip(p.key.clone())) {
        Some((cert, key)) => builder.with_client_auth_cert(read_certs(&cert)?, read_key(&key)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `backendTLS` beyond plain verification: `insecure` skips chain verification,
/// `insecureHost` skips only the name check, `hostname` is the name the certificate must carry
/// instead of the dialled host's.
#[derive(Debug)]
struct Adjusted {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    skip_chain: bool,
    skip_name: bool,
    verify_as: Option<ServerName<'static>>,
}

impl ServerCertVerifier for Adjusted {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.skip_chain {
            return Ok(ServerCertVerified::assertion());
        }
        let name = self.verify_as.as_ref().unwrap_or(server_name);
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) if self.skip_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
