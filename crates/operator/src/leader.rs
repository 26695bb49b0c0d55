//! Leader election with a `coordination.k8s.io/v1` Lease (docs/operator.md §5): one replica
//! runs the controllers; the others wait and take over when the holder stops renewing for a
//! lease duration. Every write is a replace at the read resourceVersion, so two replicas can
//! never both believe they won.

use crate::{Config, Error};
use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use std::time::Duration;

pub struct Lease {
    api: Api<KubeLease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Lease {
    pub fn new(kube: &kube::Client, cfg: &Config) -> Lease {
        Lease {
            api: Api::namespaced(kube.clone(), &cfg.operator_namespace),
            name: cfg.lease_name(),
            identity: cfg.identity.clone(),
            duration: cfg.lease_duration,
        }
    }

    fn retry(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(200))
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(now)),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: true when this replica holds the Lease afterwards.
    async fn try_take(&self) -> Result<bool, Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = KubeLease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(r), Some(d)) => {
                r.0.as_second() + i64::from(d) < k8s_openapi::jiff::Timestamp::now().as_second()
            }
            _ => true,
        };
        if !mine
            && !expired
            && spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty())
        {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let lease = KubeLease {
            metadata: current.metadata.clone(),
            spec: Some(self.spec(transitions, acquired)),
        };
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                if !mine {
                    tracing::info!(lease = %self.name, identity = %self.identity, "took the leader lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> Result<(), Error> {
        loop {
            match self.try_take().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader lease"),
            }
            tokio::time::sleep(self.retry()).await;
        }
    }

    /// Renews the Lease; returns when it is lost (not renewed within its duration, or taken).
    pub async fn hold(&self) -> Result<(), Error> {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry()).await;
            match self.try_take().await {
                Ok(true) => last = tokio::time::Instant::now(),
                Ok(false) => return Err(Error::LostLease(self.name.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the leader lease");
                    if last.elapsed() >= self.duration {
                        return Err(Error::LostLease(self.name.clone()));
                    }
                }
            }
        }
    }
}
