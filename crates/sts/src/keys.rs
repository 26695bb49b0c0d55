//! Token signing keys (docs/sts.md §5): per tenant, stored in the database with the private key
//! encrypted, published in the JWKS before they sign, kept published after they stop signing
//! until every token they signed has expired.

use crate::jws::TokenSigningKey;
use agentid_claims::jwk::Jwk;
use agentid_directory::keys::SigningKeyRow;
use agentid_directory::secrets::MasterKey;
use agentid_directory::{DirectoryError, Store};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use moka::Expiry;
use moka::future::Cache;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha1::{Digest, Sha1};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use uuid::Uuid;

/// The longest lifetime of a token a key can sign (5399 s access tokens, rounded up).
pub const LONGEST_TOKEN_LIFETIME: i64 = 5400;

/// Bounds of the key cache, which is keyed by what an unverified token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCacheLimits {
    /// Tenants whose keys (and, separately, whose existence) are cached at most.
    pub max_tenants: u64,
    /// How long "no such tenant" is remembered (a tenant created meanwhile is found after it).
    pub unknown_tenant_ttl: Duration,
    /// A key id not in the cache reloads the tenant's keys at most this often.
    pub unknown_kid_reload_floor: Duration,
    /// Loaded keys are reloaded from the database after this long: how soon a rotation made
    /// through another replica (or `sts keys rotate`) is used and published here (docs/sts.md §13).
    pub reload_every: Duration,
}

impl Default for KeyCacheLimits {
    fn default() -> Self {
        Self {
            max_tenants: 10_000,
            unknown_tenant_ttl: Duration::from_secs(5),
            unknown_kid_reload_floor: Duration::from_secs(10),
            reload_every: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("cannot generate a signing key: {0}")]
    Generate(String),
    #[error("stored signing key {kid} is unusable: {reason}")]
    Corrupt { kid: String, reason: String },
    /// A load another request started and this one waited for.
    #[error(transparent)]
    Shared(Arc<KeyError>),
}

/// Sizes of the key ring's caches (each bounded by [`KeyCacheLimits::max_tenants`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheEntries {
    /// Tenants whose keys are loaded.
    pub tenant_keys: u64,
    /// Tenant ids whose existence is remembered (including "no such tenant").
    pub tenant_lookups: u64,
}

/// Token signature algorithms: RS256 for everything, ES256 for resources that opt in (docs/sts.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    RS256,
    ES256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::ES256 => "ES256",
        }
    }
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
            SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
    /// A resource's `agentidTokenSigningAlgorithm`; anything but ES256 is RS256.
    pub fn for_resource(name: &str) -> Self {
        if name == "ES256" {
            SigningAlg::ES256
        } else {
            SigningAlg::RS256
        }
    }
}

pub struct LoadedKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// Signs with this key: [`LoadedKey::sign`].
    signing: TokenSigningKey,
    pub decoding: DecodingKey,
    pub jwk: Jwk,
    /// The public key for the shared verifier, built once when the key is loaded rather than
    /// from the JWK on every token presented back (T1, OBO assertions, Graph bearers).
    pub verification: Option<Arc<agentid_claims::verify::VerificationKey>>,
    pub publish_at: i64,
    pub activate_at: i64,
    pub retired_at: Option<i64>,
    pub remove_after: Option<i64>,
    last_signed_flushed: AtomicI64,
}

impl LoadedKey {
    /// A compact JWS of `claims` under `header` (whose `alg` must be this key's).
    pub fn sign(
        &self,
        header: &jsonwebtoken::Header,
        claims: &impl serde::Serialize,
    ) -> Result<String, crate::jws::SignError> {
        self.signing.sign(header, claims)
    }
}

struct TenantKeys {
    loaded_at: Instant,
    keys: Vec<Arc<LoadedKey>>,
}

impl TenantKeys {
    /// The signing key: the greatest `activate_at ≤ now` among keys not scheduled for removal.
    fn active(&self, alg: SigningAlg, now: i64) -> Option<&Arc<LoadedKey>> {
        self.keys
            .iter()
            .filter(|k| {
                k.alg == alg
                    && k.activate_at <= now
                    && k.retired_at.is_none_or(|r| r > now)
                    && k.remove_after.is_none_or(|r| r > now)
            })
            .max_by_key(|k| k.activate_at)
    }

    fn published(&self, now: i64) -> impl Iterator<Item = &Arc<LoadedKey>> {
        self.keys
            .iter()
            .filter(move |k| k.publish_at <= now && k.remove_after.is_none_or(|r| r > now))
    }
}

pub struct KeyRing {
    store: Store,
    master: MasterKey,
    limits: KeyCacheLimits,
    /// Loaded keys of existing tenants (bounded; reloaded after
    /// [`KeyCacheLimits::reload_every`]).
    tenants: Cache<Uuid, Arc<TenantKeys>>,
    /// Whether a tenant exists (bounded; "no" is remembered only briefly).
    known: Cache<Uuid, bool>,
    /// One unknown-kid reload at a time (single flight); each tenant's at most once per floor.
    reload_lock: Mutex<()>,
    /// Serialises key creation so one process never creates two keys for a tenant at once.
    create_lock: Mutex<()>,
    /// Loads of a tenant's keys from the database (each decrypts every private key).
    loads: AtomicU64,
}

/// "Tenant exists" lives as long as loaded keys; "no such tenant" only briefly.
struct KnownExpiry {
    positive: Duration,
    negative: Duration,
}

impl Expiry<Uuid, bool> for KnownExpiry {
    fn expire_after_create(&self, _: &Uuid, exists: &bool, _: Instant) -> Option<Duration> {
        Some(if *exists {
            self.positive
        } else {
            self.negative
        })
    }
}

/// A freshly generated RSA key wrapped in a self-signed certificate.
pub struct NewKey {
    pub row: SigningKeyRow,
}

/// A new signing key of `alg`, wrapped in a self-signed certificate.
pub fn generate_key(
    master: &MasterKey,
    tenant: &Uuid,
    alg: SigningAlg,
    publish_at: i64,
    activate_at: i64,
) -> Result<NewKey, KeyError> {
    match alg {
        SigningAlg::RS256 => generate_rsa_key(master, tenant, publish_at, activate_at),
        SigningAlg::ES256 => generate_ec_key(master, tenant, publish_at, activate_at),
    }
}

fn signing_cert(kp: &rcgen::KeyPair, tenant: &Uuid, publish_at: i64) -> Result<Vec<u8>, KeyError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("agentid token signing {tenant}"),
    );
    let start = time::OffsetDateTime::from_unix_timestamp(publish_at - 300)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(730);
    Ok(params
        .self_signed(kp)
        .map_err(|e| KeyError::Generate(e.to_string()))?
        .der()
        .to_vec())
}

fn generate_ec_key(
    master: &MasterKey,
    tenant: &Uuid,
    publish_at: i64,
    activate_at: i64,
) -> Result<NewKey, KeyError> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let der = signing_cert(&kp, tenant, publish_at)?;
    let x5t = URL_SAFE_NO_PAD.encode(Sha1::digest(&der));
    // The uncompressed point: 0x04 ‖ x ‖ y.
    let point = kp.public_key_raw();
    if point.len() != 65 {
        return Err(KeyError::Generate(
            "unexpected P-256 public key length".into(),
        ));
    }
    let jwk = Jwk {
        kty: "EC".into(),
        use_: Some("sig".into()),
        alg: Some("ES256".into()),
        kid: Some(x5t.clone()),
        x5t: Some(x5t.clone()),
        n: None,
        e: None,
        crv: Some("P-256".into()),
        x: Some(URL_SAFE_NO_PAD.encode(&point[1..33])),
        y: Some(URL_SAFE_NO_PAD.encode(&point[33..65])),
        x5c: Some(vec![STANDARD.encode(&der)]),
    };
    Ok(NewKey {
        row: SigningKeyRow {
            tenant_id: tenant.to_string(),
            kid: x5t,
            alg: "ES256".into(),
            private_key_enc: master.encrypt(kp.serialize_pem().as_bytes()),
            public_jwk: serde_json::to_string(&jwk).expect("JWK serialises"),
            cert_der: STANDARD.encode(&der),
            publish_at,
            activate_at,
            retired_at: None,
            last_signed_at: None,
            remove_after: None,
        },
    })
}

pub fn generate_rsa_key(
    master: &MasterKey,
    tenant: &Uuid,
    publish_at: i64,
    activate_at: i64,
) -> Result<NewKey, KeyError> {
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let pkcs8 = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let kp = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("agentid token signing {tenant}"),
    );
    let start = time::OffsetDateTime::from_unix_timestamp(publish_at - 300)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(730);
    let cert = params
        .self_signed(&kp)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let der = cert.der().to_vec();
    let x5t = URL_SAFE_NO_PAD.encode(Sha1::digest(&der));
    let public = private.to_public_key();
    let jwk = Jwk {
        kty: "RSA".into(),
        use_: Some("sig".into()),
        alg: Some("RS256".into()),
        kid: Some(x5t.clone()),
        x5t: Some(x5t.clone()),
        n: Some(URL_SAFE_NO_PAD.encode(public.n().to_bytes_be())),
        e: Some(URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())),
        crv: None,
        x: None,
        y: None,
        x5c: Some(vec![STANDARD.encode(&der)]),
    };
    Ok(NewKey {
        row: SigningKeyRow {
            tenant_id: tenant.to_string(),
            kid: x5t,
            alg: "RS256".into(),
            private_key_enc: master.encrypt(pkcs8.as_bytes()),
            public_jwk: serde_json::to_string(&jwk).expect("JWK serialises"),
            cert_der: STANDARD.encode(&der),
            publish_at,
            activate_at,
            retired_at: None,
            last_signed_at: None,
            remove_after: None,
        },
    })
}

fn load_row(master: &MasterKey, row: &SigningKeyRow) -> Result<LoadedKey, KeyError> {
    let corrupt = |reason: String| KeyError::Corrupt {
        kid: row.kid.clone(),
        reason,
    };
    let pem = master.decrypt(&row.private_key_enc)?;
    let pem = String::from_utf8(pem).map_err(|e| corrupt(e.to_string()))?;
    let (alg, signing) = match row.alg.as_str() {
        "ES256" => (
            SigningAlg::ES256,
            TokenSigningKey::Es256(
                EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| corrupt(e.to_string()))?,
            ),
        ),
        _ => {
            let private =
                rsa::RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| corrupt(e.to_string()))?;
            let pkcs8 = private.to_pkcs8_der().map_err(|e| corrupt(e.to_string()))?;
            (
                SigningAlg::RS256,
                TokenSigningKey::rs256_from_pkcs8(pkcs8.as_bytes()).map_err(corrupt)?,
            )
        }
    };
    let jwk: Jwk = serde_json::from_str(&row.public_jwk).map_err(|e| corrupt(e.to_string()))?;
    let decoding = jwk
        .decoding_key()
        .ok_or_else(|| corrupt("public JWK is not usable".into()))?;
    let verification = agentid_claims::verify::VerificationKey::from_jwk(&jwk)
        .ok()
        .map(Arc::new);
    Ok(LoadedKey {
        kid: row.kid.clone(),
        alg,
        signing,
        decoding,
        jwk,
        verification,
        publish_at: row.publish_at,
        activate_at: row.activate_at,
        retired_at: row.retired_at,
        remove_after: row.remove_after,
        last_signed_flushed: AtomicI64::new(row.last_signed_at.unwrap_or(0)),
    })
}

impl KeyRing {
    pub fn new(store: Store, master: MasterKey) -> Self {
        Self::with_limits(store, master, KeyCacheLimits::default())
    }

    pub fn with_limits(store: Store, master: MasterKey, limits: KeyCacheLimits) -> Self {
        Self {
            store,
            master,
            limits,
            tenants: Cache::builder()
                .max_capacity(limits.max_tenants)
                .time_to_live(limits.reload_every)
                .build(),
            known: Cache::builder()
                .max_capacity(limits.max_tenants)
                .expire_after(KnownExpiry {
                    positive: limits.reload_every,
                    negative: limits.unknown_tenant_ttl,
                })
                .build(),
            reload_lock: Mutex::new(()),
            create_lock: Mutex::new(()),
            loads: AtomicU64::new(0),
        }
    }

    /// Loads of tenants' keys from the database so far (each decrypts the private keys).
    pub fn key_loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Entries in the key and tenant caches, after pending evictions.
    pub async fn cache_entries(&self) -> CacheEntries {
        self.tenants.run_pending_tasks().await;
        self.known.run_pending_tasks().await;
        CacheEntries {
            tenant_keys: self.tenants.entry_count(),
            tenant_lookups: self.known.entry_count(),
        }
    }

    async fn fetch(&self, tenant: &Uuid) -> Result<Arc<TenantKeys>, KeyError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let rows = self.store.signing_keys(Some(&tenant.to_string())).await?;
        let keys = rows
            .iter()
            .map(|r| load_row(&self.master, r).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(TenantKeys {
            loaded_at: Instant::now(),
            keys,
        }))
    }

    /// Loads a tenant's keys now (after creating or rotating one) and caches them.
    async fn load(&self, tenant: &Uuid) -> Result<Arc<TenantKeys>, KeyError> {
        let tk = self.fetch(tenant).await?;
        self.tenants.insert(*tenant, tk.clone()).await;
        Ok(tk)
    }

    /// A tenant's keys from the cache, or loaded once however many requests ask at once.
    async fn get(&self, tenant: &Uuid) -> Result<Arc<TenantKeys>, KeyError> {
        self.tenants
            .try_get_with(*tenant, self.fetch(tenant))
            .await
            .map_err(KeyError::Shared)
    }

    /// Whether `tenant` exists, from a bounded cache.
    async fn exists(&self, tenant: &Uuid) -> Result<bool, KeyError> {
        let store = &self.store;
        self.known
            .try_get_with(*tenant, async move {
                store
                    .tenant_by_id(tenant)
                    .await
                    .map(|t| t.is_some())
                    .map_err(KeyError::from)
            })
            .await
            .map_err(KeyError::Shared)
    }

    /// Reloads a tenant's keys for a key id it does not know — unless they were loaded within
    /// the floor. One such reload runs at a time; those that waited use its result.
    async fn reload_for_unknown_kid(&self, tenant: &Uuid) -> Result<Arc<TenantKeys>, KeyError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        if let Some(tk) = self.tenants.get(tenant).await
            && tk.loaded_at.elapsed() < self.limits.unknown_kid_reload_floor
        {
            return Ok(tk);
        }
        self.load(tenant).await
    }

    /// The key that signs for `tenant` now, creating the tenant's first key if it has none.
    pub async fn signer(&self, tenant: &Uuid, now: i64) -> Result<Arc<LoadedKey>, KeyError> {
        self.signer_for(tenant, SigningAlg::RS256, now).await
    }

    /// The key that signs `alg` tokens for `tenant` now; a tenant's first key of an algorithm is
    /// created on demand and active at once (no client can have cached a JWKS without it).
    pub async fn signer_for(
        &self,
        tenant: &Uuid,
        alg: SigningAlg,
        now: i64,
    ) -> Result<Arc<LoadedKey>, KeyError> {
        let tk = self.get(tenant).await?;
        if let Some(k) = tk.active(alg, now) {
            let k = k.clone();
            self.note_signed(tenant, &k, now);
            return Ok(k);
        }
        let _guard = self.create_lock.lock().await;
        let tk = self.load(tenant).await?;
        if let Some(k) = tk.active(alg, now) {
            return Ok(k.clone());
        }
        let key = generate_key(&self.master, tenant, alg, now, now)?;
        self.store.insert_signing_key(&key.row).await?;
        let tk = self.load(tenant).await?;
        tk.active(alg, now)
            .cloned()
            .ok_or_else(|| KeyError::Generate("new key not active".into()))
    }

    /// Records (at most once a minute per key) when a key last signed: retirement needs it.
    fn note_signed(&self, tenant: &Uuid, key: &Arc<LoadedKey>, now: i64) {
        let prev = key.last_signed_flushed.load(Ordering::Relaxed);
        if now - prev >= 60
            && key
                .last_signed_flushed
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let store = self.store.clone();
            let (t, kid) = (tenant.to_string(), key.kid.clone());
            tokio::spawn(async move {
                if let Err(e) = store.mark_key_signed(&t, &kid, now).await {
                    tracing::warn!(error = %e, "cannot record key use");
                }
            });
        }
    }

    /// Published public keys of a tenant.
    pub async fn jwks(&self, tenant: &Uuid, now: i64) -> Result<Vec<Jwk>, KeyError> {
        let tk = self.get(tenant).await?;
        let mut keys: Vec<Jwk> = tk.published(now).map(|k| k.jwk.clone()).collect();
        if keys.is_empty() {
            // A tenant that has never signed still publishes the key it will sign with.
            self.signer(tenant, now).await?;
            keys = self
                .get(tenant)
                .await?
                .published(now)
                .map(|k| k.jwk.clone())
                .collect();
        }
        Ok(keys)
    }

    /// The published verification keys of `tenant` matching `kid` (all of them without one).
    /// An unknown tenant has none; an unknown kid reloads the tenant's keys at most once per
    /// [`KeyCacheLimits::unknown_kid_reload_floor`].
    pub async fn verifier(
        &self,
        tenant: &Uuid,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Vec<Arc<LoadedKey>>, KeyError> {
        let find = |tk: &TenantKeys| -> Vec<Arc<LoadedKey>> {
            tk.published(now)
                .filter(|k| kid.is_none_or(|kid| k.kid == kid))
                .cloned()
                .collect()
        };
        // The tenant id comes from an unverified token: only existing tenants reach the cache.
        if !self.exists(tenant).await? {
            return Ok(vec![]);
        }
        let tk = self.get(tenant).await?;
        let found = find(&tk);
        if !found.is_empty() || kid.is_none() {
            return Ok(found);
        }
        Ok(find(&*self.reload_for_unknown_kid(tenant).await?))
    }

    /// Scheduled rotation: creates the next key `prepublish` before the active key reaches
    /// `interval`, and schedules the removal of keys that no longer sign. Idempotent.
    pub async fn rotate_if_due(
        &self,
        tenant: &Uuid,
        now: i64,
        interval: i64,
        prepublish: i64,
        skew: i64,
    ) -> Result<bool, KeyError> {
        let _guard = self.create_lock.lock().await;
        let all = self.store.signing_keys(Some(&tenant.to_string())).await?;
        let mut created = false;
        // Each algorithm rotates on its own schedule.
        for alg in [SigningAlg::RS256, SigningAlg::ES256] {
            let rows: Vec<&SigningKeyRow> = all.iter().filter(|r| r.alg == alg.as_str()).collect();
            let live: Vec<&SigningKeyRow> = rows
                .iter()
                .copied()
                .filter(|r| r.remove_after.is_none_or(|x| x > now))
                .collect();
            if let Some(active) = live
                .iter()
                .filter(|r| r.activate_at <= now)
                .max_by_key(|r| r.activate_at)
            {
                let has_pending = live.iter().any(|r| r.activate_at > now);
                if !has_pending && active.activate_at + interval - prepublish <= now {
                    let key = generate_key(&self.master, tenant, alg, now, now + prepublish)?;
                    self.store.insert_signing_key(&key.row).await?;
                    created = true;
                }
                // Keys older than the active one stop signing: keep them until their tokens expire.
                for r in live
                    .iter()
                    .filter(|r| r.activate_at < active.activate_at && r.remove_after.is_none())
                {
                    let last = r
                        .last_signed_at
                        .unwrap_or(r.activate_at)
                        .max(active.activate_at);
                    self.store
                        .retire_key(
                            &r.tenant_id,
                            &r.kid,
                            active.activate_at,
                            last + 60 + LONGEST_TOKEN_LIFETIME + skew,
                        )
                        .await?;
                }
            }
        }
        self.store.delete_removed_keys(now).await?;
        drop(_guard);
        self.load(tenant).await?;
        Ok(created)
    }

    /// `agentid sts keys rotate`: a new key, published now and signing after `prepublish`
    /// (or at once with `now`, retiring the old key; `revoke_old` removes it immediately).
    pub async fn rotate(
        &self,
        tenant: &Uuid,
        now: i64,
        prepublish: i64,
        immediate: bool,
        revoke_old: bool,
        skew: i64,
    ) -> Result<String, KeyError> {
        let _guard = self.create_lock.lock().await;
        let rows: Vec<SigningKeyRow> = self
            .store
            .signing_keys(Some(&tenant.to_string()))
            .await?
            .into_iter()
            .filter(|r| r.alg == SigningAlg::RS256.as_str())
            .collect();
        let activate = if immediate { now } else { now + prepublish };
        let key = generate_rsa_key(&self.master, tenant, now, activate)?;
        self.store.insert_signing_key(&key.row).await?;
        if immediate {
            // Keys already retired keep their removal time, unless revoking removes them too.
            for r in rows.iter().filter(|r| {
                r.remove_after.is_none() || (revoke_old && r.remove_after.is_some_and(|x| x > now))
            }) {
                let remove_after = if revoke_old {
                    now - 1
                } else {
                    r.last_signed_at.unwrap_or(now).max(now) + 60 + LONGEST_TOKEN_LIFETIME + skew
                };
                self.store
                    .retire_key(&r.tenant_id, &r.kid, now, remove_after)
                    .await?;
            }
        }
        drop(_guard);
        self.load(tenant).await?;
        Ok(key.row.kid)
    }
}
