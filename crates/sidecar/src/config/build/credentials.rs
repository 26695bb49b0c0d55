//! The blueprint's client credentials (docs/sidecar.md §9.3, §12.4): `AzureAd__ClientCredentials__N__*`,
//! or the federated token file of Azure workload identity when none is configured.

use super::{Warnings, non_empty};
use crate::config::raw::RawCredential;
use crate::config::{ConfigError, CredentialConfig, Secret};
use std::path::{Path, PathBuf};

/// Every configured credential, in index order; at least one.
pub(super) fn credentials(
    raw: Vec<RawCredential>,
    federated_file: Option<&Path>,
    warnings: &mut Warnings,
) -> Result<Vec<CredentialConfig>, ConfigError> {
    let mut credentials = Vec::new();
    for (index, c) in raw.into_iter().enumerate() {
        credentials.push(credential(index, c, federated_file, warnings)?);
    }
    if credentials.is_empty() {
        match federated_file {
            Some(path) => credentials.push(CredentialConfig::AssertionFile {
                index: 0,
                path: path.to_path_buf(),
            }),
            None => return Err(ConfigError::NoCredential),
        }
    }
    Ok(credentials)
}

fn credential(
    index: usize,
    c: RawCredential,
    federated_file: Option<&Path>,
    warnings: &mut Warnings,
) -> Result<CredentialConfig, ConfigError> {
    let key = |k: &str| format!("AzureAd__ClientCredentials__{index}__{k}");
    let source = non_empty(c.source_type).ok_or_else(|| ConfigError::Missing {
        key: key("SourceType"),
    })?;
    let is = |name: &str, number: &str| source.eq_ignore_ascii_case(name) || source == number;
    if is("ClientSecret", "6") {
        let secret =
            c.client_secret
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ConfigError::Missing {
                    key: key("ClientSecret"),
                })?;
        return Ok(CredentialConfig::ClientSecret {
            index,
            secret: Secret::new(secret),
        });
    }
    if is("SignedAssertionFilePath", "8") {
        let path = match (
            non_empty(c.signed_assertion_file_disk_path),
            non_empty(c.signed_assertion_file_path),
        ) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(p)) => {
                warnings.push((
                    "config_key_alias".into(),
                    format!(
                        "{} is read as {} (upstream binds it to nothing)",
                        key("SignedAssertionFilePath"),
                        key("SignedAssertionFileDiskPath")
                    ),
                ));
                PathBuf::from(p)
            }
            (None, None) => {
                federated_file
                    .map(Path::to_path_buf)
                    .ok_or_else(|| ConfigError::Missing {
                        key: key("SignedAssertionFileDiskPath"),
                    })?
            }
        };
        return Ok(CredentialConfig::AssertionFile { index, path });
    }
    if is("Path", "3") {
        if non_empty(c.certificate_password).is_some() {
            return Err(ConfigError::CertificatePassword {
                key: key("CertificatePassword"),
            });
        }
        let cert_path = non_empty(c.certificate_disk_path)
            .map(PathBuf::from)
            .ok_or_else(|| ConfigError::Missing {
                key: key("CertificateDiskPath"),
            })?;
        return Ok(CredentialConfig::Certificate {
            index,
            cert_path,
            key_path: non_empty(c.certificate_key_path).map(PathBuf::from),
        });
    }
    Err(ConfigError::UnsupportedSourceType {
        key: key("SourceType"),
        source_type: source,
    })
}
