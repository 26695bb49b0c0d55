//! The tenant file (docs/tenant-file.md): a whole directory declared in one YAML document, applied
//! idempotently in one transaction.

mod apply;
mod check;
mod mcp;
mod objects;
mod spec;
mod tenant;
mod tx;

pub use apply::apply;
pub use spec::TenantFile;
pub use tx::{ApplyReport, GeneratedSecret};

#[derive(Debug, thiserror::Error)]
pub enum TenantFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    Directory(#[from] crate::DirectoryError),
}

impl TenantFileError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        TenantFileError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for TenantFileError {
    fn from(e: sqlx::Error) -> Self {
        TenantFileError::Directory(e.into())
    }
}
