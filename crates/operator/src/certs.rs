//! The webhook serving certificate (docs/operator.md §4.3): the operator makes its own CA and a
//! certificate for its Service names (and its listener's address), keeps the certificate in a
//! Secret shared by the replicas, and re-makes both when the Secret is gone or near expiry. The
//! CA's private key is never stored: a new certificate means a new CA, whose certificate the
//! webhook configurations' `caBundle` then carries.

use crate::{Config, Error, WebhookEndpoint};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeMap;
use std::net::SocketAddr;

const NOT_AFTER: &str = "agentid.dev/not-after";
const LIFETIME_DAYS: i64 = 365;
/// Re-made this long before it expires.
const RENEW_BEFORE_DAYS: i64 = 30;

pub struct Serving {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The names the API server uses to reach this replica's webhooks.
pub fn names(cfg: &Config, addr: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    match &cfg.endpoint {
        WebhookEndpoint::Service { name, .. } => {
            let ns = &cfg.operator_namespace;
            names.push(format!("{name}.{ns}.svc"));
            names.push(format!("{name}.{ns}.svc.cluster.local"));
        }
        WebhookEndpoint::Listener => {
            if !addr.ip().is_unspecified() {
                names.push(addr.ip().to_string());
            }
        }
    }
    names.push("127.0.0.1".into());
    names.dedup();
    names
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::Cert(e.to_string())
}

fn generate(names: Vec<String>) -> Result<(Serving, i64), Error> {
    use chrono::Datelike;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let now = time_now();
    let not_after = now + LIFETIME_DAYS * 86400;
    let validity = |p: &mut CertificateParams| {
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        // rcgen takes a calendar day (its time type is not re-exported).
        let d = chrono::DateTime::from_timestamp(not_after, 0).unwrap_or_default();
        p.not_after = rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "agentid operator webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    validity(&mut ca);
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(cert_err)?;
    let mut leaf = CertificateParams::new(names).map_err(cert_err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "agentid operator webhook");
    validity(&mut leaf);
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(cert_err)?;
    Ok((
        Serving {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
        not_after,
    ))
}

fn time_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn read(s: &Secret) -> Option<Serving> {
    let not_after: i64 = s
        .metadata
        .annotations
        .as_ref()?
        .get(NOT_AFTER)?
        .parse()
        .ok()?;
    if not_after < time_now() + RENEW_BEFORE_DAYS * 86400 {
        return None;
    }
    let data = s.data.as_ref()?;
    let get = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
    Some(Serving {
        ca_pem: get("ca.crt")?,
        cert_pem: get("tls.crt")?,
        key_pem: get("tls.key")?,
    })
}

/// The serving certificate from the shared Secret, made (and stored) when missing or expiring.
pub async fn ensure(kube: &kube::Client, cfg: &Config, addr: SocketAddr) -> Result<Serving, Error> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), &cfg.operator_namespace);
    let name = cfg.cert_secret();
    let existing = api.get_opt(&name).await?;
    if let Some(serving) = existing.as_ref().and_then(read) {
        return Ok(serving);
    }
    let (serving, not_after) = generate(names(cfg, addr))?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(cfg.operator_namespace.clone()),
            annotations: Some(BTreeMap::from([(
                NOT_AFTER.to_string(),
                not_after.to_string(),
            )])),
            resource_version: existing
                .as_ref()
                .and_then(|s| s.metadata.resource_version.clone()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "ca.crt".to_string(),
                ByteString(serving.ca_pem.clone().into_bytes()),
            ),
            (
                "tls.crt".to_string(),
                ByteString(serving.cert_pem.clone().into_bytes()),
            ),
            (
                "tls.key".to_string(),
                ByteString(serving.key_pem.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    let stored = match existing {
        Some(_) => api.replace(&name, &PostParams::default(), &secret).await,
        None => api.create(&PostParams::default(), &secret).await,
    };
    match stored {
        Ok(_) => {
            tracing::info!(secret = %name, "made a new webhook serving certificate");
            Ok(serving)
        }
        // Another replica made one first: use it.
        Err(kube::Error::Api(e)) if e.code == 409 => api
            .get_opt(&name)
            .await?
            .as_ref()
            .and_then(read)
            .ok_or_else(|| Error::Cert(format!("Secret {name} changed but is unusable"))),
        Err(e) => Err(e.into()),
    }
}
