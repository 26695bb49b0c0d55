//! The STS started in-process for a test: real HTTPS on 127.0.0.1:0, real database.

use crate::db::{Db, TestDb};
use agentid_directory::tenant_file::TenantFile;
use agentid_sts::{RunningSts, Settings};
use serde_json::Value;
use std::path::PathBuf;

pub struct TestSts {
    pub running: RunningSts,
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub tenant_id: String,
}

pub struct Options {
    pub tls: bool,
    pub configure: Box<dyn FnOnce(&mut Settings) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: true,
            configure: Box::new(|s| {
                s.access_lifetime = agentid_sts::settings::AccessLifetime::Fixed(3600)
            }),
        }
    }
}

impl TestSts {
    /// Starts an STS with the tenant file `yaml` (relative paths resolve in the test's directory).
    pub async fn start(db: Db, yaml: &str) -> TestSts {
        Self::start_with(db, yaml, Options::default()).await
    }

    /// A temporary directory the tenant YAML can reference files in, before the STS starts.
    pub fn prepare_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    pub async fn start_with(db: Db, yaml: &str, opts: Options) -> TestSts {
        Self::start_in(Self::prepare_dir(), db, yaml, opts).await
    }

    pub async fn start_in(dir: tempfile::TempDir, db: Db, yaml: &str, opts: Options) -> TestSts {
        // AGENTID_TEST_LOG=debug shows the server's logs in a failing test's output.
        if let Ok(filter) = std::env::var("AGENTID_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let test_db = TestDb::create(db, dir.path()).await;
        // PostgreSQL replicas share a provisioned master key; SQLite creates its own.
        if db == Db::Postgres {
            let key = agentid_directory::secrets::MasterKey::generate();
            agentid_directory::secrets::write_private_file(
                &dir.path().join("master.key"),
                key.to_base64().as_bytes(),
            )
            .expect("master key");
        }
        let mut settings = Settings::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        settings.storage_url = test_db.url.clone();
        settings.insecure_http = !opts.tls;
        settings = settings.with_listen("127.0.0.1:0".parse().expect("addr"));
        (opts.configure)(&mut settings);
        let file = TenantFile::parse(yaml, dir.path()).expect("valid tenant file");
        let running = agentid_sts::start(settings, &[file])
            .await
            .expect("STS starts");
        let mut http = reqwest::Client::builder().use_rustls_tls();
        if let Some(pem) = &running.ca_pem {
            http = http
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA"));
        }
        let tenant_id = running.reports[0].tenant_id.to_string();
        TestSts {
            running,
            dir,
            db: test_db,
            http: http.build().expect("client"),
            tenant_id,
        }
    }

    pub fn base(&self) -> &str {
        &self.running.base
    }

    pub fn authority(&self) -> String {
        format!("{}/{}", self.running.base, self.tenant_id)
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v2.0/token", self.authority())
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Id of a named object from the apply report (`kind` = users, applications, blueprints, agents, agentUsers).
    pub fn id(&self, kind: &str, handle: &str) -> String {
        self.running.reports[0].ids[kind][handle].clone()
    }

    /// POSTs a form to the token endpoint; returns status and JSON body.
    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.post_form(&self.token_url(), form).await
    }

    /// POSTs a form to the token endpoint, asserts 200 and returns the access token.
    pub async fn token_ok(&self, form: &[(&str, &str)]) -> String {
        let (status, body) = self.token(form).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"]
            .as_str()
            .expect("an access_token")
            .to_string()
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let resp = self.http.get(url).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Counts rows of a table, to check that refused requests change nothing.
    pub async fn count(&self, table: &str) -> i64 {
        let row: (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.running.state.store.pool())
            .await
            .expect("count");
        row.0
    }

    /// The token endpoint's audit events, newest first (at most 10 000).
    pub async fn token_events(&self) -> Vec<agentid_directory::audit::AuditEvent> {
        self.running
            .state
            .store
            .audit_events(&agentid_directory::audit::AuditQuery {
                category: Some("token".into()),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("audit events")
    }

    pub async fn stop(mut self) {
        self.running.shutdown();
        self.running.state.store.close().await;
        self.db.drop_now().await;
    }
}
