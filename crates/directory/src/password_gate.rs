//! The one way to run Argon2 on request input. Each check holds ~19 MiB on a blocking thread
//! (docs/sts.md §13: m = 19456 KiB), so a burst of wrong passwords would otherwise grow memory
//! without bound. The gate admits a fixed number of checks at once (sized from the memory
//! the process may use), lets a bounded number wait briefly, and refuses the rest: the caller
//! answers 429 with `Retry-After`.

use crate::secrets;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Memory one Argon2id check holds (m = 19456 KiB).
pub const ARGON2_BYTES: u64 = 19456 * 1024;
/// The most checks the default admits at once, however large the machine.
const DEFAULT_CAP: usize = 16;
/// Share of the memory limit the default lets password checks use.
const MEMORY_FRACTION: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordLimits {
    /// Checks running at once.
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; beyond this they are refused at once.
    pub max_waiting: usize,
    /// How long a request waits for a slot before it is refused.
    pub max_wait: Duration,
}

impl PasswordLimits {
    /// An eighth of the memory this process may use (the cgroup limit or the machine's RAM),
    /// divided by what one check holds: between 1 and 16 checks at once, four times as many
    /// waiting, for at most two seconds.
    pub fn from_memory() -> Self {
        let concurrent = memory_limit_bytes()
            .map(|m| (m / MEMORY_FRACTION / ARGON2_BYTES) as usize)
            .unwrap_or(4)
            .clamp(1, DEFAULT_CAP);
        Self::with_concurrency(concurrent)
    }

    /// `max_concurrent` checks, four times as many waiting, for at most two seconds.
    pub fn with_concurrency(max_concurrent: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Self {
            max_concurrent,
            max_waiting: max_concurrent * 4,
            max_wait: Duration::from_secs(2),
        }
    }
}

/// The memory this process may use: the smallest of the machine's RAM and the cgroup (v2 or
/// v1) limit, when they can be read.
pub fn memory_limit_bytes() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let total = read("/proc/meminfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// Too many password checks are running and waiting: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are in progress; retry after {} s", retry_after.as_secs())]
pub struct Busy {
    pub retry_after: Duration,
}

/// Admits password checks (see the module documentation).
#[derive(Debug)]
pub struct PasswordGate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    limits: PasswordLimits,
}

/// A slot for one check: held until the Argon2 work finishes, even if the request that
/// asked for it is gone (its memory is in use until then).
#[derive(Debug)]
pub struct PasswordPermit {
    _slot: OwnedSemaphorePermit,
}

/// Undoes a waiter count however the wait ends (granted, timed out or cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordGate {
    pub fn new(limits: PasswordLimits) -> Self {
        let limits = PasswordLimits {
            max_concurrent: limits.max_concurrent.max(1),
            ..limits
        };
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent)),
            waiting: AtomicUsize::new(0),
            limits,
        }
    }

    pub fn limits(&self) -> PasswordLimits {
        self.limits
    }

    fn busy(&self) -> Busy {
        Busy {
            retry_after: self.limits.max_wait.max(Duration::from_secs(1)),
        }
    }

    /// A slot for one check: at once if one is free, else after waiting in a bounded queue
    /// for at most `max_wait`.
    pub async fn acquire(&self) -> Result<PasswordPermit, Busy> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(PasswordPermit { _slot: p });
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.busy());
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.limits.max_wait, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(PasswordPermit { _slot: p }),
            _ => Err(self.busy()),
        }
    }

    /// Checks running now (for tests and metrics).
    pub fn running(&self) -> usize {
        self.limits.max_concurrent - self.permits.available_permits()
    }
}

impl PasswordPermit {
    /// Verifies `password` against a stored PHC string on a blocking thread; a malformed hash
    /// verifies nothing. Without a hash (no such user, or one without a password) the same
    /// Argon2 work is done against a throw-away hash and fails, so the time taken does not
    /// tell which usernames exist.
    pub async fn verify(self, password: String, phc: Option<String>) -> bool {
        tokio::task::spawn_blocking(move || {
            let _slot = self;
            match phc {
                Some(phc) => secrets::verify_password(&password, &phc),
                None => {
                    let _ = secrets::verify_password(&password, absent_user_hash());
                    false
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Hashes a new password (Argon2id) on a blocking thread.
    pub async fn hash(self, password: String) -> Option<String> {
        tokio::task::spawn_blocking(move || {
            let _slot = self;
            secrets::hash_password(&password)
        })
        .await
        .ok()
    }
}

/// A hash of a random password, made once: what a sign-in for a missing user is checked
/// against.
fn absent_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| secrets::hash_password(&secrets::random_token()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_waits_then_refuses() {
        let gate = Arc::new(PasswordGate::new(PasswordLimits {
            max_concurrent: 1,
            max_waiting: 1,
            max_wait: Duration::from_millis(200),
        }));
        let held = gate.acquire().await.expect("free slot");
        assert_eq!(gate.running(), 1);
        // One may wait; it gets the slot when it frees up.
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.acquire().await.map(|_| ()) });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while gate.waiting.load(Ordering::Acquire) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waiter never queued"
            );
            tokio::task::yield_now().await;
        }
        // The queue is full: refused at once.
        assert!(gate.acquire().await.is_err());
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
        // Nobody frees the slot in time: refused after max_wait.
        let _held = gate.acquire().await.expect("free again");
        let e = gate.acquire().await.unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(1));
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn the_slot_is_held_until_the_check_ends() {
        let gate = PasswordGate::new(PasswordLimits::with_concurrency(1));
        let h = secrets::hash_password("pw");
        let permit = gate.acquire().await.unwrap();
        assert!(permit.verify("pw".into(), Some(h.clone())).await);
        assert_eq!(gate.running(), 0);
        let permit = gate.acquire().await.unwrap();
        assert!(!permit.verify("nope".into(), Some(h)).await);
        let permit = gate.acquire().await.unwrap();
        assert!(
            !permit.verify("pw".into(), None).await,
            "no user, no success"
        );
    }

    #[test]
    fn default_is_bounded() {
        let l = PasswordLimits::from_memory();
        assert!((1..=DEFAULT_CAP).contains(&l.max_concurrent));
        assert_eq!(l.max_waiting, l.max_concurrent * 4);
    }
}
