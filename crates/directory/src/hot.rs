//! The directory reads every token request makes (tenant, client, its secrets, the resource and
//! the client's roles on it), cached in memory and checked against the directory generation
//! (docs/performance.md §3.1).
//!
//! A database trigger bumps `directory_generation.n` in the same transaction as every write to
//! the tables these reads come from, whichever process or replica writes. A request reads the
//! generation once (one round trip) and uses only entries read under that same generation: an
//! entry is read after its generation was observed, so it is never older than that generation;
//! any later write bumps the generation and the entry is no longer used. The caches are bounded
//! (each map is emptied when full).
//!
//! The token path can skip even that round trip ([`HotReads::assumed_view`]): it decides at the
//! newest generation this process has seen and writes its audit row only if the generation is
//! still that one at the insert (`Store::insert_audit_at`); if it moved, the request is decided
//! again at a generation read afresh. The rule and why it holds: docs/performance.md §3.1.

use crate::error::Result;
use crate::model::{PasswordCredential, Resource, Tenant};
use crate::queries::ClientRecord;
use crate::store::Store;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Entries per map before it is emptied.
const MAX_ENTRIES: usize = 4096;

/// One bounded map of reads, each tagged with the generation it was read under.
struct Tagged<K, V> {
    map: Mutex<HashMap<K, (u64, V)>>,
}

impl<K: Eq + Hash, V: Clone> Tagged<K, V> {
    fn new() -> Self {
        Tagged {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K, generation: u64) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((g, v)) if *g == generation => Some(v.clone()),
            _ => None,
        }
    }

    fn put(&self, key: K, generation: u64, value: V) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        // A reader that observed an older generation never replaces a newer entry.
        if map.get(&key).is_none_or(|(g, _)| *g <= generation) {
            map.insert(key, (generation, value));
        }
    }
}

/// The caches; one per process (the STS state holds it).
pub struct HotReads {
    tenants: Tagged<String, Option<Tenant>>,
    clients: Tagged<(Uuid, Uuid), Option<ClientRecord>>,
    secrets: Tagged<Uuid, Arc<Vec<PasswordCredential>>>,
    resources: Tagged<(Uuid, String), Option<Resource>>,
    roles: Tagged<(Uuid, Uuid), Arc<Vec<Uuid>>>,
    /// The newest generation this process has read, plus one (0: none yet).
    known: AtomicU64,
}

impl Default for HotReads {
    fn default() -> Self {
        HotReads::new()
    }
}

impl HotReads {
    pub fn new() -> HotReads {
        HotReads {
            tenants: Tagged::new(),
            clients: Tagged::new(),
            secrets: Tagged::new(),
            resources: Tagged::new(),
            roles: Tagged::new(),
            known: AtomicU64::new(0),
        }
    }
}

/// The directory as of one generation: one request's reads. A view from [`Store::direct`]
/// has no generation and reads the database every time.
pub struct View<'a> {
    store: &'a Store,
    hot: Option<&'a HotReads>,
    generation: u64,
    /// [`READ`], [`ASSUMED`] or [`STALE`]; atomic because a request's futures share the view.
    basis: AtomicU8,
}

/// The generation was read from the database during this request (or is a direct view's).
const READ: u8 = 0;
/// The generation is the newest this process had seen: the decision stands only if the
/// generation is the same when its audit row is written ([`View::condition`]).
const ASSUMED: u8 = 1;
/// The directory moved since the assumed generation: decide the request again.
const STALE: u8 = 2;

async fn read_generation(store: &Store) -> Result<u64> {
    let (n,): (i64,) = sqlx::query_as("SELECT n FROM directory_generation WHERE id = 1")
        .fetch_one(store.pool())
        .await?;
    Ok(n as u64)
}

impl HotReads {
    /// Reads the directory generation (one round trip) for a request's cached reads.
    pub async fn view<'a>(&'a self, store: &'a Store) -> Result<View<'a>> {
        let generation = read_generation(store).await?;
        self.saw(generation);
        Ok(View {
            store,
            hot: Some(self),
            generation,
            basis: AtomicU8::new(READ),
        })
    }

    /// A view at the newest generation this process has seen, without a round trip (the first
    /// request reads it). Its decision is provisional: the caller writes the audit row with
    /// [`View::condition`] and decides again with [`HotReads::view`] if the row was refused, and
    /// calls [`View::confirm`] before any write it could not take back.
    pub async fn assumed_view<'a>(&'a self, store: &'a Store) -> Result<View<'a>> {
        match self.known.load(Ordering::Acquire) {
            0 => self.view(store).await,
            plus_one => Ok(View {
                store,
                hot: Some(self),
                generation: plus_one - 1,
                basis: AtomicU8::new(ASSUMED),
            }),
        }
    }

    fn saw(&self, generation: u64) {
        self.known
            .fetch_max(generation.saturating_add(1), Ordering::AcqRel);
    }
}

impl Store {
    /// A view that reads the database every time (for paths that are not per token).
    pub fn direct(&self) -> View<'_> {
        View {
            store: self,
            hot: None,
            generation: 0,
            basis: AtomicU8::new(READ),
        }
    }
}

impl View<'_> {
    /// The generation this view reads at (`None` for a direct view).
    pub fn generation(&self) -> Option<u64> {
        self.hot.map(|_| self.generation)
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    /// The generation the audit row of this view's decision must be written at
    /// (`Store::insert_audit_at`): `Some` while the generation is only assumed.
    pub fn condition(&self) -> Option<u64> {
        (self.basis.load(Ordering::Acquire) == ASSUMED).then_some(self.generation)
    }

    /// Establishes an assumed generation with one read, before a write the request could not
    /// take back if it had to be decided again (recording a client assertion's `jti`). `false`:
    /// the directory moved, the view is stale and the request must be decided again.
    pub async fn confirm(&self) -> Result<bool> {
        if self.basis.load(Ordering::Acquire) != ASSUMED {
            return Ok(!self.is_stale());
        }
        let now = read_generation(self.store).await?;
        if let Some(hot) = self.hot {
            hot.saw(now);
        }
        // Equal: nothing was written to the watched tables since the generation was first seen,
        // so every entry read under it is the directory as it is now.
        let basis = if now == self.generation { READ } else { STALE };
        self.basis.store(basis, Ordering::Release);
        Ok(basis == READ)
    }

    /// Whether [`View::confirm`] found the directory moved.
    pub fn is_stale(&self) -> bool {
        self.basis.load(Ordering::Acquire) == STALE
    }

    /// The cached value for `key`, else `read`'s, remembered under this view's generation.
    async fn cached<K, V, F>(
        &self,
        map: impl Fn(&HotReads) -> &Tagged<K, V>,
        key: K,
        read: F,
    ) -> Result<V>
    where
        K: Eq + Hash,
        V: Clone,
        F: std::future::Future<Output = Result<V>>,
    {
        let Some(hot) = self.hot else {
            return read.await;
        };
        if let Some(v) = map(hot).get(&key, self.generation) {
            return Ok(v);
        }
        let v = read.await?;
        map(hot).put(key, self.generation, v.clone());
        Ok(v)
    }

    /// [`Store::tenant_by_segment`], cached.
    pub async fn tenant_by_segment(&self, segment: &str) -> Result<Option<Tenant>> {
        let key = segment.to_ascii_lowercase();
        let read = self.store.tenant_by_segment(segment);
        self.cached(|h| &h.tenants, key, read).await
    }

    /// [`Store::client`], cached.
    pub async fn client(&self, tenant: &Uuid, client_id: &Uuid) -> Result<Option<ClientRecord>> {
        let read = self.store.client(tenant, client_id);
        self.cached(|h| &h.clients, (*tenant, *client_id), read)
            .await
    }

    /// [`Store::password_credentials`], cached.
    pub async fn password_credentials(
        &self,
        application_id: &Uuid,
    ) -> Result<Arc<Vec<PasswordCredential>>> {
        let read = async {
            Ok(Arc::new(
                self.store.password_credentials(application_id).await?,
            ))
        };
        self.cached(|h| &h.secrets, *application_id, read).await
    }

    /// [`Store::resource`], cached.
    pub async fn resource(&self, tenant: &Uuid, identifier: &str) -> Result<Option<Resource>> {
        let read = self.store.resource(tenant, identifier);
        self.cached(|h| &h.resources, (*tenant, identifier.to_string()), read)
            .await
    }

    /// [`Store::assigned_role_ids`], cached.
    pub async fn assigned_role_ids(
        &self,
        principal: &Uuid,
        resource_sp: &Uuid,
    ) -> Result<Arc<Vec<Uuid>>> {
        let read = async {
            Ok(Arc::new(
                self.store.assigned_role_ids(principal, resource_sp).await?,
            ))
        };
        self.cached(|h| &h.roles, (*principal, *resource_sp), read)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_only_its_own_generation() {
        let t: Tagged<u8, &str> = Tagged::new();
        t.put(1, 5, "five");
        assert_eq!(t.get(&1, 5), Some("five"));
        assert_eq!(t.get(&1, 6), None, "a newer generation does not use it");
        assert_eq!(t.get(&1, 4), None, "nor an older one");
    }

    #[test]
    fn a_slow_reader_does_not_replace_a_newer_entry() {
        let t: Tagged<u8, &str> = Tagged::new();
        t.put(1, 7, "new");
        t.put(1, 6, "old");
        assert_eq!(t.get(&1, 7), Some("new"));
    }

    #[test]
    fn the_map_stays_bounded() {
        let t: Tagged<usize, ()> = Tagged::new();
        for k in 0..MAX_ENTRIES * 3 {
            t.put(k, 1, ());
        }
        let len = t.map.lock().map(|m| m.len()).unwrap_or(0);
        assert!(len <= MAX_ENTRIES, "{len}");
    }
}
