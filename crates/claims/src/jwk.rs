//! JSON Web Keys, as published in a JWKS and as stored for trusted issuers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl Jwk {
    /// The raw jsonwebtoken key, for callers that hold their own keys (the STS's key ring).
    /// Verifiers use [`crate::verify::VerificationKey::from_jwk`], which also knows what the
    /// key may verify.
    #[cfg(feature = "verify")]
    pub fn decoding_key(&self) -> Option<jsonwebtoken::DecodingKey> {
        use jsonwebtoken::DecodingKey;
        match self.kty.as_str() {
            "RSA" => DecodingKey::from_rsa_components(self.n.as_deref()?, self.e.as_deref()?).ok(),
            "EC" if self.crv.as_deref() == Some("P-256") => {
                DecodingKey::from_ec_components(self.x.as_deref()?, self.y.as_deref()?).ok()
            }
            _ => None,
        }
    }
}

impl JwkSet {
    /// Keys to try for a token: the one with a matching `kid`, or every key when the token has none.
    pub fn candidates<'a>(&'a self, kid: Option<&'a str>) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            None => true,
        })
    }
}
