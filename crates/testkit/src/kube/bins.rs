//! Finds the test bed's binaries: `$AGENTID_KUBE_BIN`, else where `scripts/kube-testbed.sh`
//! puts them (`~/.cache/agentid/kube/bin`). Missing binaries are an error, never a skip: CI
//! must run the tests that need the cluster.

use std::path::{Path, PathBuf};

pub const ENV: &str = "AGENTID_KUBE_BIN";
const NAMES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];

#[derive(Debug, thiserror::Error)]
#[error(
    "the Kubernetes test bed's binaries are missing from {dir} ({missing}): run \
     `bash scripts/kube-testbed.sh` (it builds them once, about 4 minutes) and set {ENV} to the \
     directory it prints on its last line; `bash scripts/test` does both"
)]
pub struct MissingBinaries {
    dir: String,
    missing: String,
}

#[derive(Clone, Debug)]
pub struct Bins {
    pub dir: PathBuf,
}

impl Bins {
    pub fn locate() -> Result<Bins, MissingBinaries> {
        let dir = match std::env::var_os(ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache/agentid/kube/bin"),
        };
        let missing: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|n| !is_executable(&dir.join(n)))
            .collect();
        if missing.is_empty() {
            Ok(Bins { dir })
        } else {
            Err(MissingBinaries {
                dir: dir.display().to_string(),
                missing: missing.join(", "),
            })
        }
    }

    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    pub fn apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }
    pub fn controller_manager(&self) -> PathBuf {
        self.dir.join("kube-controller-manager")
    }
    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
