//! `agentid operator` (docs/operator.md): AgentBlueprint and AgentIdentity as Kubernetes
//! resources, reconciled through the Graph-compatible API (agentid-graphclient, the same client
//! as `agentid admin`), and the token sidecar injected into the Pods bound to them.
//!
//! Every replica serves the admission webhooks; one, the holder of a Lease, runs the
//! controllers ([`leader`]).

pub mod certs;
pub mod controller;
pub mod crd;
pub mod directory;
pub mod inject;
pub mod leader;
pub mod model;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the admission handlers need (the webhook server and the Pod injection both read it):
/// the API client, the operator's configuration, and whether the cluster runs native sidecars.
pub struct AdmissionContext {
    pub kube: kube::Client,
    pub cfg: Arc<Config>,
    pub native_sidecars: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the directory: {0}")]
    Graph(#[from] agentid_graphclient::GraphError),
    #[error("invalid spec: {0}")]
    Invalid(#[from] model::InvalidSpec),
    #[error("{0} not found")]
    Missing(String),
    #[error("{0}")]
    NotReady(String),
    #[error("the webhook certificate: {0}")]
    Cert(String),
    #[error("the webhook listener: {0}")]
    Listen(#[source] std::io::Error),
    #[error("lost the leader lease {0}")]
    LostLease(String),
}

/// How the API server reaches the webhooks.
#[derive(Debug, Clone)]
pub enum WebhookEndpoint {
    /// A Service in the operator's namespace (the Deployment of deploy/operator).
    Service { name: String, port: u16 },
    /// `https://` the listener's own address: an operator outside the cluster whose API server
    /// reaches it directly (tests, local runs).
    Listener,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Reconcile and admit only this namespace (None: all).
    pub watch_namespace: Option<String>,
    /// Where the Lease and the webhook certificate Secret live.
    pub operator_namespace: String,
    /// This replica's name in the Lease.
    pub identity: String,
    /// Names the Lease, the certificate Secret and the webhook configurations (several operators
    /// can share a cluster, one per watched namespace).
    pub instance: String,
    pub lease_duration: Duration,
    /// How often every resource is compared with the directory (drift repair).
    pub resync: Duration,
    pub sidecar_image: String,
    pub listen: SocketAddr,
    pub endpoint: WebhookEndpoint,
    /// Webhooks only see namespaces with this label (key, value).
    pub namespace_label: Option<(String, String)>,
    /// The API server's CA (for issuer registration by discovery).
    pub cluster_ca_pem: Option<String>,
}

impl Config {
    pub fn cert_secret(&self) -> String {
        format!("{}-webhook-tls", self.instance)
    }
    pub fn lease_name(&self) -> String {
        format!("{}-leader", self.instance)
    }
}

/// A running operator replica.
pub struct Running {
    /// The webhook listener's address (port 0 resolved).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Stops it at once (a crash, as far as the others can tell: the Lease is not released).
    pub fn kill(&self) {
        self.task.abort();
    }
    /// Waits for it to end (an error, or the Lease lost).
    pub async fn wait(self) -> Result<(), Error> {
        self.task
            .await
            .unwrap_or_else(|e| Err(Error::NotReady(format!("the operator task: {e}"))))
    }
}

/// Starts one replica: the webhook certificate and configurations, the webhook server, and the
/// controllers once this replica holds the Lease.
pub async fn start(kube: kube::Client, cfg: Config) -> Result<Running, Error> {
    let cfg = Arc::new(cfg);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(Error::Listen)?;
    let addr = listener.local_addr().map_err(Error::Listen)?;
    let serving = certs::ensure(&kube, &cfg, addr).await?;
    webhook::apply_configurations(&kube, &cfg, &serving.ca_pem, addr).await?;
    let native_sidecars = inject::supports_native_sidecars(&kube).await;
    let state = Arc::new(AdmissionContext {
        kube: kube.clone(),
        cfg: cfg.clone(),
        native_sidecars,
    });
    let server = webhook::serve(listener, &serving, state)?;
    let task = tokio::spawn(async move {
        let controllers = async {
            let lease = leader::Lease::new(&kube, &cfg);
            lease.acquire().await?;
            tracing::info!(identity = %cfg.identity, "leading: starting the controllers");
            let ctx = Arc::new(controller::Ctx::new(kube.clone(), cfg.clone()));
            tokio::select! {
                r = lease.hold() => r,
                () = controller::run(ctx) => Ok(()),
            }
        };
        tokio::select! {
            r = controllers => r,
            r = server => r,
        }
    });
    Ok(Running { addr, task })
}
