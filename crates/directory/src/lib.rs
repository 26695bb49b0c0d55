//! The directory: tenants, users, applications, blueprints, service principals, agent
//! identities, credentials and permissions, stored in SQLite (embedded default) or PostgreSQL
//! through one schema and one code path.

pub mod applications;
pub mod assignments;
pub mod audit;
mod audit_store;
mod audit_writer;
pub mod builtin;
pub mod console_sessions;
pub mod credentials;
pub mod device;
pub mod error;
pub mod grants;
pub mod hot;
pub mod issuers;
pub mod keys;
pub mod mcp_clients;
pub mod model;
pub mod password_gate;
pub mod principals;
pub mod queries;
pub mod revocations;
pub mod secrets;
pub mod store;
mod store_checkpoints;
pub mod tenant_file;
pub mod tokens;
pub mod trail;
pub mod users;

pub use error::DirectoryError;
pub use store::{Backend, ReplicaLock, SessionLock, Store, StoreOptions};

/// Current Unix time in seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
