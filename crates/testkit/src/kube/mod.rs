//! Kubernetes for tests: a real control plane ([`KubeCluster`], kube-apiserver v1.20.2 built by
//! `scripts/kube-testbed.sh`) and an emulated service-account token issuer ([`KubeIssuer`]) for
//! what a real cluster cannot give on demand.

mod bins;
mod cluster;
mod issuer;
mod pki;
mod process;

pub use bins::{ENV as BIN_ENV, MissingBinaries};
pub use cluster::{BedError, KubeCluster};
pub use issuer::KubeIssuer;
pub use pki::{ADMIN_GROUP, ADMIN_USER, Identity};
pub use process::sweep_stale_dirs;
