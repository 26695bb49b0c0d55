//! SQLite's WAL checkpoints, off the request path (docs/performance.md §3.3).
//!
//! SQLite's automatic checkpoint runs inside the commit that pushes the WAL past its threshold:
//! that commit, on some request's path, copies the WAL into the database file and waits for two
//! `fsync`s (WAL mode with `synchronous=NORMAL` syncs only at checkpoints). That was the T1→T2
//! tail. Here a task of its own runs passive checkpoints (they neither block nor wait for readers
//! and writers) every [`EVERY`], or sooner after [`BATCHES`] audit batches under heavy load, so
//! commits never do; the connections' automatic threshold is raised to [`AUTOCHECKPOINT_PAGES`],
//! left only as a bound on the WAL for a process that never starts the task (one that writes no
//! stand-alone audit event). Checkpoints are kept rare on purpose: the first commit after a
//! complete one restarts the WAL and syncs its header (one `fsync` on a request's path per
//! checkpoint, which SQLite does not let another connection take).

use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// `PRAGMA wal_autocheckpoint` on every SQLite connection (pages of 4 KiB: 40 MiB of WAL).
pub(crate) const AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// Audit batches that bring the next checkpoint forward (heavy load: a batch holds many rows).
pub(crate) const BATCHES: u32 = 1024;
/// The longest wait between checkpoints while the writer runs (directory writes count too).
const EVERY: Duration = Duration::from_secs(1);

/// Started with the audit writer's task, on its runtime; ends when the writer's queue is gone.
pub(crate) fn spawn<T: Send + 'static>(pool: AnyPool, writer: mpsc::WeakSender<T>) -> Arc<Notify> {
    let due = Arc::new(Notify::new());
    tokio::spawn(run(pool, writer, due.clone()));
    due
}

async fn run<T: Send + 'static>(pool: AnyPool, writer: mpsc::WeakSender<T>, due: Arc<Notify>) {
    loop {
        let _ = tokio::time::timeout(EVERY, due.notified()).await;
        if writer.upgrade().is_none() || pool.is_closed() {
            return;
        }
        // PASSIVE: copies what no reader still needs, waits for nobody; the next one catches up.
        // A failure (the file busy, a full disk) is retried at the next turn; the automatic
        // threshold still bounds the WAL.
        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await;
    }
}
