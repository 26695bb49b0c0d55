//! `agentid operator`: run the operator (docs/operator.md), or print its CRDs.

use agentid_operator::{Config, WebhookEndpoint};
use anyhow::Context;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum OperatorCommand {
    /// Run the operator: controllers (on the Lease holder) and admission webhooks (every replica).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (YAML) to apply before the operator starts.
    Crds,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Reconcile and admit only this namespace (default: all).
    #[arg(long, env = "AGENTID_OPERATOR_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// The operator's own namespace (the Lease, the webhook certificate Secret, the Service).
    #[arg(long, env = "POD_NAMESPACE", default_value = "agentid-system")]
    operator_namespace: String,
    /// This replica's name in the Lease (default: $POD_NAME, else a random one).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Names the Lease, the certificate Secret and the webhook configurations.
    #[arg(long, default_value = "agentid-operator")]
    instance: String,
    /// Lease duration: how long the other replicas wait for a silent leader.
    #[arg(long, default_value = "15", value_name = "SECONDS")]
    lease_seconds: u64,
    /// How often each resource is compared with the directory (drift repair).
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    resync_seconds: u64,
    /// The sidecar image injected into Pods.
    #[arg(long, default_value = "ghcr.io/agentid/agentid:0.1.0")]
    sidecar_image: String,
    /// The webhook listener.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: std::net::SocketAddr,
    /// The Service in front of the webhooks (port 443). Without it, the API server is pointed at
    /// https://LISTEN directly (an operator running outside the cluster).
    #[arg(long, default_value = "agentid-operator-webhook")]
    service: Option<String>,
    /// Webhooks only see namespaces with this label (KEY=VALUE).
    #[arg(long)]
    namespace_label: Option<String>,
}

pub async fn run(cmd: OperatorCommand) -> anyhow::Result<()> {
    match cmd {
        OperatorCommand::Crds => {
            print!("{}", agentid_operator::crd::crds_yaml()?);
            Ok(())
        }
        OperatorCommand::Run(a) => {
            let a = *a;
            let kube = kube::Client::try_default()
                .await
                .context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
            let namespace_label = match a.namespace_label {
                Some(l) => Some(
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .context("--namespace-label is KEY=VALUE")?,
                ),
                None => None,
            };
            let cluster_ca_pem =
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
                    .ok();
            let cfg = Config {
                watch_namespace: a.namespace,
                operator_namespace: a.operator_namespace,
                identity: a
                    .identity
                    .unwrap_or_else(|| format!("agentid-operator-{}", uuid::Uuid::new_v4())),
                instance: a.instance,
                lease_duration: Duration::from_secs(a.lease_seconds.max(2)),
                resync: Duration::from_secs(a.resync_seconds.max(1)),
                sidecar_image: a.sidecar_image,
                listen: a.listen,
                endpoint: match a.service {
                    Some(name) if !name.is_empty() => WebhookEndpoint::Service { name, port: 443 },
                    _ => WebhookEndpoint::Listener,
                },
                namespace_label,
                cluster_ca_pem,
            };
            let running = agentid_operator::start(kube, cfg).await?;
            eprintln!("agentid operator: webhooks on {}", running.addr);
            tokio::select! {
                r = running.wait() => r.context("the operator stopped"),
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
    }
}
