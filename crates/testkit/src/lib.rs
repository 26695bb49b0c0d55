//! Starts agentid parts in-process on port 0 for integration tests, with real HTTPS and a
//! real database (SQLite file or a fresh PostgreSQL database); runs a real Kubernetes control
//! plane ([`KubeCluster`]); and emulates the outside things that cannot run here.

pub mod browser;
pub mod certs;
pub mod chain;
pub mod db;
pub mod demo;
pub mod hostile;
pub mod kube;
pub mod poll;
pub mod sts;
pub mod upstream;

pub use chain::Chain;
pub use db::Db;
pub use kube::{KubeCluster, KubeIssuer};
pub use sts::TestSts;

/// Decodes a JWT's payload without verifying it (tests assert on claims).
pub fn claims(jwt: &str) -> serde_json::Map<String, serde_json::Value> {
    agentid_claims::UnverifiedJwt::parse(jwt)
        .expect("a JWT")
        .claims
}

/// Decodes a JWT's header without verifying it.
pub fn header(jwt: &str) -> serde_json::Map<String, serde_json::Value> {
    agentid_claims::UnverifiedJwt::parse(jwt)
        .expect("a JWT")
        .header
}

/// Runs an async test body once against SQLite and once against PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::Db::Postgres).await
            }
        }
    };
}
