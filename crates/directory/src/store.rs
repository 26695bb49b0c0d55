//! Connection to the database, and the migrations that shape it.

use crate::error::{DirectoryError, Result};
pub use sqlx::AnyConnection;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};
use std::time::Duration;

/// A stored id, parsed; a malformed one is corrupt data.
pub(crate) fn uuid(s: &str, what: &'static str) -> Result<::uuid::Uuid> {
    ::uuid::Uuid::parse_str(s).map_err(|e| DirectoryError::corrupt(what, e))
}

/// A stored JSON column, parsed; a malformed one is corrupt data.
pub(crate) fn json<T: serde::de::DeserializeOwned>(s: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| DirectoryError::corrupt(what, e))
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The tables the token path's cached reads come from (`hot`, docs/performance.md §3.1): a
/// write to any bumps the directory generation.
const WATCHED_TABLES: [&str; 7] = [
    "tenants",
    "tenant_domains",
    "applications",
    "identifier_uris",
    "service_principals",
    "password_credentials",
    "app_role_assignments",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// PostgreSQL advisory locks that serialize work across replicas sharing one database
/// (docs/sts.md §13). SQLite has one process per file: nothing to serialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaLock {
    /// Housekeeping: one replica at a time, the others skip their turn.
    Housekeeping,
    /// A replica's start: applying tenant files and creating the first TLS material and
    /// signing keys, so that replicas starting together do not race to create them.
    Startup,
    /// One tenant-file apply at a time (`sts serve`, `sts apply`, `init`).
    TenantFile,
}

impl ReplicaLock {
    /// "agentid" in ASCII, and the next two.
    fn key(self) -> i64 {
        match self {
            ReplicaLock::Housekeeping => 0x0061_6765_6e74_6964,
            ReplicaLock::Startup => 0x0061_6765_6e74_6965,
            ReplicaLock::TenantFile => 0x0061_6765_6e74_6966,
        }
    }
}

/// A held [`ReplicaLock`] (see [`Store::lock_session`]).
pub struct SessionLock(Option<AnyConnection>);

impl SessionLock {
    /// Releases the lock now (closing its session releases it as surely as
    /// `pg_advisory_unlock`).
    pub async fn release(mut self) {
        if let Some(conn) = self.0.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

/// How a [`Store`] is opened, beyond its URL (the STS's `audit` settings, docs/sts.md §13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// PostgreSQL: the audit writer's commits wait for their WAL flush
    /// (`synchronous_commit = on`, the server's default). Off (the default here), they return
    /// once the row is committed and visible, and the WAL writer flushes within its delay: the
    /// row survives the STS process dying, only a crash of the database host within that delay
    /// could lose it, the guarantee SQLite's `synchronous=NORMAL` gives (docs/performance.md
    /// §3.2). Directory writes always wait for their flush.
    pub durable_audit_flush: bool,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The group commit of stand-alone audit events, shared by every clone
    /// (docs/performance.md §3.2).
    audit: std::sync::Arc<crate::audit_writer::AuditWriter>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Opens the database and applies the embedded migrations.
    ///
    /// SQLite runs in WAL mode with `synchronous=NORMAL`, foreign keys on and a 5 s busy
    /// timeout (docs/sts.md §13); the file is created if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with options.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DirectoryError::UnsupportedUrl(url.to_string()));
        };
        let (pool, audit_pool) = match backend {
            Backend::Sqlite => {
                // The Any driver takes only `mode` from the URL; the rest are set per connection.
                // (foreign_keys=ON and a 5 s busy timeout are the driver's defaults.)
                let sep = if url.contains('?') { '&' } else { '?' };
                let any: AnyConnectOptions = format!("{url}{sep}mode=rwc").parse()?;
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode=WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA synchronous=NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA foreign_keys=ON")
                                .execute(&mut *conn)
                                .await?;
                            // Checkpoints run off the request path (`store_checkpoints`).
                            let pages = crate::store_checkpoints::AUTOCHECKPOINT_PAGES;
                            sqlx::query(&format!("PRAGMA wal_autocheckpoint={pages}"))
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(any.disable_statement_logging())
                    .await?;
                // One process per file, one writer at a time: the audit writer shares the pool.
                (pool.clone(), pool)
            }
            Backend::Postgres => {
                let any: AnyConnectOptions = url.parse()?;
                let any = any.disable_statement_logging();
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(any.clone())
                    .await?;
                (pool, audit_writer_pool(any, options))
            }
        };
        MIGRATOR.run(&pool).await?;
        let store = Self {
            audit: std::sync::Arc::new(crate::audit_writer::AuditWriter::new(
                audit_pool,
                backend == Backend::Sqlite,
            )),
            pool,
            backend,
        };
        store.install_generation_triggers().await?;
        Ok(store)
    }

    /// Installs the triggers that bump the generation (idempotent). Trigger syntax differs
    /// between SQLite and PostgreSQL, so they are created here rather than in a migration.
    async fn install_generation_triggers(&self) -> Result<()> {
        match self.backend() {
            Backend::Sqlite => {
                for table in WATCHED_TABLES {
                    for op in ["INSERT", "UPDATE", "DELETE"] {
                        let sql = format!(
                            "CREATE TRIGGER IF NOT EXISTS dirgen_{table}_{op} AFTER {op} ON {table} \
                             BEGIN UPDATE directory_generation SET n = n + 1 WHERE id = 1; END"
                        );
                        sqlx::query(&sql).execute(self.pool()).await?;
                    }
                }
            }
            Backend::Postgres => {
                // Already there (the usual start): no DDL, which would lock the tables.
                let (present,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'dirgen\\_%'",
                )
                .fetch_one(self.pool())
                .await?;
                if present as usize == WATCHED_TABLES.len() {
                    return Ok(());
                }
                let mut tx = self.pool().begin().await?;
                // Replicas starting together: one creates, the others wait and replace.
                sqlx::query("SELECT pg_advisory_xact_lock(7022227661066609256)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "CREATE OR REPLACE FUNCTION agentid_bump_generation() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                     UPDATE directory_generation SET n = n + 1 WHERE id = 1; RETURN NULL; END $$",
                )
                .execute(&mut *tx)
                .await?;
                for table in WATCHED_TABLES {
                    let sql = format!(
                        "CREATE OR REPLACE TRIGGER dirgen_{table} AFTER INSERT OR UPDATE OR DELETE \
                         ON {table} FOR EACH STATEMENT EXECUTE FUNCTION agentid_bump_generation()"
                    );
                    sqlx::query(&sql).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn audit_writer(&self) -> &crate::audit_writer::AuditWriter {
        &self.audit
    }

    /// A transaction that will write. On SQLite it takes the write lock at `BEGIN`
    /// (`BEGIN IMMEDIATE`, waiting up to the busy timeout): a deferred transaction that reads
    /// first fails at once with "database is locked" when another connection wrote meanwhile.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `job` only if no other replica is running it: a PostgreSQL advisory lock (SQLite
    /// has one process per file, so it always runs). Returns `None` if another replica holds it.
    pub async fn exclusive<T>(
        &self,
        job: impl std::future::Future<Output = T>,
    ) -> Result<Option<T>> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(job.await));
        }
        let key = ReplicaLock::Housekeeping.key();
        let mut conn = self.pool.acquire().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        let out = job.await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(Some(out))
    }

    /// Takes `lock`, waiting for other replicas that hold it, until the guard is released or
    /// dropped. The lock lives on a connection of its own, taken out of the pool: if this
    /// process dies or the guard is dropped, the connection closes and PostgreSQL releases it.
    pub async fn lock_session(&self, lock: ReplicaLock) -> Result<SessionLock> {
        if self.backend == Backend::Sqlite {
            return Ok(SessionLock(None));
        }
        let mut conn = self.pool.acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock.key())
            .execute(&mut conn)
            .await?;
        Ok(SessionLock(Some(conn)))
    }

    /// Holds `lock` until `tx` commits or rolls back (PostgreSQL; SQLite's `BEGIN IMMEDIATE`
    /// already serializes writers).
    pub async fn lock_transaction(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        lock: ReplicaLock,
    ) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock.key())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.audit.close().await;
        self.pool.close().await;
    }
}

/// The PostgreSQL connection of the audit writer (docs/performance.md §3.2): its own, so that
/// its `synchronous_commit` applies to audit rows only, never to directory writes. One is
/// enough: the writer sends one statement at a time. Opened on first use.
fn audit_writer_pool(any: AnyConnectOptions, options: StoreOptions) -> AnyPool {
    let durable = options.durable_audit_flush;
    AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // Durable: the server's own setting, whatever the operator made it.
                if !durable {
                    sqlx::query("SET synchronous_commit = off")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect_lazy_with(any)
}

/// A value for one column of an UPDATE built by [`Changes`].
pub(crate) enum Val {
    Text(Option<String>),
    Int(Option<i64>),
}

/// The columns a patch changes, written as one `UPDATE … SET a = $1, b = $2 WHERE id = $n`:
/// the entity modules' patches (`None` = unchanged) become exactly the statements they need.
#[derive(Default)]
pub(crate) struct Changes {
    sets: Vec<(&'static str, Val)>,
}

impl Changes {
    pub(crate) fn text(&mut self, col: &'static str, v: impl Into<Option<String>>) -> &mut Self {
        self.sets.push((col, Val::Text(v.into())));
        self
    }

    pub(crate) fn int(&mut self, col: &'static str, v: Option<i64>) -> &mut Self {
        self.sets.push((col, Val::Int(v)));
        self
    }

    pub(crate) fn json<T: serde::Serialize + ?Sized>(
        &mut self,
        col: &'static str,
        v: &T,
    ) -> &mut Self {
        self.text(col, serde_json::to_string(v).expect("json"))
    }

    /// Runs the UPDATE on the row of `table` whose `id` is `id`; nothing when no column changes.
    pub(crate) async fn apply(
        self,
        conn: &mut AnyConnection,
        table: &'static str,
        id: &str,
    ) -> std::result::Result<(), sqlx::Error> {
        self.apply_where(conn, table, &[("id", id)]).await
    }

    /// Runs the UPDATE on the rows of `table` whose `key` columns hold the given values.
    pub(crate) async fn apply_where(
        self,
        conn: &mut AnyConnection,
        table: &'static str,
        key: &[(&'static str, &str)],
    ) -> std::result::Result<(), sqlx::Error> {
        if self.sets.is_empty() {
            return Ok(());
        }
        let cols: Vec<String> = self
            .sets
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = ${}", i + 1))
            .collect();
        let n = self.sets.len();
        let cond: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = ${}", n + i + 1))
            .collect();
        let sql = format!(
            "UPDATE {table} SET {} WHERE {}",
            cols.join(", "),
            cond.join(" AND ")
        );
        let mut q = sqlx::query(&sql);
        for (_, v) in self.sets {
            q = match v {
                Val::Text(t) => q.bind(t),
                Val::Int(i) => q.bind(i),
            };
        }
        for (_, v) in key {
            q = q.bind(v.to_string());
        }
        q.execute(&mut *conn).await?;
        Ok(())
    }
}
