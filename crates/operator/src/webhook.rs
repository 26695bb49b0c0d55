//! The admission webhooks (docs/operator.md §4): the server (TLS with the operator's own
//! certificate, [`crate::certs`]), the configurations that register it with the API server, and
//! the validating webhook for the custom resources. Pod injection is [`crate::inject`].

use crate::certs::Serving;
use crate::crd::{AgentBlueprint, AgentIdentity, DirectoryConnection, GROUP};
use crate::{AdmissionContext as State, Config, Error, WebhookEndpoint, model};
use axum::Json;
use axum::extract::State as AxState;
use axum::routing::{get, post};
use base64::Engine;
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

pub const MUTATE_PATH: &str = "/mutate-pods";
pub const VALIDATE_PATH: &str = "/validate";
/// Largest admission review accepted (a Pod with a big spec is well under this).
const MAX_BODY: usize = 3 * 1024 * 1024;

fn client_config(cfg: &Config, ca_pem: &str, addr: SocketAddr, path: &str) -> Value {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    match &cfg.endpoint {
        WebhookEndpoint::Service { name, port } => json!({
            "caBundle": ca,
            "service": {"namespace": cfg.operator_namespace, "name": name, "port": port, "path": path},
        }),
        WebhookEndpoint::Listener => {
            json!({"caBundle": ca, "url": format!("https://{addr}{path}")})
        }
    }
}

/// Registers (or updates, with server-side apply) the webhook configurations with the current
/// `caBundle` and endpoint.
///
/// `failurePolicy` (docs/operator.md §4.4): `Fail` for Pods that carry the agent label — such a
/// Pod must not start without its identity, and a refusal is retried by its controller — and for
/// the custom resources (nothing unchecked gets in); `Ignore` for the other Pods, which reach the
/// webhook only to look for a service-account annotation, so an operator outage never blocks
/// unrelated workloads.
pub async fn apply_configurations(
    kube: &kube::Client,
    cfg: &Config,
    ca_pem: &str,
    addr: SocketAddr,
) -> Result<(), Error> {
    let ns_selector = match &cfg.namespace_label {
        Some((k, v)) => json!({"matchLabels": {k: v}}),
        None => {
            json!({"matchExpressions": [{"key": "agentid.dev/injection", "operator": "NotIn", "values": ["disabled"]}]})
        }
    };
    let pods_rule = json!([{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"], "scope": "Namespaced"}]);
    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": cfg.instance, "labels": {"app.kubernetes.io/managed-by": "agentid-operator"}},
        "webhooks": [
            {
                "name": "labelled.pods.agentid.dev",
                "clientConfig": client_config(cfg, ca_pem, addr, MUTATE_PATH),
                "rules": pods_rule,
                "objectSelector": {"matchExpressions": [{"key": crate::inject::AGENT_KEY, "operator": "Exists"}]},
                "namespaceSelector": ns_selector,
                "failurePolicy": "Fail",
                "reinvocationPolicy": "IfNeeded",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            },
            {
                "name": "service-account.pods.agentid.dev",
                "clientConfig": client_config(cfg, ca_pem, addr, MUTATE_PATH),
                "rules": pods_rule,
                "objectSelector": {"matchExpressions": [{"key": crate::inject::AGENT_KEY, "operator": "DoesNotExist"}]},
                "namespaceSelector": ns_selector,
                "failurePolicy": "Ignore",
                "reinvocationPolicy": "IfNeeded",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }
        ]
    });
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": cfg.instance, "labels": {"app.kubernetes.io/managed-by": "agentid-operator"}},
        "webhooks": [{
            "name": "resources.agentid.dev",
            "clientConfig": client_config(cfg, ca_pem, addr, VALIDATE_PATH),
            "rules": [{"apiGroups": [GROUP], "apiVersions": ["v1alpha1"], "resources": ["directoryconnections", "agentblueprints", "agentidentities"], "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}],
            "namespaceSelector": ns_selector,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }]
    });
    let pp = PatchParams::apply("agentid-operator").force();
    let m: kube::Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        kube::Api::all(kube.clone());
    m.patch(&cfg.instance, &pp, &Patch::Apply(&mutating))
        .await?;
    let v: kube::Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        kube::Api::all(kube.clone());
    v.patch(&cfg.instance, &pp, &Patch::Apply(&validating))
        .await?;
    Ok(())
}

/// The HTTPS server of the webhooks; the returned future runs it.
pub fn serve(
    listener: tokio::net::TcpListener,
    serving: &Serving,
    state: Arc<State>,
) -> Result<impl Future<Output = Result<(), Error>> + use<>, Error> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut serving.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Cert(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut serving.key_pem.as_bytes())
        .map_err(|e| Error::Cert(e.to_string()))?
        .ok_or_else(|| Error::Cert("no private key".into()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Cert(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| Error::Cert(e.to_string()))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = axum::Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route(VALIDATE_PATH, post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    Ok(async move {
        // Connections at once are bounded: the API server is the only caller.
        let permits = Arc::new(tokio::sync::Semaphore::new(256));
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept");
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                let Ok(Ok(tls)) = handshake.await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    })
}

/// The review's request, or the answer to a review that has none.
fn request(
    review: AdmissionReview<DynamicObject>,
) -> Result<AdmissionRequest<DynamicObject>, Box<Json<AdmissionReview<DynamicObject>>>> {
    review
        .try_into()
        .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| {
            Box::new(Json(
                AdmissionResponse::invalid(e.to_string()).into_review(),
            ))
        })
}

async fn mutate(
    AxState(state): AxState<Arc<State>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req = match request(review) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    Json(crate::inject::admit(&state, &req).await.into_review())
}

async fn validate(
    AxState(_state): AxState<Arc<State>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req = match request(review) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let resp = AdmissionResponse::from(&req);
    let Some(obj) = &req.object else {
        return Json(resp.into_review());
    };
    let v = serde_json::to_value(obj).unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let checked = match req.kind.kind.as_str() {
        "DirectoryConnection" => serde_json::from_value::<DirectoryConnection>(v)
            .map_err(|e| e.to_string())
            .and_then(|d| {
                model::connection(&d.spec)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        "AgentBlueprint" => serde_json::from_value::<AgentBlueprint>(v)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                model::blueprint(&name, &b.spec)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        "AgentIdentity" => serde_json::from_value::<AgentIdentity>(v)
            .map_err(|e| e.to_string())
            .and_then(|a| model::agent(&a.spec).map(drop).map_err(|e| e.to_string())),
        _ => Ok(()),
    };
    let resp = match checked {
        Ok(()) => resp,
        Err(e) => resp.deny(format!("{} {name}: {e}", req.kind.kind)),
    };
    Json(resp.into_review())
}
