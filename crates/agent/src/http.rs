//! HTTP clients with the configured CA added to (not replacing) the default roots.

use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read the CA file {path}: {source}")]
    ReadCa {
        path: String,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no usable PEM certificate: {message}")]
    BadCa { path: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// Installs ring as the process's rustls provider (rmcp's reqwest is built without one).
pub fn install_crypto_provider() {
    // Err means one is installed already, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read_ca(ca: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(ca).map_err(|source| HttpError::ReadCa {
        path: ca.display().to_string(),
        source,
    })
}

/// The client for the authority, the sidecar and the LLM.
pub fn client(ca: Option<&Path>) -> Result<reqwest::Client, HttpError> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10))
        // Token endpoints must not be redirected elsewhere with our credentials.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let pem = read_ca(ca)?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpError::BadCa {
            path: ca.display().to_string(),
            message: e.to_string(),
        })? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| HttpError::Build(e.to_string()))
}

/// The client rmcp's streamable HTTP transport runs on (reqwest 0.13).
pub fn mcp_client(ca: Option<&Path>) -> Result<reqwest013::Client, HttpError> {
    install_crypto_provider();
    let mut b = reqwest013::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = read_ca(ca)?;
        for cert in
            reqwest013::Certificate::from_pem_bundle(&pem).map_err(|e| HttpError::BadCa {
                path: ca.display().to_string(),
                message: e.to_string(),
            })?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| HttpError::Build(e.to_string()))
}
