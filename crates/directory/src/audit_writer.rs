//! The group commit of stand-alone audit events (docs/performance.md §3.2).
//!
//! A request hands its event to one writer task and waits; the writer takes every event queued
//! meanwhile (up to [`MAX_BATCH`]) and inserts them with **one statement**, so one commit (and on
//! PostgreSQL one WAL flush) serves them all, then tells each waiter whether its row was written.
//! A waiter answers its client only after that, so an answered token's audit row is durable
//! whatever happens to the process next. The queue is bounded ([`QUEUE`]): when the database
//! falls behind, requests wait to enqueue instead of the queue growing.
//!
//! An event may carry the directory generation its decision was made at (docs/performance.md
//! §3.1): its row is inserted only if the generation is still that one when the statement runs,
//! and the waiter learns which.

use crate::audit::{AuditEvent, COLS, ROW_VALUES, bind_row};
use crate::error::{DirectoryError, Result};
use sqlx::{AnyPool, Row};
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Events waiting for the writer before senders wait.
const QUEUE: usize = 1024;
/// Events per statement. Each batch size is its own prepared statement on each connection, so
/// this also bounds how many of sqlx's per-connection statement cache (100) the writer takes.
const MAX_BATCH: usize = 32;

struct Job {
    event: AuditEvent,
    generation: Option<u64>,
    /// The event goes back with the result: the waiter logs it, or audits a failure with it,
    /// without the request having copied it (docs/performance.md §3.4).
    done: oneshot::Sender<(AuditEvent, Result<bool, String>)>,
}

pub(crate) struct AuditWriter {
    pool: AnyPool,
    /// SQLite: checkpoints run by a task of their own (`store_checkpoints`).
    checkpoints: bool,
    /// The writer task's queue. The task is started on first use, on the runtime of the caller,
    /// and again if that runtime has gone (a test's runtime, a CLI command's).
    queue: Mutex<Option<mpsc::Sender<Job>>>,
}

impl AuditWriter {
    pub(crate) fn new(pool: AnyPool, checkpoints: bool) -> Self {
        AuditWriter {
            pool,
            checkpoints,
            queue: Mutex::new(None),
        }
    }

    fn sender(&self) -> mpsc::Sender<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = queue.as_ref().filter(|s| !s.is_closed()) {
            return s.clone();
        }
        let (s, r) = mpsc::channel(QUEUE);
        // The task holds the pool, not the store: when the last store clone goes, the queue's
        // sender goes with it and the task ends.
        let checkpoints = self
            .checkpoints
            .then(|| crate::store_checkpoints::spawn(self.pool.clone(), s.downgrade()));
        tokio::spawn(run(self.pool.clone(), r, checkpoints));
        *queue = Some(s.clone());
        s
    }

    /// Closes the writer's connections (on SQLite, the store's pool, closed with it anyway).
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// `SHOW synchronous_commit` on the writer's connection (PostgreSQL): what its commits wait
    /// for (docs/performance.md §3.2).
    pub(crate) async fn synchronous_commit(&self) -> Result<String> {
        let (v,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await?;
        Ok(v)
    }

    /// Writes `event` (if `generation` is given, only while the directory generation equals
    /// it); returns once the row is committed, with whether it was written. The event moves to
    /// the writer and back into `event` (left default only if the writer task died holding it).
    pub(crate) async fn write(
        &self,
        event: &mut AuditEvent,
        generation: Option<u64>,
    ) -> Result<bool> {
        let (done, wait) = oneshot::channel();
        let job = Job {
            event: std::mem::take(event),
            generation,
            done,
        };
        let stopped = || DirectoryError::AuditWrite("the audit writer stopped".into());
        if let Err(mpsc::error::SendError(job)) = self.sender().send(job).await {
            *event = job.event;
            return Err(stopped());
        }
        let (back, result) = wait.await.map_err(|_| stopped())?;
        *event = back;
        result.map_err(DirectoryError::AuditWrite)
    }
}

async fn run(
    pool: AnyPool,
    mut queue: mpsc::Receiver<Job>,
    checkpoints: Option<std::sync::Arc<tokio::sync::Notify>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut since_checkpoint = 0;
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if let Some(due) = &checkpoints {
            since_checkpoint += 1;
            if since_checkpoint >= crate::store_checkpoints::BATCHES {
                since_checkpoint = 0;
                due.notify_one();
            }
        }
        let written = match insert(&pool, &batch).await {
            Ok(ids) => batch
                .iter()
                .map(|j| Ok(ids.contains(&j.event.id)))
                .collect(),
            // One bad row must not refuse the others' tokens: write them one by one.
            Err(_) if batch.len() > 1 => {
                let mut each = Vec::with_capacity(batch.len());
                for job in &batch {
                    each.push(
                        insert(&pool, std::slice::from_ref(job))
                            .await
                            .map(|ids| !ids.is_empty())
                            .map_err(|e| e.to_string()),
                    );
                }
                each
            }
            Err(e) => vec![Err(e.to_string())],
        };
        for (job, result) in batch.drain(..).zip(written) {
            // A waiter that has gone (its client disconnected) still had its row written.
            let _ = job.done.send((job.event, result));
        }
    }
}

/// The statement for `n` rows: `INSERT … SELECT … UNION ALL SELECT … RETURNING id`, each row
/// conditional on its generation (`NULL`: unconditional). In one statement the generation is
/// read and the rows are inserted atomically: on SQLite under the write lock, on PostgreSQL
/// under the statement's snapshot.
fn statement(n: usize) -> String {
    let mut sql = format!("INSERT INTO audit_events ({COLS}) ");
    let per_row = ROW_VALUES + 1;
    for row in 0..n {
        if row > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str("SELECT ");
        let first = row * per_row + 1;
        for i in 0..ROW_VALUES {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", first + i));
        }
        let g = first + ROW_VALUES;
        sql.push_str(&format!(
            " WHERE ${g} IS NULL OR (SELECT n FROM directory_generation WHERE id = 1) = ${g}"
        ));
    }
    sql.push_str(" RETURNING id");
    sql
}

/// Inserts the batch's rows in one statement; the ids of the rows written.
async fn insert(pool: &AnyPool, batch: &[Job]) -> Result<Vec<String>> {
    let sql = statement(batch.len());
    let mut q = sqlx::query(&sql);
    for job in batch {
        q = bind_row(q, &job.event).bind(job.generation.map(|g| g as i64));
    }
    let rows = q.fetch_all(pool).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(DirectoryError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_numbers_each_rows_values_and_generation() {
        let sql = statement(2);
        assert!(sql.contains("$36 WHERE $37 IS NULL OR"), "{sql}");
        assert!(sql.contains("SELECT $38, $39"), "{sql}");
        assert!(sql.ends_with("= $74 RETURNING id"), "{sql}");
        assert_eq!(sql.matches("UNION ALL").count(), 1);
    }
}
