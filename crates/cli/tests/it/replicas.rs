//! STS replicas on one PostgreSQL database (docs/sts.md §13; issue 12 items 4 and 5), as real
//! `agentid sts serve` processes: they start together safely (the tenant file, the local CA
//! and the first signing keys are created once), every flow can continue on another replica,
//! a key rotation reaches every replica within its reload period, and one replica killed with
//! SIGKILL under load costs a retrying client nothing but that replica's connections.
//!
//! Like a Service in front of them, every replica has the same public base URL; a TCP proxy
//! there (see [`Proxy`]) sends new connections to the replica the test chooses. Clients that
//! must reach a particular replica connect to it directly (its certificate names 127.0.0.1).

use crate::process_support::{BIN, Proc, eventually, free_port};
use agentid_testkit::Db;
use agentid_testkit::browser::Browser;
use agentid_testkit::db::TestDb;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const GRAPH: &str = "https://graph.microsoft.com/.default";
const EXCHANGE: &str = "api://AzureADTokenExchange/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TENANT: &str = "contoso.test";
/// Signing keys are reloaded from the database this often (`keys.reload_interval`).
const RELOAD_SECS: u64 = 2;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A TCP proxy on the public base URL's port, forwarding each new connection to the replica
/// port set last.
struct Proxy {
    port: u16,
    target: Arc<AtomicU16>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(0));
        let to = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = to.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { port, target }
    }

    fn send_to(&self, replica: &Replica) {
        self.target.store(replica.port, Ordering::SeqCst);
    }
}

struct Cluster {
    db: TestDb,
    dir: tempfile::TempDir,
    master_key: String,
    proxy: Proxy,
}

impl Cluster {
    async fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::create(Db::Postgres, dir.path()).await;
        std::fs::write(
            dir.path().join("sts.yaml"),
            format!("server:\n  drain_timeout: 10\nkeys:\n  reload_interval: {RELOAD_SECS}\n"),
        )
        .unwrap();
        Cluster {
            db,
            dir,
            master_key: agentid_directory::secrets::MasterKey::generate().to_base64(),
            proxy: Proxy::start().await,
        }
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.proxy.port)
    }

    fn env(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AGENTID_MASTER_KEY", self.master_key.clone()),
            // The replica's name in audit events.
            ("HOSTNAME", name.to_string()),
        ]
    }

    /// Starts `agentid sts serve` (not waiting for it to be ready).
    fn spawn(&self, name: &str) -> Replica {
        let port = free_port();
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let args: Vec<String> = vec![
            "sts".into(),
            "serve".into(),
            format!("--config={}", self.dir.path().join("sts.yaml").display()),
            format!("--data-dir={}", data.display()),
            format!("--database={}", self.db.url),
            format!("--listen=127.0.0.1:{port}"),
            format!("--public-base-url={}", self.base()),
            format!(
                "--tenant-file={}",
                repo_root().join("examples/demo-tenant.yaml").display()
            ),
        ];
        Replica {
            name: name.to_string(),
            port,
            data,
            proc: Proc::spawn(name, &args, &self.env(name)),
        }
    }

    async fn store(&self) -> agentid_directory::Store {
        agentid_directory::Store::connect(&self.db.url)
            .await
            .expect("the replicas' database")
    }

    async fn drop_db(mut self) {
        self.db.drop_now().await;
    }
}

struct Replica {
    name: String,
    port: u16,
    data: PathBuf,
    proc: Proc,
}

impl Replica {
    fn wait_ready(&mut self) {
        self.proc
            .wait_for_line("agentid STS ready at", Duration::from_secs(120));
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn ca(&self) -> String {
        std::fs::read_to_string(self.data.join("ca.pem")).expect("the replica wrote its CA")
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca().as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(u16, Value), reqwest::Error> {
    let r = http.post(url).form(form).send().await?;
    let status = r.status().as_u16();
    let body = r.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn token(replica: &Replica, form: &[(&str, &str)]) -> Value {
    let url = format!("{}/{TENANT}/oauth2/v2.0/token", replica.url());
    let (status, body) = post(&replica.client(), &url, form).await.unwrap();
    assert_eq!(status, 200, "{} answered {body}", replica.name);
    body
}

fn claims(jwt: &str) -> serde_json::Map<String, Value> {
    agentid_testkit::claims(jwt)
}

fn kid(jwt: &str) -> String {
    agentid_testkit::header(jwt)["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_apply_the_tenant_file_once() {
    const N: usize = 4;
    let cluster = Cluster::new().await;
    let mut replicas: Vec<Replica> = (0..N)
        .map(|i| cluster.spawn(&format!("replica-{i}")))
        .collect();
    for r in &mut replicas {
        r.wait_ready();
    }
    // One replica created the tenant's objects; the others found them in place.
    let reports: Vec<String> = replicas
        .iter()
        .map(|r| {
            r.proc
                .output()
                .lines()
                .find(|l| l.starts_with("tenant "))
                .unwrap_or_else(|| panic!("{} reported no tenant:\n{}", r.name, r.proc.output()))
                .to_string()
        })
        .collect();
    let creators = reports
        .iter()
        .filter(|l| !l.contains(": 0 created"))
        .count();
    assert_eq!(
        creators, 1,
        "exactly one replica applied the file: {reports:#?}"
    );
    assert!(
        reports
            .iter()
            .filter(|l| l.contains(": 0 created, 0 updated"))
            .count()
            == N - 1,
        "{reports:#?}"
    );
    // One CA, one server certificate, one signing key: every replica serves the same.
    let cas: BTreeSet<String> = replicas.iter().map(Replica::ca).collect();
    assert_eq!(cas.len(), 1, "every replica uses the CA made once");
    let store = cluster.store().await;
    assert_eq!(store.tenants().await.unwrap().len(), 1);
    assert_eq!(store.signing_keys(None).await.unwrap().len(), 1);
    let (ca_pem, _, _) = store.tls_material("ca").await.unwrap().expect("a CA");
    assert_eq!(cas.first(), Some(&ca_pem));
    // Every replica serves tokens signed with that one key.
    let mut kids = BTreeSet::new();
    for r in &replicas {
        let t = token(
            r,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", BP),
                ("client_secret", BP_SECRET),
                ("scope", GRAPH),
            ],
        )
        .await;
        kids.insert(kid(t["access_token"].as_str().unwrap()));
    }
    assert_eq!(kids.len(), 1, "{kids:?}");
    // And they stop cleanly.
    for r in &mut replicas {
        r.proc.signal("TERM");
    }
    for r in &mut replicas {
        assert_eq!(
            r.proc.wait_exit(Duration::from_secs(30)).code(),
            Some(0),
            "{}",
            r.proc.output()
        );
    }
    store.close().await;
    cluster.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_continue_each_other_s_flows_and_share_key_rotations() {
    let cluster = Cluster::new().await;
    let mut a = cluster.spawn("replica-a");
    a.wait_ready();
    let mut b = cluster.spawn("replica-b");
    b.wait_ready();

    // A device code started on A is completed on B (the browser reaches B through the
    // proxy), and A hands out the tokens.
    let scope = format!("api://{BP}/access_as_user openid profile offline_access");
    let (status, dc) = post(
        &a.client(),
        &format!("{}/{TENANT}/oauth2/v2.0/devicecode", a.url()),
        &[("client_id", GRAPH_CLI), ("scope", &scope)],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{dc}");
    assert_eq!(
        dc["verification_uri"],
        format!("{}/devicelogin", cluster.base())
    );
    cluster.proxy.send_to(&b);
    let ca = b.ca();
    let page = Browser::new(&cluster.base(), Some(ca.as_str()))
        .complete_device_login(
            dc["user_code"].as_str().unwrap(),
            "alice@contoso.test",
            "correct-horse-battery",
            true,
        )
        .await;
    assert!(page.url.ends_with("/devicelogin/done"), "{}", page.html);
    let tokens = token(
        &a,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", GRAPH_CLI),
            ("device_code", dc["device_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["upn"],
        "alice@contoso.test"
    );
    // Its refresh token, issued by A, is redeemed at B.
    let refreshed = token(
        &b,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", GRAPH_CLI),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("scope", &scope),
        ],
    )
    .await;
    assert!(refreshed["refresh_token"].is_string(), "{refreshed}");
    let store = cluster.store().await;
    let events = store
        .audit_events(&agentid_directory::audit::AuditQuery {
            category: Some("token".into()),
            result: Some("issued".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let by = |grant: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| {
                e.token_id.is_some() && e.grant_type.as_deref().is_some_and(|g| g.contains(grant))
            })
            .map(|e| e.replica.clone())
            .collect()
    };
    assert_eq!(by("device_code"), BTreeSet::from(["replica-a".to_string()]));
    assert_eq!(
        by("refresh_token"),
        BTreeSet::from(["replica-b".to_string()])
    );

    // A key rotation (made through the database, as `agentid sts keys rotate` does) is used
    // and published by both replicas within their reload period.
    let cc = [
        ("grant_type", "client_credentials"),
        ("client_id", BP),
        ("client_secret", BP_SECRET),
        ("scope", GRAPH),
    ];
    let old = kid(token(&a, &cc).await["access_token"].as_str().unwrap());
    let rotate = std::process::Command::new(BIN)
        .args([
            "sts",
            "keys",
            "rotate",
            "--now",
            &format!("--database={}", cluster.db.url),
            &format!("--data-dir={}", cluster.dir.path().join("admin").display()),
        ])
        .env("AGENTID_MASTER_KEY", &cluster.master_key)
        .output()
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let rotated = Instant::now();
    for r in [&a, &b] {
        let http = r.client();
        let jwks_url = format!("{}/{TENANT}/discovery/v2.0/keys", r.url());
        let new = eventually(
            &format!("{} to sign with the new key", r.name),
            Duration::from_secs(RELOAD_SECS + 10),
            || async {
                let t = token(r, &cc).await;
                let k = kid(t["access_token"].as_str().unwrap());
                (k != old).then_some(k)
            },
        )
        .await;
        let jwks: Value = http
            .get(&jwks_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let published: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert!(
            published.contains(&new.as_str()),
            "{} publishes {new}: {jwks}",
            r.name
        );
        eprintln!(
            "{} signs with and publishes the rotated key {} ms after the rotation (reload period {RELOAD_SECS} s)",
            r.name,
            rotated.elapsed().as_millis()
        );
    }
    assert!(
        rotated.elapsed() < Duration::from_secs(RELOAD_SECS + 5),
        "both within their reload period"
    );
    store.close().await;
    drop((a, b));
    cluster.drop_db().await;
}

/// What the load's client saw.
#[derive(Default)]
struct Tally {
    /// (replica, uti) of every token answered.
    answered: Vec<(String, String)>,
    /// (replica, when, error) of every attempt that failed on the connection.
    connection_failures: Vec<(String, Instant, String)>,
    /// Answers other than 200.
    errors: Vec<String>,
    /// When each failed attempt's retry was answered.
    recovered_at: Vec<Instant>,
}

/// A client over both replicas, round robin, that retries a request on the other replica
/// when the connection fails, and stops using a replica whose connection failed (as a
/// load balancer ejects a dead endpoint).
struct RetryingClient {
    replicas: Vec<(String, String, reqwest::Client)>,
    down: Vec<AtomicBool>,
    next: std::sync::atomic::AtomicUsize,
    tally: Mutex<Tally>,
}

impl RetryingClient {
    async fn token(&self, form: &[(&str, &str)]) -> Option<String> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut failed = false;
        for i in 0..n {
            let k = (start + i) % n;
            if self.down[k].load(Ordering::SeqCst) {
                continue;
            }
            let (name, url, http) = &self.replicas[k];
            match post(http, &format!("{url}/{TENANT}/oauth2/v2.0/token"), form).await {
                Ok((200, body)) => {
                    let t = body["access_token"].as_str().unwrap().to_string();
                    let uti = claims(&t)["uti"].as_str().unwrap().to_string();
                    let mut tally = self.tally.lock().unwrap();
                    tally.answered.push((name.clone(), uti));
                    if failed {
                        tally.recovered_at.push(Instant::now());
                    }
                    return Some(t);
                }
                Ok((status, body)) => {
                    self.tally
                        .lock()
                        .unwrap()
                        .errors
                        .push(format!("{name}: {status} {body}"));
                    return None;
                }
                Err(e) => {
                    failed = true;
                    self.down[k].store(true, Ordering::SeqCst);
                    self.tally.lock().unwrap().connection_failures.push((
                        name.clone(),
                        Instant::now(),
                        format!("{e:?}"),
                    ));
                }
            }
        }
        self.tally
            .lock()
            .unwrap()
            .errors
            .push("no replica answered".into());
        None
    }

    /// One round: a client_credentials token, and an agent's T1 then T2.
    async fn round(&self) {
        let cc = [
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", GRAPH),
        ];
        self.token(&cc).await;
        let t1 = [
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", EXCHANGE),
            ("fmi_path", AGENT),
        ];
        if let Some(t1) = self.token(&t1).await {
            self.token(&[
                ("grant_type", "client_credentials"),
                ("client_id", AGENT),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &t1),
                ("scope", GRAPH),
            ])
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_costs_only_its_own_connections() {
    const WORKERS: usize = 4;
    let cluster = Cluster::new().await;
    let mut a = cluster.spawn("replica-a");
    a.wait_ready();
    let mut b = cluster.spawn("replica-b");
    b.wait_ready();
    let client = Arc::new(RetryingClient {
        replicas: [&a, &b]
            .iter()
            .map(|r| (r.name.clone(), r.url(), r.client()))
            .collect(),
        down: vec![AtomicBool::new(false), AtomicBool::new(false)],
        next: Default::default(),
        tally: Mutex::new(Tally::default()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    client.round().await;
                }
            })
        })
        .collect();
    // Steady load on both replicas, then A dies mid-flight.
    let load_started = Instant::now();
    eventually(
        "both replicas to answer under load",
        Duration::from_secs(60),
        || async {
            let tally = client.tally.lock().unwrap();
            let names: BTreeSet<&str> = tally.answered.iter().map(|(n, _)| n.as_str()).collect();
            (names.len() == 2 && tally.answered.len() >= 150).then_some(())
        },
    )
    .await;
    let before_kill = client.tally.lock().unwrap().answered.len();
    // Taken before the signal: failures recorded while `kill` is still returning are the kill's.
    let killed = Instant::now();
    a.proc.signal("KILL");
    assert!(!a.proc.wait_exit(Duration::from_secs(10)).success());
    // Keep the load on B for a while after the kill.
    eventually("load to continue on B", Duration::from_secs(60), || async {
        (client.tally.lock().unwrap().answered.len() >= before_kill + 150).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let load_time = load_started.elapsed();

    let tally = std::mem::take(&mut *client.tally.lock().unwrap());
    assert!(
        tally.errors.is_empty(),
        "answers other than 200: {:#?}",
        tally.errors
    );
    for (replica, at, error) in &tally.connection_failures {
        assert_eq!(
            replica, "replica-a",
            "only the killed replica failed: {error}"
        );
        assert!(
            *at >= killed,
            "no connection failed before the kill: {error}"
        );
    }
    let recovery = tally
        .recovered_at
        .iter()
        .map(|t| t.duration_since(killed))
        .max()
        .unwrap_or_default();
    // Every answered grant is in the audit, issued by the replica that answered it.
    let store = cluster.store().await;
    let audited: BTreeMap<String, String> = store
        .audit_events(&agentid_directory::audit::AuditQuery {
            category: Some("token".into()),
            result: Some("issued".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| Some((e.token_id?, e.replica)))
        .collect();
    let missing: Vec<&(String, String)> = tally
        .answered
        .iter()
        .filter(|(replica, uti)| audited.get(uti) != Some(replica))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered grants are not in the audit as issued by their replica: {missing:?}",
        missing.len(),
        tally.answered.len()
    );
    let per_replica = |name: &str| tally.answered.iter().filter(|(n, _)| n == name).count();
    eprintln!(
        "two replicas, SIGKILL of one under load: {} requests answered in {:.1} s ({} by A before the kill, {} by B), \
         {} connection failures (all on the killed replica, each retried on B), 0 other errors, \
         recovery {} ms (kill to the last failed request's answer from B); every answer is in the audit",
        tally.answered.len(),
        load_time.as_secs_f64(),
        per_replica("replica-a"),
        per_replica("replica-b"),
        tally.connection_failures.len(),
        recovery.as_millis()
    );
    store.close().await;
    drop((a, b));
    cluster.drop_db().await;
}
