//! A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager
//! (v1.20.2, see `scripts/kube-testbed.sh`) on free loopback ports, with their own CA.
//!
//! [`KubeCluster::shared`] starts one per test binary, lazily, and it lives until the test
//! process exits (see [`super::process`] for how no process outlives it). Tests isolate
//! themselves with [`KubeCluster::namespace`]. A test that must disturb the control plane (a
//! signing-key rotation restarts the API server) starts its own with [`KubeCluster::start`].
//!
//! What it is and is not: the API server serves the whole API (TokenRequest, TokenReview, CRDs,
//! webhooks, RBAC, service-account issuer discovery) and the controller-manager runs the
//! workload controllers (Deployments and StatefulSets become Pods, service accounts appear in
//! new namespaces, garbage collection). There is no scheduler and no kubelet: Pods stay Pending
//! and no container runs.

use super::bins::{Bins, MissingBinaries};
use super::pki::{Identity, Pki, PkiError, SigningKey};
use super::process;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long the API server may take to report ready (3–5 s is usual; the machine is shared).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a new namespace may take to get its `default` service account.
const NAMESPACE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BedError {
    #[error(transparent)]
    MissingBinaries(#[from] MissingBinaries),
    #[error("the bed's PKI: {0}")]
    Pki(#[from] PkiError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{component} exited ({status}) while starting; the end of its log:\n{log}")]
    Exited {
        component: &'static str,
        status: String,
        log: String,
    },
    #[error("{component} was not ready within {after:?}; the end of its log:\n{log}")]
    Timeout {
        component: &'static str,
        after: Duration,
        log: String,
    },
    #[error("the Kubernetes API: {0}")]
    Kube(#[from] ::kube::Error),
    #[error("the bed's kubeconfig: {0}")]
    Kubeconfig(#[from] ::kube::config::KubeconfigError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BedError {
    let what = what.into();
    move |source| BedError::Io { what, source }
}

/// One control plane. Dropping it kills its processes and removes its files.
pub struct KubeCluster {
    dir: PathBuf,
    bins: Bins,
    api_port: u16,
    etcd_port: u16,
    etcd_peer_port: u16,
    controller_manager_port: u16,
    api_url: String,
    ca_pem: String,
    admin: Identity,
    /// Service-account key files (private, public), oldest first; the last one signs.
    signing_keys: Vec<(PathBuf, PathBuf)>,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    controller_manager: Option<Child>,
    started_in: Duration,
}

impl KubeCluster {
    /// The control plane of this test binary, started on first use. Fails (never skips) with
    /// instructions when the binaries are missing.
    pub async fn shared() -> &'static KubeCluster {
        tokio::task::spawn_blocking(Self::shared_blocking)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// [`Self::shared`] for synchronous code.
    pub fn shared_blocking() -> &'static KubeCluster {
        static SHARED: OnceLock<Result<KubeCluster, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            // Its own thread and runtime: the bed must not belong to the runtime of the test
            // that happens to start it.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("a runtime to start the kube bed: {e}"))?;
                runtime
                    .block_on(KubeCluster::start())
                    .map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("starting the kube bed panicked".to_string()))
        });
        match started {
            Ok(cluster) => cluster,
            Err(e) => panic!("the Kubernetes test bed did not start: {e}"),
        }
    }

    /// Starts a control plane of its own (for tests that restart or break it).
    pub async fn start() -> Result<KubeCluster, BedError> {
        let started = Instant::now();
        let bins = Bins::locate()?;
        process::sweep_stale_dirs();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = process::beds_root().join(format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        // The admin key and the signing keys are in there.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io_err(format!("chmod {}", dir.display())))?;
        process::remove_at_exit(&dir);

        let pki = Pki::generate()?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(io_err(format!("write {name}")))
        };
        write("ca.crt", &pki.ca.cert_pem)?;
        write("serving.crt", &pki.serving.cert_pem)?;
        write("serving.key", &pki.serving.key_pem)?;
        let [api_port, etcd_port, etcd_peer_port, controller_manager_port] = free_ports()?;
        let api_url = format!("https://127.0.0.1:{api_port}");
        write("kubeconfig", &kubeconfig(&api_url, &pki.ca, &pki.admin))?;

        let mut bed = KubeCluster {
            dir,
            bins,
            api_port,
            etcd_port,
            etcd_peer_port,
            controller_manager_port,
            api_url,
            ca_pem: pki.ca.cert_pem,
            admin: pki.admin,
            signing_keys: Vec::new(),
            etcd: None,
            apiserver: None,
            controller_manager: None,
            started_in: Duration::ZERO,
        };
        bed.add_signing_key()?;
        // The API server retries etcd until it answers, so both start at once.
        bed.etcd = Some(bed.spawn("etcd", bed.etcd_command())?);
        bed.apiserver = Some(bed.spawn("kube-apiserver", bed.apiserver_command())?);
        bed.wait_ready().await?;
        // kube-controller-manager gives up if the API server is not up within seconds.
        bed.controller_manager =
            Some(bed.spawn("kube-controller-manager", bed.controller_manager_command())?);
        bed.bootstrap().await?;
        bed.started_in = started.elapsed();
        eprintln!(
            "kube test bed (kube-apiserver v1.20.2) ready at {} in {} ms",
            bed.api_url,
            bed.started_in.as_millis()
        );
        Ok(bed)
    }

    /// `https://127.0.0.1:PORT`, no trailing slash.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The service-account issuer (`--service-account-issuer`): the API server's own URL, so
    /// that OIDC discovery against the issuer reaches the API server (over [`Self::ca_pem`]).
    pub fn issuer(&self) -> &str {
        &self.api_url
    }

    /// The bed's CA, which signed the API server's serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// [`Self::ca_pem`] as a file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A kubeconfig with the admin identity, for kubectl and kube-rs.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The admin client certificate (user [`super::ADMIN_USER`], group `system:masters`).
    pub fn admin(&self) -> &Identity {
        &self.admin
    }

    /// How long [`Self::start`] took, to `/readyz` and the bootstrap objects.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The directory with the bed's files and the components' logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many service-account keys the API server verifies with (the last one signs).
    pub fn signing_key_count(&self) -> usize {
        self.signing_keys.len()
    }

    /// A kube-rs client acting as the admin. Make one per test: a client belongs to the tokio
    /// runtime it was made on.
    pub async fn client(&self) -> ::kube::Client {
        self.try_client().await.expect("a kube client for the bed")
    }

    async fn try_client(&self) -> Result<::kube::Client, BedError> {
        let text = std::fs::read_to_string(self.kubeconfig_path())
            .map_err(io_err("read the bed's kubeconfig"))?;
        let kubeconfig = ::kube::config::Kubeconfig::from_yaml(&text)?;
        let config = ::kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &::kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(::kube::Client::try_from(config)?)
    }

    /// An HTTPS client that trusts the bed's CA and presents the admin certificate.
    pub fn http(&self) -> reqwest::Client {
        let identity = reqwest::Identity::from_pem(
            format!("{}{}", self.admin.cert_pem, self.admin.key_pem).as_bytes(),
        )
        .expect("the admin identity");
        self.http_builder()
            .identity(identity)
            .build()
            .expect("an HTTP client")
    }

    /// An HTTPS client that trusts the bed's CA and presents no credentials
    /// (`system:anonymous`).
    pub fn anonymous_http(&self) -> reqwest::Client {
        self.http_builder().build().expect("an HTTP client")
    }

    fn http_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("the bed's CA");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .no_proxy()
            .timeout(Duration::from_secs(30))
    }

    /// kubectl (see `scripts/kube-testbed.sh` for which) with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bins.kubectl());
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig_path().display()))
            .arg(format!(
                "--cache-dir={}",
                self.dir.join("kubectl-cache").display()
            ))
            .env_remove("KUBECONFIG");
        command
    }

    /// Creates a namespace `PREFIX-xxxxxxxx` of its own for one test, and waits until the
    /// controller-manager has given it its `default` service account (Pods need one).
    pub async fn namespace(&self, prefix: &str) -> String {
        let mut base: String = prefix
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(50)
            .collect();
        base = base.trim_matches('-').to_string();
        if base.is_empty() {
            base.push_str("test");
        }
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{base}-{}", &suffix[..8]);
        let client = self.client().await;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        ::kube::Api::<Namespace>::all(client.clone())
            .create(&Default::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let accounts = ::kube::Api::<ServiceAccount>::namespaced(client, &name);
        let deadline = Instant::now() + NAMESPACE_TIMEOUT;
        loop {
            match accounts.get_opt("default").await {
                Ok(Some(_)) => return name,
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => panic!(
                    "namespace {name} got no default service account within {NAMESPACE_TIMEOUT:?} \
                     (is kube-controller-manager running? its log: {})",
                    self.dir.join("kube-controller-manager.log").display()
                ),
                Err(e) => panic!("read service accounts of {name}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A service-account token from the TokenRequest API (what kubelet projects into a pod).
    pub async fn token_request(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        expiration_seconds: i64,
    ) -> String {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_string()],
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        ::kube::Api::<ServiceAccount>::namespaced(self.client().await, namespace)
            .create_token_request(service_account, &Default::default(), &request)
            .await
            .unwrap_or_else(|e| {
                panic!("TokenRequest for {namespace}/{service_account} ({audience}): {e}")
            })
            .status
            .map(|s| s.token)
            .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{service_account}: no status"))
    }

    /// Writes a TokenRequest token where a projected volume would put it, atomically (as
    /// kubelet does), for parts that read the token from a file (the sidecar).
    pub async fn write_token_file(
        &self,
        path: &Path,
        namespace: &str,
        service_account: &str,
        audience: &str,
    ) {
        let token = self
            .token_request(namespace, service_account, audience, 3600)
            .await;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, token).expect("write the token");
        std::fs::rename(&tmp, path).expect("rename the token");
    }

    /// Rotates the service-account signing key the way an operator does: the API server
    /// restarts signing with a new key and still verifying (and publishing in its JWKS) every
    /// earlier one. etcd and the controller-manager keep running.
    pub async fn rotate_signing_key(&mut self) -> Result<(), BedError> {
        self.add_signing_key()?;
        let started = Instant::now();
        if let Some(mut old) = self.apiserver.take() {
            // 1.20 takes ~4.5 s to drain on SIGTERM; nothing here needs the drain (etcd holds
            // the state), so it gets a second before SIGKILL.
            process::stop(&mut old, Duration::from_secs(1));
        }
        let stopped = started.elapsed();
        self.apiserver = Some(self.spawn("kube-apiserver", self.apiserver_command())?);
        self.wait_ready().await?;
        eprintln!(
            "kube test bed: API server stopped in {} ms, ready again with the new key in {} ms",
            stopped.as_millis(),
            (started.elapsed() - stopped).as_millis()
        );
        Ok(())
    }

    fn add_signing_key(&mut self) -> Result<(), BedError> {
        let n = self.signing_keys.len();
        let key = SigningKey::generate()?;
        let private = self.dir.join(format!("sa-{n}.key"));
        let public = self.dir.join(format!("sa-{n}.pub"));
        std::fs::write(&private, key.private_pem).map_err(io_err("write a signing key"))?;
        std::fs::write(&public, key.public_pem).map_err(io_err("write a signing key"))?;
        self.signing_keys.push((private, public));
        Ok(())
    }

    fn signing_key(&self) -> &Path {
        &self.signing_keys[self.signing_keys.len() - 1].0
    }

    fn etcd_command(&self) -> Command {
        let client = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let mut c = Command::new(self.bins.etcd());
        c.arg("--name=bed")
            .arg(format!("--data-dir={}", self.dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bed={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .arg("--quota-backend-bytes=268435456");
        c
    }

    fn apiserver_command(&self) -> Command {
        let d = &self.dir;
        let mut c = Command::new(self.bins.apiserver());
        c.arg(format!(
            "--etcd-servers=http://127.0.0.1:{}",
            self.etcd_port
        ))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", self.api_port))
        .arg("--insecure-port=0")
        // Otherwise the JWKS URI and the `kubernetes` Service name the host's address.
        .arg("--advertise-address=127.0.0.1")
        .arg(format!(
            "--tls-cert-file={}",
            d.join("serving.crt").display()
        ))
        .arg(format!(
            "--tls-private-key-file={}",
            d.join("serving.key").display()
        ))
        .arg(format!("--client-ca-file={}", d.join("ca.crt").display()))
        .arg("--authorization-mode=RBAC")
        .arg(
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,\
                 MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
        )
        .arg(format!("--service-account-issuer={}", self.issuer()))
        .arg(format!(
            "--service-account-jwks-uri={}/openid/v1/jwks",
            self.issuer()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            self.signing_key().display()
        ));
        for (_, public) in &self.signing_keys {
            c.arg(format!("--service-account-key-file={}", public.display()));
        }
        c.arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--allow-privileged=true")
            .arg("--profiling=false")
            .arg("--logtostderr=true")
            .arg("--v=0");
        c
    }

    fn controller_manager_command(&self) -> Command {
        let d = &self.dir;
        let kubeconfig = self.kubeconfig_path();
        let mut c = Command::new(self.bins.controller_manager());
        c.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                kubeconfig.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                kubeconfig.display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.controller_manager_port))
            // The insecure port (10252 by default) would collide between test binaries.
            .arg("--port=0")
            .arg("--leader-elect=false")
            // No nodes, no cloud, no certificate signing: only the workload controllers.
            .arg(
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,\
                 -csrsigning,-csrapproving,-csrcleaner,-attachdetach,-ttl",
            )
            .arg(format!(
                "--service-account-private-key-file={}",
                self.signing_key().display()
            ))
            .arg(format!("--root-ca-file={}", d.join("ca.crt").display()))
            .arg("--use-service-account-credentials=false")
            .arg("--profiling=false")
            .arg("--logtostderr=true")
            .arg("--v=0");
        c
    }

    fn log_path(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.log"))
    }

    fn spawn(&self, component: &str, mut command: Command) -> Result<Child, BedError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(component))
            .map_err(io_err(format!("open the log of {component}")))?;
        let log2 = log
            .try_clone()
            .map_err(io_err(format!("open the log of {component}")))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        process::spawn(command).map_err(io_err(format!("start {component}")))
    }

    fn log_tail(&self, component: &str) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.log_path(component)) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Polls `/readyz` (public, as in every cluster) until 200, failing early if etcd or the
    /// API server exits.
    async fn wait_ready(&mut self) -> Result<(), BedError> {
        let http = self.anonymous_http();
        let url = format!("{}/readyz", self.api_url);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ]
            .into_iter()
            .find_map(|(component, child)| {
                let status = child.as_mut()?.try_wait().ok().flatten()?;
                Some((component, status))
            });
            if let Some((component, status)) = exited {
                return Err(BedError::Exited {
                    component,
                    status: status.to_string(),
                    log: self.log_tail(component),
                });
            }
            if let Ok(response) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BedError::Timeout {
                    component: "kube-apiserver",
                    after: READY_TIMEOUT,
                    log: self.log_tail("kube-apiserver"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What a cluster that publishes its issuer has: anonymous access to
    /// `/.well-known/openid-configuration` and `/openid/v1/jwks`.
    async fn bootstrap(&self) -> Result<(), BedError> {
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("service-account-issuer-discovery-unauthenticated".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "system:service-account-issuer-discovery".into(),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Group".into(),
                name: "system:unauthenticated".into(),
                namespace: None,
            }]),
        };
        ::kube::Api::<ClusterRoleBinding>::all(self.try_client().await?)
            .create(&Default::default(), &binding)
            .await?;
        Ok(())
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for child in [
            self.controller_manager.as_mut(),
            self.apiserver.as_mut(),
            self.etcd.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            process::stop(child, Duration::ZERO);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        process::forget_dir(&self.dir);
    }
}

/// Four distinct free loopback ports (held open together so that they differ).
fn free_ports() -> Result<[u16; 4], BedError> {
    let mut listeners = Vec::new();
    let mut ports = [0u16; 4];
    for port in &mut ports {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("bind a loopback port"))?;
        *port = listener
            .local_addr()
            .map_err(io_err("bind a loopback port"))?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}

fn kubeconfig(api_url: &str, ca: &Identity, admin: &Identity) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: bed
  cluster:
    server: {api_url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: bed
  context:
    cluster: bed
    user: admin
    namespace: default
current-context: bed
",
        ca = b64(&ca.cert_pem),
        cert = b64(&admin.cert_pem),
        key = b64(&admin.key_pem),
    )
}
