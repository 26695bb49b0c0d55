//! The blueprint's credentials, tried in index order (docs/sidecar.md §9.3). A credential that fails
//! to load is skipped; one the authority rejects is demoted for 5 min.

use super::assertion_file::AssertionFile;
use super::certificate::CertificateCredential;
use super::form::CredentialParams;
use crate::clock::SharedClock;
use crate::config::{Config, CredentialConfig, Secret};
use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};

const DEMOTION: i64 = 300;

enum Source {
    Secret(Secret),
    File(AssertionFile),
    Certificate(CertificateCredential),
}

pub struct Credential {
    pub index: usize,
    source: Source,
}

impl Credential {
    /// Whether the material comes from the federated token file (re-read on rejection).
    pub fn is_file(&self) -> bool {
        matches!(self.source, Source::File(_))
    }

    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Secret(_) => "ClientSecret",
            Source::File(_) => "SignedAssertionFilePath",
            Source::Certificate(_) => "Path",
        }
    }

    /// The credential parameters for a request to `token_endpoint`.
    pub async fn load(
        &self,
        token_endpoint: &str,
        force_reread: bool,
    ) -> Result<CredentialParams, String> {
        match &self.source {
            Source::Secret(s) => Ok(CredentialParams::Secret(s.expose().to_string())),
            Source::File(f) => f
                .get(force_reread)
                .await
                .map(|a| CredentialParams::Assertion(a.to_string()))
                .map_err(|e| e.to_string()),
            Source::Certificate(c) => c
                .assertion(token_endpoint)
                .map(CredentialParams::Assertion)
                .map_err(|e| e.to_string()),
        }
    }
}

pub struct Credentials {
    entries: Vec<Credential>,
    demoted_until: Mutex<Vec<i64>>,
    clock: SharedClock,
}

impl Credentials {
    pub fn new(config: &Config, clock: SharedClock, metrics: Arc<Metrics>) -> Self {
        let entries: Vec<Credential> = config
            .credentials
            .iter()
            .map(|c| Credential {
                index: c.index(),
                source: match c {
                    CredentialConfig::ClientSecret { secret, .. } => Source::Secret(secret.clone()),
                    CredentialConfig::AssertionFile { path, .. } => Source::File(
                        AssertionFile::new(path.clone(), clock.clone(), metrics.clone()),
                    ),
                    CredentialConfig::Certificate {
                        cert_path,
                        key_path,
                        ..
                    } => Source::Certificate(CertificateCredential::new(
                        cert_path.clone(),
                        key_path.clone(),
                        &config.client_id,
                        config.send_x5c,
                        clock.clone(),
                    )),
                },
            })
            .collect();
        let n = entries.len();
        Self {
            entries,
            demoted_until: Mutex::new(vec![i64::MIN; n]),
            clock,
        }
    }

    /// Credentials in the order to try them: the ones not demoted first, each group by index.
    pub fn ordered(&self) -> Vec<&Credential> {
        let now = self.clock.now();
        let demoted = self.demoted_until.lock().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<(bool, usize)> = (0..self.entries.len())
            .map(|i| (demoted[i] > now, i))
            .collect();
        order.sort();
        order.into_iter().map(|(_, i)| &self.entries[i]).collect()
    }

    pub fn demote(&self, cred: &Credential) {
        let now = self.clock.now();
        if let Some(pos) = self.entries.iter().position(|c| c.index == cred.index) {
            let mut demoted = self.demoted_until.lock().unwrap_or_else(|p| p.into_inner());
            demoted[pos] = now + DEMOTION;
        }
        tracing::warn!(
            event = "credential_demoted",
            credential = cred.index,
            kind = cred.kind(),
            "the authority rejected this credential; it is tried last for 5 min"
        );
    }

    pub fn is_demoted(&self, index: usize) -> bool {
        let now = self.clock.now();
        let demoted = self.demoted_until.lock().unwrap_or_else(|p| p.into_inner());
        self.entries
            .iter()
            .position(|c| c.index == index)
            .is_some_and(|p| demoted[p] > now)
    }
}
