//! Client certificates for private_key_jwt tests, and assertions signed with them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::json;
use sha1::{Digest, Sha1};

pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-1 of the certificate DER, hex.
    pub thumbprint_hex: String,
    /// base64url (no padding) SHA-1 thumbprint, for `x5t`.
    pub x5t: String,
}

impl ClientCert {
    pub fn generate(cn: &str) -> Self {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key");
        let key_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PEM")
            .to_string();
        let kp = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
            .expect("key pair");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&kp).expect("certificate");
        let der = cert.der().to_vec();
        let sha = Sha1::digest(&der);
        Self {
            cert_pem: cert.pem(),
            key_pem,
            thumbprint_hex: agentid_claims::jwt::hex(&sha),
            x5t: URL_SAFE_NO_PAD.encode(sha),
        }
    }

    /// A client assertion as MSAL makes it (float `exp`/`iat`, `x5t` header).
    pub fn assertion(&self, client_id: &str, audience: &str, lifetime: i64, jti: &str) -> String {
        let now = chrono::Utc::now().timestamp() as f64 + 0.25;
        let claims = json!({"aud": audience, "iss": client_id, "sub": client_id, "exp": now + lifetime as f64, "iat": now, "jti": jti});
        self.sign(&claims)
    }

    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t = Some(self.x5t.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(self.key_pem.as_bytes()).expect("key"),
        )
        .expect("sign")
    }
}
