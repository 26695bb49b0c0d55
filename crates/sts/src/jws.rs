//! Compact JWS signing of the tokens the STS issues (docs/sts.md §5). RS256 goes straight to
//! aws-lc-rs: on this project's reference machine it signs about 2.2× as fast as ring (which is
//! what jsonwebtoken uses), at the rate of `openssl speed rsa2048`, and the signature is the
//! whole cost of a token (docs/performance.md §2). ES256 (opt-in per resource) stays on
//! jsonwebtoken. The header and claims are serialised exactly as jsonwebtoken does
//! (`serde_json::to_vec`, base64url without padding), and RSASSA-PKCS1-v1_5 is deterministic,
//! so the bytes of a token do not depend on which library signed it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// A private key that signs tokens, held in the form its signer wants.
pub enum TokenSigningKey {
    Rs256(aws_lc_rs::signature::RsaKeyPair),
    Es256(EncodingKey),
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the header names {header:?} but the key signs {key}")]
    AlgorithmMismatch {
        header: Algorithm,
        key: &'static str,
    },
    #[error("cannot serialise the token: {0}")]
    Json(#[from] serde_json::Error),
    #[error("RSA signing failed")]
    Rsa,
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

impl TokenSigningKey {
    /// An RSA key from its PKCS#8 DER form (how keys are stored, docs/sts.md §13).
    pub fn rs256_from_pkcs8(der: &[u8]) -> Result<Self, String> {
        aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der)
            .map(TokenSigningKey::Rs256)
            .map_err(|e| e.to_string())
    }

    fn algorithm(&self) -> (Algorithm, &'static str) {
        match self {
            TokenSigningKey::Rs256(_) => (Algorithm::RS256, "RS256"),
            TokenSigningKey::Es256(_) => (Algorithm::ES256, "ES256"),
        }
    }

    /// `base64url(header) . base64url(claims) . base64url(signature)`.
    pub fn sign(&self, header: &Header, claims: &impl Serialize) -> Result<String, SignError> {
        let (alg, name) = self.algorithm();
        if header.alg != alg {
            return Err(SignError::AlgorithmMismatch {
                header: header.alg,
                key: name,
            });
        }
        match self {
            TokenSigningKey::Es256(key) => Ok(jsonwebtoken::encode(header, claims, key)?),
            TokenSigningKey::Rs256(key) => {
                let mut jwt = String::with_capacity(1024);
                URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(header)?, &mut jwt);
                jwt.push('.');
                URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut jwt);
                let mut signature = vec![0u8; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    jwt.as_bytes(),
                    &mut signature,
                )
                .map_err(|_| SignError::Rsa)?;
                jwt.push('.');
                URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
                Ok(jwt)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    use serde_json::json;

    /// Same bytes as jsonwebtoken's (ring's) RS256 token: only the signer changed.
    #[test]
    fn rs256_tokens_are_byte_identical_to_jsonwebtoken() {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let ours =
            TokenSigningKey::rs256_from_pkcs8(private.to_pkcs8_der().unwrap().as_bytes()).unwrap();
        let theirs = EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some("k1".into());
        header.x5t = Some("k1".into());
        let claims = json!({"aud": "api://x", "iat": 1, "scp": "a b", "roles": ["r"], "u": "é"});
        assert_eq!(
            ours.sign(&header, &claims).unwrap(),
            jsonwebtoken::encode(&header, &claims, &theirs).unwrap()
        );
    }

    #[test]
    fn a_header_naming_another_algorithm_is_refused() {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let key =
            TokenSigningKey::rs256_from_pkcs8(private.to_pkcs8_der().unwrap().as_bytes()).unwrap();
        let header = Header::new(Algorithm::ES256);
        assert!(matches!(
            key.sign(&header, &json!({})),
            Err(SignError::AlgorithmMismatch { .. })
        ));
    }
}
