//! Time as the sidecar sees it. Everything that compares against token lifetimes (the cache,
//! the federated token file, inbound validation, credential demotion) reads this clock, so
//! tests can move it forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// The system clock shifted by an adjustable offset (for tests).
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    offset: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (or back, with a negative value) by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock so that `now()` returns `at`.
    pub fn set(&self, at: i64) {
        let real = chrono::Utc::now().timestamp();
        self.offset.store(at - real, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.offset.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;
