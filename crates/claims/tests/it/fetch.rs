//! The guarded fetcher (issue 10 defect 7): what a request can make the STS fetch. Servers
//! here are real (HTTP and HTTPS on 127.0.0.1 with a test CA); "public" issuers cannot be
//! emulated here, so the refusals are shown against loopback, and the permissions against
//! loopback with the issuer trusted.

use agentid_claims::verify::{
    Discovery, Document, FetchError, FetchPolicy, Fetcher, KeyCache, RefreshPolicy, VerifyError,
};
use axum::Router;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn app(hits: Arc<AtomicUsize>, base: String) -> Router {
    let other_host = base.replace("127.0.0.1", "localhost");
    let as_http = base.replace("https://", "http://");
    let counted = move |hits: &Arc<AtomicUsize>| {
        hits.fetch_add(1, Ordering::SeqCst);
    };
    let h = hits.clone();
    let mut router = Router::new().route(
        "/keys",
        get(move || {
            counted(&h);
            async { axum::Json(serde_json::json!({"keys": []})) }
        }),
    );
    let h = hits.clone();
    router = router.route(
        "/big",
        get(move || {
            counted(&h);
            async { "x".repeat(4096) }
        }),
    );
    let h = hits.clone();
    router = router.route(
        "/slow",
        get(move || {
            counted(&h);
            async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }
        }),
    );
    let h = hits.clone();
    router = router.route(
        "/to-other-host",
        get(move || {
            counted(&h);
            let to = format!("{other_host}/keys");
            async move { Redirect::temporary(&to).into_response() }
        }),
    );
    let h = hits.clone();
    router = router.route(
        "/to-http",
        get(move || {
            counted(&h);
            let to = format!("{as_http}/keys");
            async move { Redirect::temporary(&to).into_response() }
        }),
    );
    let h = hits;
    router.route(
        "/to-same-host",
        get(move || {
            counted(&h);
            async { Redirect::temporary("/keys").into_response() }
        }),
    )
}

async fn http_server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let router = app(hits.clone(), format!("http://127.0.0.1:{port}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server { port, hits }
}

/// HTTPS under a fresh CA; returns the server and the CA's PEM.
async fn https_server() -> (Server, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cluster CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let srv_key = rcgen::KeyPair::generate().unwrap();
    let srv = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&srv_key, &ca, &ca_key)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![srv.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(srv_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let router = app(hits.clone(), format!("https://127.0.0.1:{port}"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (Server { port, hits }, ca.pem())
}

fn untrusted() -> FetchPolicy {
    FetchPolicy {
        allow_http: true,
        ..FetchPolicy::default()
    }
}

fn trusted() -> FetchPolicy {
    FetchPolicy {
        allow_http: true,
        allow_private: true,
        ..FetchPolicy::default()
    }
}

#[tokio::test]
async fn untrusted_issuers_never_reach_private_addresses() {
    let s = http_server().await;
    let f = Fetcher::guarded();
    // IP literals, and a name that resolves to loopback: refused before connecting.
    for url in [
        format!("http://127.0.0.1:{}/keys", s.port),
        format!("http://localhost:{}/keys", s.port),
        format!("http://[::1]:{}/keys", s.port),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://10.0.0.1/keys".to_string(),
    ] {
        let e = f
            .get_bytes(&url, Document::KeySet, &untrusted())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a public address"), "{url}: {e}");
    }
    assert_eq!(
        s.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the server"
    );
    // The same URL for an issuer the tenant trusts.
    f.get_bytes(
        &format!("http://localhost:{}/keys", s.port),
        Document::KeySet,
        &trusted(),
    )
    .await
    .expect("trusted issuers may live in the cluster");
    // https only, unless http is allowed.
    let https_only = FetchPolicy {
        allow_private: true,
        ..FetchPolicy::default()
    };
    let e = f
        .get_bytes(
            &format!("http://127.0.0.1:{}/keys", s.port),
            Document::KeySet,
            &https_only,
        )
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::NotHttps);
    for url in ["file:///etc/passwd", "gopher://127.0.0.1/", "not a url"] {
        assert!(
            f.get_bytes(url, Document::KeySet, &trusted())
                .await
                .is_err(),
            "{url}"
        );
    }
}

#[tokio::test]
async fn redirects_are_followed_only_to_https_on_the_same_host() {
    let (s, ca) = https_server().await;
    let f = Fetcher::guarded();
    let policy = FetchPolicy {
        allow_private: true,
        ca_bundle: Some(Arc::from(ca.as_str())),
        ..FetchPolicy::default()
    };
    let base = format!("https://127.0.0.1:{}", s.port);
    f.get_bytes(&format!("{base}/to-same-host"), Document::KeySet, &policy)
        .await
        .expect("same host, https: followed");
    for path in ["/to-other-host", "/to-http"] {
        let e = f
            .get_bytes(&format!("{base}{path}"), Document::KeySet, &policy)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("same host"), "{path}: {e}");
    }
}

#[tokio::test]
async fn a_trusted_issuer_brings_its_own_ca() {
    let (s, ca) = https_server().await;
    let (_, other_ca) = https_server().await;
    let f = Fetcher::guarded();
    let url = format!("https://127.0.0.1:{}/keys", s.port);
    let with = |pem: Option<&str>| FetchPolicy {
        allow_private: true,
        ca_bundle: pem.map(Arc::from),
        ..FetchPolicy::default()
    };
    // The public roots do not know the cluster CA; another CA does not either.
    assert!(
        f.get_bytes(&url, Document::KeySet, &with(None))
            .await
            .is_err()
    );
    assert!(
        f.get_bytes(&url, Document::KeySet, &with(Some(&other_ca)))
            .await
            .is_err()
    );
    f.get_bytes(&url, Document::KeySet, &with(Some(&ca)))
        .await
        .expect("the issuer's own CA");
    let e = f
        .get_bytes(
            &url,
            Document::KeySet,
            &with(Some("-----BEGIN CERTIFICATE-----\nnope\n")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, FetchError::CaBundle(_) | FetchError::Request(_)),
        "{e}"
    );
}

#[tokio::test]
async fn sizes_and_times_are_capped() {
    let s = http_server().await;
    let f = Fetcher::guarded();
    let small = FetchPolicy {
        max_bytes: 1024,
        ..trusted()
    };
    let e = f
        .get_bytes(
            &format!("http://127.0.0.1:{}/big", s.port),
            Document::KeySet,
            &small,
        )
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::TooLarge(1024));
    let quick = FetchPolicy {
        timeout: Duration::from_millis(300),
        ..trusted()
    };
    let e = f
        .get_bytes(
            &format!("http://127.0.0.1:{}/slow", s.port),
            Document::KeySet,
            &quick,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Request(_)), "{e}");
}

#[tokio::test]
async fn discovery_failures_are_clean_refusals() {
    let s = http_server().await;
    // No discovery document at all: a clean "unavailable", no panic.
    let cache = KeyCache::discovery(
        Discovery::of_issuer(&format!("http://127.0.0.1:{}", s.port)),
        RefreshPolicy::default(),
        trusted(),
        Fetcher::guarded(),
    );
    let e = cache.keys(Some("k")).await.unwrap_err();
    assert!(matches!(e, VerifyError::KeysUnavailable { .. }), "{e}");
    // Untrusted: refused before any request.
    let cache = KeyCache::discovery(
        Discovery::of_issuer(&format!("http://localhost:{}", s.port)),
        RefreshPolicy::default(),
        untrusted(),
        Fetcher::guarded(),
    );
    let before = s.hits.load(Ordering::SeqCst);
    let e = cache.keys(None).await.unwrap_err();
    assert!(e.to_string().contains("not a public address"), "{e}");
    assert_eq!(s.hits.load(Ordering::SeqCst), before);
}

/// Content negotiation as Kubernetes' API server does it (go-restful): a route answers only
/// clients whose `Accept` names its type (or `*/*`), else 406. The issuer's JWKS is
/// `application/jwk-set+json`, its discovery document `application/json`.
fn negotiating(produces: &'static str, body: serde_json::Value) -> axum::routing::MethodRouter {
    get(move |headers: axum::http::HeaderMap| async move {
        let accept = headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let fits = accept.split(',').any(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t == "*/*" || t == produces
        });
        if fits {
            (
                [(axum::http::header::CONTENT_TYPE, produces)],
                body.to_string(),
            )
                .into_response()
        } else {
            axum::http::StatusCode::NOT_ACCEPTABLE.into_response()
        }
    })
}

#[tokio::test]
async fn key_sets_are_asked_for_as_jwk_sets_and_metadata_as_json() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            negotiating(
                "application/json",
                serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/openid/v1/jwks")}),
            ),
        )
        .route(
            "/openid/v1/jwks",
            // The EC public key of RFC 7517, Appendix A.1.
            negotiating(
                "application/jwk-set+json",
                serde_json::json!({"keys": [{
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
                    "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
                    "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"
                }]}),
            ),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let f = Fetcher::guarded();
    let jwks = format!("{base}/openid/v1/jwks");
    f.get_bytes(&jwks, Document::KeySet, &trusted())
        .await
        .expect("a JWKS asked for as application/jwk-set+json");
    // What the fetcher used to send for every document is refused.
    assert_eq!(
        f.get_bytes(&jwks, Document::Metadata, &trusted()).await,
        Err(FetchError::Status(406))
    );
    // Through discovery: metadata as JSON, then the key set as a key set.
    let cache = KeyCache::discovery(
        Discovery::of_issuer(&base),
        RefreshPolicy::default(),
        trusted(),
        Fetcher::guarded(),
    );
    let found = cache
        .keys(Some("k1"))
        .await
        .expect("discovery and the JWKS were fetched");
    assert_eq!(found.keys.len(), 1);
    assert_eq!(found.issuers, vec![base.clone()]);
    assert_eq!(cache.jwks_url(), jwks);
}
