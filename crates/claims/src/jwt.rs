//! Presented JWTs: parsed once into an [`UnverifiedJwt`], then verified with a key.
//!
//! Parsing is deliberately tolerant where Microsoft clients are: numeric dates may be floats
//! (MSAL Python sends them), `aud` may be a string or an array.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the token is not a JWT: {0}")]
    Malformed(&'static str),
}

/// The longest token parsed: far beyond any real one (Entra's largest are ~10 KiB), small
/// enough that a hostile one costs little.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// A JWT whose structure has been parsed but whose signature has not been checked.
#[derive(Clone)]
pub struct UnverifiedJwt {
    raw: String,
    signing_input_len: usize,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

impl std::fmt::Debug for UnverifiedJwt {
    // Never print the token itself: only what identifies it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedJwt")
            .field("id", &self.log_id())
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

fn decode_part(part: &str) -> Result<Map<String, Value>, JwtError> {
    // Some producers pad; the spec says they must not, but being lenient costs nothing.
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed("a part is not base64url"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed("a part is not a JSON object")),
    }
}

impl UnverifiedJwt {
    pub fn parse(raw: &str) -> Result<Self, JwtError> {
        if raw.trim().len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed("longer than 64 KiB"));
        }
        Self::parse_document(raw, MAX_TOKEN_BYTES)
    }

    /// [`Self::parse`] for signed documents larger than a token (the revocation feed), at most
    /// `max_bytes`.
    pub fn parse_document(raw: &str, max_bytes: usize) -> Result<Self, JwtError> {
        let raw = raw.trim();
        if raw.len() > max_bytes {
            return Err(JwtError::Malformed("longer than the limit"));
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(c), Some(_s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("expected three dot-separated parts"));
        };
        let header = decode_part(h)?;
        let claims = decode_part(c)?;
        Ok(Self {
            raw: raw.to_string(),
            signing_input_len: h.len() + 1 + c.len(),
            header,
            claims,
        })
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// How a token is named in logs and audit events: its `uti`, else its `jti`, else a short hash.
    pub fn log_id(&self) -> String {
        if let Some(v) = self.str_claim("uti").or_else(|| self.str_claim("jti")) {
            return v.to_string();
        }
        short_hash(&self.raw)
    }

    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim as whole seconds; floats are truncated toward zero.
    pub fn time_claim(&self, name: &str) -> Option<i64> {
        numeric_date(self.claims.get(name)?)
    }

    /// `aud` as a list, whether it was sent as a string or an array.
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        }
    }

    /// The signed bytes (`header.payload`) and the base64url signature.
    pub fn signing_input(&self) -> (&[u8], &str) {
        let raw = self.raw.as_bytes();
        let message = raw.get(..self.signing_input_len).unwrap_or(raw);
        let signature = self.raw.get(self.signing_input_len + 1..).unwrap_or("");
        (message, signature)
    }

    /// SHA-256 of the whole token, hex: what replay caches store instead of the token.
    pub fn sha256_hex(&self) -> String {
        hex(&Sha256::digest(self.raw.as_bytes()))
    }
}

pub fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.trunc() as i64)
        }),
        _ => None,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 12 hex characters of SHA-256: how an opaque secret or token may appear in logs.
pub fn short_hash(s: &str) -> String {
    let mut h = hex(&Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn parses_float_dates_and_array_audience() {
        let t = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"exp":1764180000.75,"aud":["a","b"]}"#)
        );
        let j = UnverifiedJwt::parse(&t).unwrap();
        assert_eq!(j.time_claim("exp"), Some(1764180000));
        assert_eq!(j.audiences(), vec!["a", "b"]);
    }

    #[test]
    fn rejects_garbage_and_keeps_the_signing_input() {
        assert!(UnverifiedJwt::parse("abc").is_err());
        assert!(UnverifiedJwt::parse("a.b.c.d").is_err());
        assert!(UnverifiedJwt::parse(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
        let t = format!("{}.{}.sig", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"x"}"#));
        let j = UnverifiedJwt::parse(&t).unwrap();
        let (message, signature) = j.signing_input();
        assert_eq!(message, &t.as_bytes()[..t.len() - 4]);
        assert_eq!(signature, "sig");
    }
}
