//! Verification keys and the algorithms they can verify.
//!
//! The crypto library is only ever called with an algorithm that fits the key it is given
//! ([`Alg::fits`]): RSA keys for `RS*`/`PS*`, P-256 for `ES256`, P-384 for `ES384`. `none`,
//! HMAC and anything else are not algorithms here at all, so no public key can ever be used as
//! an HMAC secret, and no mismatched pair can reach jsonwebtoken (where some pairs panic).

use crate::jwk::{Jwk, JwkSet};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::Arc;

/// RSA keys shorter than this are never used (RFC 8725 §3.5; ring refuses them as well).
pub const MIN_RSA_BITS: usize = 2048;
/// The most keys one key set may hold; more is not a key set anyone publishes.
pub const MAX_KEYS: usize = 100;
/// The longest `kid` kept; longer ones are skipped in key sets and never match in tokens.
pub const MAX_KID_CHARS: usize = 256;

/// The asymmetric JWS algorithms agentid verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
}

impl Alg {
    pub const ALL: [Alg; 8] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
    ];

    /// The algorithm a JOSE `alg` names; `None` for `none`, HMAC, EdDSA and everything else.
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
        }
    }

    pub(crate) fn jsonwebtoken(self) -> Algorithm {
        match self {
            Alg::RS256 => Algorithm::RS256,
            Alg::RS384 => Algorithm::RS384,
            Alg::RS512 => Algorithm::RS512,
            Alg::PS256 => Algorithm::PS256,
            Alg::PS384 => Algorithm::PS384,
            Alg::PS512 => Algorithm::PS512,
            Alg::ES256 => Algorithm::ES256,
            Alg::ES384 => Algorithm::ES384,
        }
    }

    /// Whether a key of `kind` can verify this algorithm.
    pub fn fits(self, kind: KeyKind) -> bool {
        match (self, kind) {
            (
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512,
                KeyKind::Rsa { bits },
            ) => bits >= MIN_RSA_BITS,
            (Alg::ES256, KeyKind::Ec(Curve::P256)) => true,
            (Alg::ES384, KeyKind::Ec(Curve::P384)) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Rsa { bits: usize },
    Ec(Curve),
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported key type '{0}'")]
    UnsupportedType(String),
    #[error("the key material is invalid: {0}")]
    Invalid(&'static str),
}

/// A public key ready to verify signatures, with what it may verify.
pub struct VerificationKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<String>,
    /// The JWK's `use`, when given (`sig` or `enc`).
    pub use_: Option<String>,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(v: &str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map_err(|_| KeyError::Invalid("a component is not base64url"))
}

fn significant_bits(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        None => 0,
        Some(first) => {
            let rest = &n[first..];
            (rest.len() - 1) * 8 + (8 - rest[0].leading_zeros() as usize)
        }
    }
}

impl VerificationKey {
    /// An RSA key from its big-endian modulus and exponent (leading zero bytes, as DER
    /// integers carry them, are dropped: the crypto library wants minimal encodings).
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<VerificationKey, KeyError> {
        let minimal = |v: &[u8]| -> Vec<u8> {
            let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
            v[first..].to_vec()
        };
        let (n, e) = (&minimal(n)[..], &minimal(e)[..]);
        let bits = significant_bits(n);
        if bits == 0 || significant_bits(e) == 0 || n.len() > 2048 || e.len() > 16 {
            return Err(KeyError::Invalid("RSA modulus or exponent out of range"));
        }
        Ok(VerificationKey {
            kid: None,
            kind: KeyKind::Rsa { bits },
            alg: None,
            use_: None,
            key: DecodingKey::from_rsa_raw_components(n, e),
        })
    }

    /// An EC key from its uncompressed point (`0x04 ‖ x ‖ y`).
    pub fn ec_point(curve: Curve, point: &[u8]) -> Result<VerificationKey, KeyError> {
        let len = curve.coordinate_len();
        if point.len() != 1 + 2 * len || point.first() != Some(&0x04) {
            return Err(KeyError::Invalid("not an uncompressed point of the curve"));
        }
        Ok(VerificationKey {
            kid: None,
            kind: KeyKind::Ec(curve),
            alg: None,
            use_: None,
            key: DecodingKey::from_ec_der(point),
        })
    }

    /// The key of a JWK (RSA, or EC on P-256/P-384), keeping its `kid`, `alg` and `use`.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerificationKey, KeyError> {
        let mut key = match jwk.kty.as_str() {
            "RSA" => {
                let (Some(n), Some(e)) = (jwk.n.as_deref(), jwk.e.as_deref()) else {
                    return Err(KeyError::Invalid("RSA key without n and e"));
                };
                VerificationKey::rsa(&b64(n)?, &b64(e)?)?
            }
            "EC" => {
                let curve = match jwk.crv.as_deref() {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    other => {
                        return Err(KeyError::UnsupportedType(format!(
                            "EC {}",
                            other.unwrap_or("without crv")
                        )));
                    }
                };
                let (Some(x), Some(y)) = (jwk.x.as_deref(), jwk.y.as_deref()) else {
                    return Err(KeyError::Invalid("EC key without x and y"));
                };
                let (x, y) = (b64(x)?, b64(y)?);
                let len = curve.coordinate_len();
                if x.len() != len || y.len() != len {
                    return Err(KeyError::Invalid("EC coordinates of the wrong length"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                VerificationKey::ec_point(curve, &point)?
            }
            other => return Err(KeyError::UnsupportedType(other.chars().take(16).collect())),
        };
        key.kid = jwk.kid.clone();
        key.alg = jwk.alg.clone();
        key.use_ = jwk.use_.clone();
        Ok(key)
    }

    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Whether this key may verify `alg`: the key type fits, and the JWK's own `alg` and
    /// `use`, when given, agree.
    pub fn accepts(&self, alg: Alg) -> bool {
        alg.fits(self.kind)
            && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
            && self.use_.as_deref().is_none_or(|u| u == "sig")
    }

    /// Checks `signature` over `message`. Only called after [`Self::accepts`].
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &str) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        matches!(
            jsonwebtoken::crypto::verify(signature, message, &self.key, alg.jsonwebtoken()),
            Ok(true)
        )
    }
}

/// A parsed key set: usable keys by `kid`, plus the keys without one (static sets may have them).
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerificationKey>>,
    without_kid: Vec<Arc<VerificationKey>>,
    /// Issuers the key source vouches for (from discovery documents); empty otherwise.
    pub issuers: Vec<String>,
}

/// Why a key set document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no \"keys\" array")]
    NoKeys,
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("no usable key (RSA of 2048 bits or more, or EC P-256/P-384)")]
    NoUsableKey,
}

impl KeySet {
    /// Parses `{"keys":[…]}`, skipping (with a warning) keys without a usable `kid` when
    /// `require_kid`, keys for encryption, and keys of unsupported types. No usable key is an
    /// error.
    pub fn parse(
        bytes: &[u8],
        source_name: &str,
        require_kid: bool,
    ) -> Result<KeySet, KeySetError> {
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| KeySetError::NotJson(e.to_string()))?;
        let list = doc
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or(KeySetError::NoKeys)?;
        if list.len() > MAX_KEYS {
            return Err(KeySetError::TooManyKeys);
        }
        let mut set = KeySet::default();
        for (i, raw) in list.iter().enumerate() {
            let skip = |why: &str| tracing::warn!(jwks = %source_name, index = i, "JWKS key skipped: {why}");
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                skip("not a JWK");
                continue;
            };
            let kid = jwk
                .kid
                .clone()
                .filter(|k| !k.is_empty() && k.chars().count() <= MAX_KID_CHARS);
            if require_kid && kid.is_none() {
                skip("no kid");
                continue;
            }
            if jwk.use_.as_deref() == Some("enc") {
                skip("use is enc");
                continue;
            }
            match VerificationKey::from_jwk(&jwk) {
                // Short RSA keys are kept: a token naming one is refused as "this key cannot
                // verify", which says more than "unknown kid" (see Alg::fits).
                Ok(key) => set.insert(kid, key),
                Err(e) => skip(&e.to_string()),
            }
        }
        if set.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(set)
    }

    /// A key set of JWKs already deserialised (stored key sets), skipping unusable keys.
    pub fn from_jwks(jwks: &JwkSet) -> KeySet {
        let mut set = KeySet::default();
        for jwk in jwks.keys.iter().take(MAX_KEYS) {
            if jwk.use_.as_deref() == Some("enc") {
                continue;
            }
            if let Ok(key) = VerificationKey::from_jwk(jwk) {
                set.insert(jwk.kid.clone(), key);
            }
        }
        set
    }

    /// A key set of keys built by the caller (certificates, the STS's own keys).
    pub fn from_keys(keys: impl IntoIterator<Item = VerificationKey>) -> KeySet {
        let mut set = KeySet::default();
        for key in keys {
            set.insert(key.kid.clone(), key);
        }
        set
    }

    fn insert(&mut self, kid: Option<String>, key: VerificationKey) {
        let key = Arc::new(key);
        match kid {
            Some(kid) => {
                self.by_kid.insert(kid, key);
            }
            None => self.without_kid.push(key),
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The keys to try for a token: the one its `kid` names, or every key when it names none.
    pub fn candidates(&self, kid: Option<&str>) -> Vec<Arc<VerificationKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned().into_iter().collect(),
            None => self
                .by_kid
                .values()
                .chain(self.without_kid.iter())
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_fit_only_their_key_types() {
        let rsa = KeyKind::Rsa { bits: 2048 };
        let weak = KeyKind::Rsa { bits: 1024 };
        for a in [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
        ] {
            assert!(a.fits(rsa) && !a.fits(weak));
            assert!(!a.fits(KeyKind::Ec(Curve::P256)) && !a.fits(KeyKind::Ec(Curve::P384)));
        }
        assert!(Alg::ES256.fits(KeyKind::Ec(Curve::P256)));
        assert!(!Alg::ES256.fits(KeyKind::Ec(Curve::P384)) && !Alg::ES256.fits(rsa));
        assert!(Alg::ES384.fits(KeyKind::Ec(Curve::P384)));
        assert!(!Alg::ES384.fits(KeyKind::Ec(Curve::P256)) && !Alg::ES384.fits(rsa));
        for name in [
            "none", "None", "HS256", "HS384", "HS512", "EdDSA", "rs256", "", "ES512",
        ] {
            assert_eq!(Alg::parse(name), None, "{name}");
        }
    }

    #[test]
    fn rsa_modulus_bits() {
        assert_eq!(significant_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(significant_bits(&[0x01; 256]), 2041);
        assert_eq!(significant_bits(&[0, 0]), 0);
    }

    #[test]
    fn key_sets_skip_unusable_keys() {
        let doc = br#"{"keys":[{"kty":"oct","kid":"a","k":"x"},{"kty":"EC","crv":"P-256","use":"enc","kid":"b","x":"x","y":"y"}]}"#;
        assert_eq!(
            KeySet::parse(doc, "t", true).unwrap_err(),
            KeySetError::NoUsableKey
        );
        assert_eq!(
            KeySet::parse(b"[]", "t", true).unwrap_err(),
            KeySetError::NoKeys
        );
        assert!(matches!(
            KeySet::parse(b"nope", "t", true),
            Err(KeySetError::NotJson(_))
        ));
        let many = format!(r#"{{"keys":[{}]}}"#, vec!["{}"; MAX_KEYS + 1].join(","));
        assert_eq!(
            KeySet::parse(many.as_bytes(), "t", true).unwrap_err(),
            KeySetError::TooManyKeys
        );
    }

    #[test]
    fn ec_points_must_fit_their_curve() {
        assert!(VerificationKey::ec_point(Curve::P256, &[4; 65]).is_ok());
        assert!(VerificationKey::ec_point(Curve::P256, &[4; 97]).is_err());
        assert!(VerificationKey::ec_point(Curve::P384, &[4; 97]).is_ok());
        assert!(VerificationKey::ec_point(Curve::P384, &[2; 97]).is_err());
    }
}
