//! An emulated Kubernetes service-account token issuer.
//!
//! For what the real API server of [`super::KubeCluster`] cannot give on demand (a fresh issuer
//! and key per test, tokens with a chosen `iat`/`exp`, an issuer served over plain HTTP), this
//! mints projected service-account tokens the way kube-apiserver does: RS256 with `kid` =
//! base64url(SHA-256(DER SubjectPublicKeyInfo)), claims `aud` (array), `exp`, `iat`, `nbf`,
//! `iss`, `jti`, `sub` = `system:serviceaccount:NS:SA` and the `kubernetes.io` block (namespace,
//! pod, node, serviceaccount, warnafter); and it serves `/.well-known/openid-configuration` and
//! `/openid/v1/jwks` as the API server's service account issuer discovery does.

use agentid_claims::jwk::{Jwk, JwkSet};
use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;

pub struct KubeIssuer {
    pub issuer: String,
    pub jwks: JwkSet,
    kid: String,
    key: jsonwebtoken::EncodingKey,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl KubeIssuer {
    /// Starts the discovery endpoints on 127.0.0.1:0 over plain HTTP.
    pub async fn start() -> KubeIssuer {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key");
        let public = private.to_public_key();
        let spki = public.to_public_key_der().expect("SPKI DER");
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(spki.as_bytes()));
        let jwk = Jwk {
            kty: "RSA".into(),
            use_: Some("sig".into()),
            alg: Some("RS256".into()),
            kid: Some(kid.clone()),
            x5t: None,
            n: Some(URL_SAFE_NO_PAD.encode(public.n().to_bytes_be())),
            e: Some(URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())),
            crv: None,
            x: None,
            y: None,
            x5c: None,
        };
        let jwks = JwkSet { keys: vec![jwk] };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let jwks_body = serde_json::to_value(&jwks).expect("json");
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/openid/v1/jwks",
                get(move || async move { axum::Json(jwks_body) }),
            );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        let pem = private.to_pkcs8_pem(LineEnding::LF).expect("PEM");
        KubeIssuer {
            issuer,
            jwks,
            kid,
            key: jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("key"),
            shutdown: Some(tx),
        }
    }

    /// A projected service-account token for `namespace/service_account`.
    pub fn mint(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        lifetime: i64,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        self.mint_at(namespace, service_account, audience, now, lifetime)
    }

    pub fn mint_at(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        iat: i64,
        lifetime: i64,
    ) -> String {
        let claims = json!({
            "aud": [audience],
            "exp": iat + lifetime,
            "iat": iat,
            "iss": self.issuer,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {
                "namespace": namespace,
                "node": {"name": "kind-control-plane", "uid": uuid::Uuid::new_v4().to_string()},
                "pod": {"name": format!("{service_account}-7d9f8b6c5-x2x4q"), "uid": uuid::Uuid::new_v4().to_string()},
                "serviceaccount": {"name": service_account, "uid": uuid::Uuid::new_v4().to_string()},
                "warnafter": iat + lifetime.min(3607) - 7
            },
            "nbf": iat,
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = None;
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }

    /// Writes a token where a projected volume would (`.../azure-identity-token`), atomically,
    /// as kubelet does.
    pub fn write_token_file(
        &self,
        path: &Path,
        namespace: &str,
        service_account: &str,
        audience: &str,
    ) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.mint(namespace, service_account, audience, 3600))
            .expect("write token");
        std::fs::rename(&tmp, path).expect("rename token");
    }

    pub fn jwks_json(&self) -> String {
        serde_json::to_string(&self.jwks).expect("json")
    }
}

impl Drop for KubeIssuer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
