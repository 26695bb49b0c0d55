//! Secrets at rest: hashes for what is only ever compared, AES-256-GCM under the master key for
//! what must be used again (signing and TLS private keys).

use crate::error::{DirectoryError, Result};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// docs/sts.md §13: Argon2id, m = 19456 KiB, t = 2, p = 1.
fn argon2_params() -> Params {
    Params::new(19456, 2, 1, None).expect("valid params")
}

/// The largest memory cost (KiB) a stored hash may ask for: agentid makes 19456 KiB hashes;
/// one far larger would break the password gate's memory bound.
const MAX_M_COST_KIB: u32 = 65536;

/// Argon2 working memory that goes back to the system when dropped. glibc raises its mmap
/// threshold to the size of each freed mapping (up to 32 MiB); after the first check, 19 MiB
/// buffers would come from per-thread arenas that keep the memory for good. Reserving more
/// than 32 MiB keeps every buffer its own mapping; only the blocks in use are touched, so the
/// reserve costs address space, not memory.
fn argon2_memory(blocks: usize) -> Vec<Block> {
    const OWN_MAPPING_BLOCKS: usize = 33 * 1024; // 33 MiB of 1 KiB blocks
    let mut memory = Vec::with_capacity(blocks.max(OWN_MAPPING_BLOCKS));
    memory.resize(blocks, Block::default());
    memory
}

/// Argon2 of `password` with `params` and `salt`, as a PHC hash.
fn argon2_hash<'a>(
    password: &[u8],
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt<'a>,
) -> password_hash::Result<PasswordHash<'a>> {
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut memory = argon2_memory(params.block_count());
    let argon = Argon2::new(algorithm, version, params.clone());
    let output = Output::init_with(output_len, |out| {
        Ok(argon.hash_password_into_with_memory(password, salt_bytes, out, &mut memory)?)
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// An Argon2id PHC string for a new password. Runs Argon2 (~19 MiB): request paths call it
/// through [`crate::password_gate`].
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2_hash(
        password.as_bytes(),
        Algorithm::Argon2id,
        Version::V0x13,
        argon2_params(),
        salt.as_salt(),
    )
    .map(|h| h.to_string())
    .expect("argon2 hashing with fixed parameters")
}

/// Verifies a password against a stored PHC string (constant-time comparison); a malformed
/// hash, or one asking for more than 64 MiB, verifies nothing. Request paths call it through
/// [`crate::password_gate`].
pub(crate) fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&h) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB {
        return false;
    }
    argon2_hash(password.as_bytes(), algorithm, version, params, salt)
        .is_ok_and(|computed| computed.hash.is_some_and(|c| c == expected))
}

pub fn is_valid_password_hash(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        h.algorithm.as_str() == "argon2id"
            && Params::try_from(&h).is_ok_and(|p| p.m_cost() <= MAX_M_COST_KIB)
    })
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
        // Interoperable with the argon2 crate's own hashing and verification.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params())
            .hash_password(b"pw", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify_password("pw", &theirs));
        let ours = PasswordHash::new(&h).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct-horse", &ours)
                .is_ok()
        );
        // A stored hash may not ask for more memory than the gate allows for.
        let huge = "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo0NTY";
        assert!(!is_valid_password_hash(huge));
        assert!(!verify_password("x", huge));
    }

    #[test]
    fn client_secrets_have_entra_shape() {
        let s = random_client_secret();
        assert_eq!(s.len(), 40);
        assert_ne!(s, random_client_secret());
    }
}
