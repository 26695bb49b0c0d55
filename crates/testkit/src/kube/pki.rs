//! The bed's own PKI: a CA, the API server's serving certificate, an admin client certificate
//! (group `system:masters`) and RSA service-account signing keys.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("RSA key: {0}")]
    Rsa(String),
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The common name and group of the admin client certificate.
pub const ADMIN_USER: &str = "agentid-test-admin";
pub const ADMIN_GROUP: &str = "system:masters";

pub struct Pki {
    pub ca: Identity,
    pub serving: Identity,
    pub admin: Identity,
}

impl Pki {
    pub fn generate() -> Result<Pki, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "agentid kube test bed CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;

        // The names a client inside a cluster would use, and loopback for the tests.
        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &ca_cert, &ca_key)?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, ADMIN_USER);
        admin
            .distinguished_name
            .push(DnType::OrganizationName, ADMIN_GROUP);
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &ca_cert, &ca_key)?;

        Ok(Pki {
            ca: Identity {
                cert_pem: ca_cert.pem(),
                key_pem: ca_key.serialize_pem(),
            },
            serving: Identity {
                cert_pem: serving_cert.pem(),
                key_pem: serving_key.serialize_pem(),
            },
            admin: Identity {
                cert_pem: admin_cert.pem(),
                key_pem: admin_key.serialize_pem(),
            },
        })
    }
}

/// A service-account signing key: PKCS#8 private key and SPKI public key, PEM.
pub struct SigningKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey, PkiError> {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| PkiError::Rsa(e.to_string()))?;
        let private_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| PkiError::Rsa(e.to_string()))?
            .to_string();
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| PkiError::Rsa(e.to_string()))?;
        Ok(SigningKey {
            private_pem,
            public_pem,
        })
    }
}
