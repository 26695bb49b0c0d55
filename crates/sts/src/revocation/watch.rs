//! Long-poll waiters (docs/sts.md §17.3): one watch channel per tenant with waiters, fed by a
//! task that reads the tenant's version from the database every [`CHECK_EVERY`]. Reading the
//! database (one primary-key row) rather than trusting an in-process signal is what lets
//! several replicas serve the feed: a write on any replica is seen by every replica's waiters.
//! The task ends when its tenant has no waiter left.

use agentid_directory::{DirectoryError, Store};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often a tenant's version is read while someone waits on it.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// At most this many tenants are watched at once; waiters beyond it poll the database
/// themselves at the same pace.
const MAX_TENANTS: usize = 1000;

/// Per-tenant version channels (the STS state holds one).
#[derive(Default)]
pub struct Watchers {
    tenants: Mutex<HashMap<Uuid, watch::Sender<i64>>>,
}

impl Watchers {
    fn subscribe(&self, store: &Store, tenant: Uuid) -> Option<watch::Receiver<i64>> {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        if let Some(tx) = map.get(&tenant) {
            return Some(tx.subscribe());
        }
        if map.len() >= MAX_TENANTS {
            return None;
        }
        let (tx, rx) = watch::channel(-1);
        map.insert(tenant, tx.clone());
        tokio::spawn(check_versions(store.clone(), tenant, tx));
        Some(rx)
    }
}

/// Reads the tenant's version until nobody waits on it.
async fn check_versions(store: Store, tenant: Uuid, tx: watch::Sender<i64>) {
    while tx.receiver_count() > 0 {
        match store.revocation_version(&tenant).await {
            Ok(v) => {
                tx.send_if_modified(|held| {
                    let changed = *held != v;
                    *held = v;
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e, %tenant, "cannot read the revocation version"),
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// Returns once the tenant's version is greater than `after`, or after `wait`.
pub async fn wait_past(
    store: &Store,
    watchers: &Watchers,
    tenant: Uuid,
    after: i64,
    wait: Duration,
) -> Result<(), DirectoryError> {
    if store.revocation_version(&tenant).await? > after {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + wait;
    match watchers.subscribe(store, tenant) {
        Some(mut rx) => {
            let passed = async move {
                loop {
                    let seen = *rx.borrow_and_update();
                    if seen > after || rx.changed().await.is_err() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout_at(deadline, passed).await;
        }
        None => {
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(CHECK_EVERY).await;
                if store.revocation_version(&tenant).await? > after {
                    break;
                }
            }
        }
    }
    Ok(())
}
