//! Secrets at rest: hashes for what is only ever compared, AES-256-GCM under the master key for
//! what must be used again (signing and TLS private keys).

use crate::error::{DirectoryError, Result};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::{Rng, RngCore, rngs::OsRng};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The 32-byte key that encrypts private keys in the database. Never printed.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_base64(s: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|e| DirectoryError::MasterKey(format!("not base64: {e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| DirectoryError::MasterKey("must be exactly 32 bytes".into()))?;
        Ok(Self(arr))
    }

    /// The key as stored in a key file or `AGENTID_MASTER_KEY` (for provisioning replicas).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// `AGENTID_MASTER_KEY` if set, else the key file, created (mode 0600) if it does not exist
    /// and `create` is true.
    pub fn load(env_value: Option<&str>, file: &Path, create: bool) -> Result<Self> {
        if let Some(v) = env_value {
            return Self::from_base64(v);
        }
        match std::fs::read_to_string(file) {
            Ok(s) => Self::from_base64(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = Self::generate();
                write_private_file(file, STANDARD.encode(key.0).as_bytes()).map_err(|e| {
                    DirectoryError::MasterKey(format!("cannot write {}: {e}", file.display()))
                })?;
                Ok(key)
            }
            Err(e) => Err(DirectoryError::MasterKey(format!(
                "cannot read {}: {e}",
                file.display()
            ))),
        }
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.0).expect("32-byte key");
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        STANDARD.encode(out)
    }

    pub fn decrypt(&self, stored: &str) -> Result<Vec<u8>> {
        let raw = STANDARD
            .decode(stored)
            .map_err(|e| DirectoryError::corrupt("encrypted key", e))?;
        if raw.len() < 12 {
            return Err(DirectoryError::corrupt("encrypted key", "too short"));
        }
        let cipher = Aes256Gcm::new_from_slice(&self.0).expect("32-byte key");
        cipher
            .decrypt(Nonce::from_slice(&raw[..12]), &raw[12..])
            .map_err(|_| {
                DirectoryError::MasterKey(
                    "cannot decrypt stored private key: wrong master key?".into(),
                )
            })
    }
}

/// Writes a file readable only by its owner.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents)
}

pub fn sha256_hex(s: &str) -> String {
    agentid_claims::jwt::hex(&Sha256::digest(s.as_bytes()))
}

/// Constant-time string equality, for comparing hashes of secrets.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn argon2() -> Argon2<'static> {
    // sts.md §13: Argon2id, m = 19456 KiB, t = 2, p = 1.
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19456, 2, 1, None).expect("valid params"),
    )
}

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing")
        .to_string()
}

/// Verifies a password against a stored PHC string; a malformed hash verifies nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

pub fn is_valid_password_hash(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| h.algorithm.as_str() == "argon2id")
}

/// An opaque token (refresh tokens, codes): base64url of 32 random bytes.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// 32 random bytes, base64: per-tenant internal secrets.
pub fn random_secret_b64() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    STANDARD.encode(b)
}

/// A client secret as Entra makes them: 40 characters of `A–Z a–z 0–9 . _ ~ -`.
pub fn random_client_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
    let mut rng = OsRng;
    (0..40)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_and_refuses_wrong_key() {
        let k = MasterKey::generate();
        let ct = k.encrypt(b"private");
        assert_eq!(k.decrypt(&ct).unwrap(), b"private");
        assert!(MasterKey::generate().decrypt(&ct).is_err());
        assert!(format!("{k:?}").contains("redacted"));
    }

    #[test]
    fn password_hashes_verify() {
        let h = hash_password("correct-horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct-horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn client_secrets_have_entra_shape() {
        let s = random_client_secret();
        assert_eq!(s.len(), 40);
        assert_ne!(s, random_client_secret());
    }
}
