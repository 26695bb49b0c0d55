//! The local workload issuer: plays the cluster's service-account issuer for `agentid up`. Its
//! RSA key lives in the state directory, its public keys are registered in the demo tenant as a
//! stored JWKS (never fetched), and the token it writes is what the sidecar presents as its
//! federated credential — exactly the Kubernetes projected-token arrangement, on a laptop.

use anyhow::Context;
use base64::Engine;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use std::path::{Path, PathBuf};

pub const ISSUER: &str = "https://workload.agentid.local";
pub const SUBJECT: &str = "system:serviceaccount:agentid-demo:demo-agent";
pub const AUDIENCE: &str = "api://AzureADTokenExchange";
/// Tokens live an hour and are re-minted every half hour, like kubelet's projected tokens.
pub const LIFETIME_SECS: i64 = 3600;

pub struct WorkloadIssuer {
    key: rsa::RsaPrivateKey,
    kid: String,
    pub token_path: PathBuf,
    pub jwks_path: PathBuf,
}

impl WorkloadIssuer {
    /// Loads `workload-key.pem` from `dir`, creating it on first start.
    pub fn open(dir: &Path) -> anyhow::Result<WorkloadIssuer> {
        let key_path = dir.join("workload-key.pem");
        let key = if key_path.exists() {
            let pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
                .with_context(|| format!("{} is not a PKCS#8 RSA key", key_path.display()))?
        } else {
            let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
            let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)?;
            agentid_directory::secrets::write_private_file(&key_path, pem.as_bytes())?;
            key
        };
        // kube-apiserver's kid: base64url(SHA-256(DER SubjectPublicKeyInfo)).
        let spki = key.to_public_key().to_public_key_der()?;
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(spki.as_bytes()));
        let issuer = WorkloadIssuer {
            key,
            kid,
            token_path: dir.join("workload-token"),
            jwks_path: dir.join("workload-jwks.json"),
        };
        std::fs::write(&issuer.jwks_path, issuer.jwks().to_string())?;
        Ok(issuer)
    }

    pub fn jwks(&self) -> serde_json::Value {
        let public = self.key.to_public_key();
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        serde_json::json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be()),
        }]})
    }

    /// A service-account token shaped as kube-apiserver mints it.
    pub fn mint(&self) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "aud": [AUDIENCE],
            "exp": now + LIFETIME_SECS,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": SUBJECT,
            "kubernetes.io": {
                "namespace": "agentid-demo",
                "serviceaccount": {"name": "demo-agent", "uid": "5a3c7f0e-2b1d-4e8f-9a6b-1c2d3e4f5a6b"},
            },
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let der = self.key.to_pkcs8_der()?;
        let key = jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes());
        // jsonwebtoken wants PKCS#1 DER for from_rsa_der.
        let key = match rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&self.key) {
            Ok(pkcs1) => jsonwebtoken::EncodingKey::from_rsa_der(pkcs1.as_bytes()),
            Err(_) => key,
        };
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    }

    /// Writes a fresh token where the sidecar reads it (atomically, like kubelet).
    pub fn write_token(&self) -> anyhow::Result<()> {
        let token = self.mint()?;
        let tmp = self.token_path.with_extension("tmp");
        agentid_directory::secrets::write_private_file(&tmp, token.as_bytes())?;
        std::fs::rename(&tmp, &self.token_path)?;
        Ok(())
    }
}
