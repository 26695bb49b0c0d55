#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt ({what}): {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The audit group commit failed or stopped (`audit_writer`); the events were not written.
    #[error("audit write failed: {0}")]
    AuditWrite(String),
}

impl DirectoryError {
    pub fn corrupt(what: &'static str, reason: impl std::fmt::Display) -> Self {
        DirectoryError::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = DirectoryError> = std::result::Result<T, E>;

/// Whether a write failed on a UNIQUE constraint: the entity modules turn that into their own
/// "already exists" error.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
