//! Test databases: a SQLite file in the test's directory, or a PostgreSQL database created for
//! the test (and dropped with it) on the local server.

use sqlx::Connection;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use: `AGENTID_TEST_POSTGRES`, default the local trust-auth server.
pub fn postgres_admin_url() -> String {
    std::env::var("AGENTID_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database for one test; PostgreSQL databases are dropped on [`TestDb::drop_now`].
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn create(kind: Db, dir: &Path) -> TestDb {
        match kind {
            Db::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.join("agentid.db").display()),
                pg_name: None,
            },
            Db::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("agentid_t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL reachable (AGENTID_TEST_POSTGRES)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .expect("URL with a database");
                TestDb {
                    url: format!("{base}/{name}"),
                    pg_name: Some(name),
                }
            }
        }
    }

    pub async fn drop_now(&mut self) {
        if let Some(name) = self.pg_name.take()
            && let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await
        {
            {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}
