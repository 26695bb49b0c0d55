//! J1–J3 (docs/gateway.md §17): inbound JWT validation against a test issuer whose JWKS is served
//! over real HTTPS on 127.0.0.1 with a test CA, with keys the tests rotate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentid_gateway::identity::AgentMode;
use agentid_gateway::jwt::{
    AuthOutcome, JwksRegistry, JwksSource, JwtAuth, JwtAuthSpec, JwtConfigError, JwtSettings, Mode,
    ProviderSpec, Reason, Trigger,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const ISS: &str = "https://login.example/tenant/v2.0";
const AUD: &str = "api://gateway-test";

// ---------------------------------------------------------------------------------------------
// Test issuer: keys and tokens

struct Key {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
    public_pem: Option<String>,
    /// Kept for keys ring refuses to sign with (RSA < 2048 bits).
    weak_private: Option<rsa::RsaPrivateKey>,
}

fn rsa_key(kid: &str, bits: usize) -> Key {
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).expect("RSA key");
    let pem = private.to_pkcs8_pem(LineEnding::LF).expect("PEM");
    let public = private.to_public_key();
    Key {
        kid: kid.to_string(),
        alg: Algorithm::RS256,
        enc: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key"),
        jwk: json!({"kty": "RSA", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            "x5t": "ignored", "issuer": "ignored"}),
        public_pem: Some(
            public
                .to_public_key_pem(LineEnding::LF)
                .expect("public PEM"),
        ),
        weak_private: (bits < 2048).then_some(private),
    }
}

fn ec_key(kid: &str) -> Key {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    let raw = kp.public_key_raw();
    Key {
        kid: kid.to_string(),
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("encoding key"),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}),
        public_pem: None,
        weak_private: None,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "s", "exp": now() + 600, "iat": now(),
        "azp": "65027832-f56f-4d8e-93aa-a09113ba2d47", "xms_act_fct": "3 11 9", "idtyp": "app",
        "uti": "uti-123"});
    if let (Value::Object(base), Value::Object(extra)) = (&mut c, extra) {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
    }
    c
}

fn sign_with(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(kid.to_string());
    if let Some(private) = &key.weak_private {
        // RS256 by hand: PKCS#1 v1.5 over the SHA-256 DigestInfo.
        use sha2::Digest;
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_value(&header).unwrap()),
            b64(claims)
        );
        let mut digest_info = vec![
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        digest_info.extend_from_slice(&sha2::Sha256::digest(input.as_bytes()));
        let sig = private
            .sign(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info)
            .expect("sign");
        return format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    }
    jsonwebtoken::encode(&header, claims, &key.enc).expect("sign")
}

fn sign(key: &Key, claims: &Value) -> String {
    sign_with(key, &key.kid, claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

// ---------------------------------------------------------------------------------------------
// JWKS over HTTPS

struct JwksServer {
    url: String,
    ca_pem: String,
    doc: Arc<Mutex<Value>>,
    fail: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: &[&Key]) -> JwksServer {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gateway test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let srv_key = rcgen::KeyPair::generate().expect("server key");
        let srv_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        let srv = srv_params
            .signed_by(&srv_key, &ca, &ca_key)
            .expect("server cert");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![srv.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(srv_key.serialize_der().into()),
        )
        .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let doc = Arc::new(Mutex::new(
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
        ));
        let fail = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, f, h) = (doc.clone(), fail.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let (d, f, h) = (d.clone(), f.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if f.load(Ordering::SeqCst) {
                        return Err(http::StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    let body = d.lock().expect("doc").clone();
                    Ok(axum::Json(body))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        JwksServer {
            url: format!("https://127.0.0.1:{}/keys", addr.port()),
            ca_pem: ca.pem(),
            doc,
            fail,
            hits,
        }
    }

    fn set_keys(&self, keys: &[&Key]) {
        *self.doc.lock().expect("doc") =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA"),
            )
            .build()
            .expect("client")
    }
}

fn provider(url: &str) -> ProviderSpec {
    ProviderSpec {
        issuer: ISS.to_string(),
        audiences: vec![AUD.to_string()],
        jwks: JwksSource::Url(url.to_string()),
        required_claims: vec![],
    }
}

fn spec(mode: Mode, providers: Vec<ProviderSpec>) -> JwtAuthSpec {
    JwtAuthSpec {
        mode,
        providers,
        header: "authorization".to_string(),
        prefix: None,
    }
}

async fn wait_loaded(registry: &JwksRegistry, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if registry
            .metrics()
            .iter()
            .any(|m| m.url == url && m.keys > 0)
        {
            return;
        }
        assert!(Instant::now() < deadline, "JWKS never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[track_caller]
fn reason(outcome: AuthOutcome) -> (Reason, u16) {
    match outcome {
        AuthOutcome::Rejected(f) => {
            assert_eq!(f.status, f.reason.status());
            (f.reason, f.status)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn j1_every_reason_code() {
    let k1 = rsa_key("k1", 2048);
    let other = rsa_key("k1", 2048); // same kid, different key: a forged signature
    let weak = rsa_key("weak", 1024);
    let mut pinned = rsa_key("pinned", 2048);
    pinned.jwk["alg"] = json!("RS512");
    let ec = ec_key("e1");
    let server = JwksServer::start(&[&k1, &weak, &pinned, &ec]).await;
    let registry = JwksRegistry::new(JwtSettings::default(), server.client());
    let auth = JwtAuth::compile(spec(Mode::Strict, vec![provider(&server.url)]), &registry)
        .expect("compiles");
    wait_loaded(&registry, &server.url).await;
    let check = |token: String| {
        let auth = &auth;
        async move { reason(auth.authenticate(&bearer(&token)).await) }
    };

    // Missing, and a non-bearer scheme.
    let r = reason(auth.authenticate(&http::HeaderMap::new()).await);
    assert_eq!(r, (Reason::TokenMissing, 401));
    let mut basic = http::HeaderMap::new();
    basic.insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
    assert_eq!(
        reason(auth.authenticate(&basic).await).0,
        Reason::TokenMissing
    );

    // A good token, with the scheme in any case.
    let good = sign(&k1, &claims(json!({})));
    let mut lower = http::HeaderMap::new();
    lower.insert("authorization", format!("bearer {good}").parse().unwrap());
    let AuthOutcome::Authenticated(v) = auth.authenticate(&lower).await else {
        panic!("good token refused")
    };
    assert_eq!(v.identity.mode, AgentMode::Autonomous);
    assert_eq!(v.token.expose(), good);
    assert!(!format!("{v:?}").contains(&good), "Debug leaks the token");
    assert_eq!(v.token_id.as_deref(), Some("uti-123"));
    assert_eq!(v.claims["sub"], "s");

    // Lifetime, with the default 60 s skew.
    let t = sign(&k1, &claims(json!({"exp": now() - 90})));
    assert_eq!(check(t).await, (Reason::TokenExpired, 401));
    let t = sign(&k1, &claims(json!({"exp": now() - 30})));
    assert!(matches!(
        auth.authenticate(&bearer(&t)).await,
        AuthOutcome::Authenticated(_)
    ));
    let t = sign(&k1, &claims(json!({"exp": now() as f64 + 100.5})));
    assert!(matches!(
        auth.authenticate(&bearer(&t)).await,
        AuthOutcome::Authenticated(_)
    ));
    let t = sign(&k1, &claims(json!({"nbf": now() + 120})));
    assert_eq!(check(t).await.0, Reason::TokenNotYetValid);
    let t = sign(&k1, &claims(json!({"nbf": now() + 30})));
    assert!(matches!(
        auth.authenticate(&bearer(&t)).await,
        AuthOutcome::Authenticated(_)
    ));
    let t = sign(&k1, &claims(json!({"exp": null})));
    assert_eq!(check(t).await.0, Reason::ClaimMissing);

    // Audience (string or array) and issuer.
    let t = sign(&k1, &claims(json!({"aud": "api://other"})));
    assert_eq!(check(t).await.0, Reason::AudienceMismatch);
    let t = sign(&k1, &claims(json!({"aud": ["api://other", AUD]})));
    assert!(matches!(
        auth.authenticate(&bearer(&t)).await,
        AuthOutcome::Authenticated(_)
    ));
    let t = sign(&k1, &claims(json!({"iss": format!("{ISS}/")})));
    assert_eq!(check(t).await.0, Reason::IssuerMismatch);

    // Algorithms: none, and HS256 keyed with the RSA public key (key confusion).
    let body = b64(&claims(json!({})));
    let none = format!("{}.{body}.", b64(&json!({"alg": "none", "kid": "k1"})));
    assert_eq!(check(none).await.0, Reason::AlgNotAllowed);
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims(json!({})),
        &EncodingKey::from_secret(k1.public_pem.as_deref().unwrap().as_bytes()),
    )
    .unwrap();
    assert_eq!(check(confused).await.0, Reason::AlgNotAllowed);
    let ps = format!(
        "{}.{body}.{}",
        b64(&json!({"alg": "RS384", "kid": "k1"})),
        URL_SAFE_NO_PAD.encode([1u8; 256])
    );
    assert_eq!(check(ps).await.0, Reason::AlgNotAllowed);

    // Signature and keys.
    let forged = sign(&other, &claims(json!({})));
    assert_eq!(check(forged).await.0, Reason::SignatureInvalid);
    let mut tampered = good.clone();
    tampered.truncate(good.len() - 4);
    tampered.push_str("AAAA");
    assert_eq!(check(tampered).await.0, Reason::SignatureInvalid);
    let t = sign(&weak, &claims(json!({})));
    assert_eq!(
        check(t).await.0,
        Reason::SignatureInvalid,
        "RSA < 2048 bits"
    );
    let t = sign(&pinned, &claims(json!({})));
    assert_eq!(
        check(t).await.0,
        Reason::SignatureInvalid,
        "JWK alg differs"
    );
    let t = sign_with(&ec, "k1", &claims(json!({})));
    assert_eq!(
        check(t).await.0,
        Reason::SignatureInvalid,
        "ES256 with an RSA key"
    );
    let t = sign_with(&k1, "nope", &claims(json!({})));
    assert_eq!(check(t).await.0, Reason::KidUnknown);
    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.kid = None;
    let t = jsonwebtoken::encode(&no_kid, &claims(json!({})), &k1.enc).unwrap();
    assert_eq!(check(t).await.0, Reason::KidMissing);

    // Structure: crit, JWE, garbage, no alg.
    let crit = format!(
        "{}.{body}.sig",
        b64(&json!({"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}))
    );
    assert_eq!(check(crit).await.0, Reason::TokenMalformed);
    assert_eq!(check("a.b.c.d.e".into()).await.0, Reason::TokenMalformed);
    assert_eq!(check("garbage".into()).await.0, Reason::TokenMalformed);
    let no_alg = format!("{}.{body}.sig", b64(&json!({"kid": "k1"})));
    assert_eq!(check(no_alg).await.0, Reason::TokenMalformed);

    // ES256 works with its own key. The unknown kid above caused no fetch (30 s floor).
    let t = sign(&ec, &claims(json!({})));
    assert!(matches!(
        auth.authenticate(&bearer(&t)).await,
        AuthOutcome::Authenticated(_)
    ));
    assert_eq!(registry.refresh_count(&server.url, Trigger::UnknownKid), 0);
    assert_eq!(registry.refresh_count(&server.url, Trigger::Startup), 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn modes_required_claims_and_the_verified_cache() {
    let k1 = rsa_key("k1", 2048);
    let server = JwksServer::start(&[&k1]).await;
    let registry = JwksRegistry::new(JwtSettings::default(), server.client());
    let optional =
        JwtAuth::compile(spec(Mode::Optional, vec![provider(&server.url)]), &registry).unwrap();
    let permissive = JwtAuth::compile(
        spec(Mode::Permissive, vec![provider(&server.url)]),
        &registry,
    )
    .unwrap();
    let mut p = provider(&server.url);
    p.required_claims = vec!["exp".into(), "nbf".into()];
    let strict_nbf = JwtAuth::compile(spec(Mode::Strict, vec![p]), &registry).unwrap();
    let mut p = provider(&server.url);
    p.audiences = vec!["api://elsewhere".into()];
    let other_route = JwtAuth::compile(spec(Mode::Strict, vec![p]), &registry).unwrap();
    wait_loaded(&registry, &server.url).await;
    // One cache per URL, however many policies use it.
    assert_eq!(registry.metrics().len(), 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    assert!(matches!(
        optional.authenticate(&http::HeaderMap::new()).await,
        AuthOutcome::Anonymous(None)
    ));
    let expired = sign(&k1, &claims(json!({"exp": now() - 600})));
    assert_eq!(
        reason(optional.authenticate(&bearer(&expired)).await).0,
        Reason::TokenExpired
    );
    match permissive.authenticate(&bearer(&expired)).await {
        AuthOutcome::Anonymous(Some(f)) => {
            assert_eq!(f.reason, Reason::TokenExpired);
            assert_eq!(f.token_log_id.as_deref(), Some("uti-123"));
        }
        other => panic!("{other:?}"),
    }
    let good = sign(&k1, &claims(json!({})));
    assert_eq!(
        reason(strict_nbf.authenticate(&bearer(&good)).await).0,
        Reason::ClaimMissing
    );

    // The second validation is a cache hit (same Arc); another route's audience is re-checked.
    let AuthOutcome::Authenticated(a) = optional.authenticate(&bearer(&good)).await else {
        panic!()
    };
    let AuthOutcome::Authenticated(b) = permissive.authenticate(&bearer(&good)).await else {
        panic!()
    };
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(
        reason(other_route.authenticate(&bearer(&good)).await).0,
        Reason::AudienceMismatch
    );
    assert_eq!(
        reason(strict_nbf.authenticate(&bearer(&good)).await).0,
        Reason::ClaimMissing
    );

    // A custom header without a prefix.
    let mut s = spec(Mode::Strict, vec![provider(&server.url)]);
    s.header = "X-Agent-Token".into();
    s.prefix = Some(String::new());
    let custom = JwtAuth::compile(s, &registry).unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-agent-token", good.parse().unwrap());
    assert!(matches!(
        custom.authenticate(&h).await,
        AuthOutcome::Authenticated(_)
    ));
}

#[tokio::test]
async fn j2_rotation_and_the_unknown_kid_floor() {
    let k1 = rsa_key("k1", 2048);
    let k2 = rsa_key("k2", 2048);
    let server = JwksServer::start(&[&k1]).await;
    let settings = JwtSettings {
        jwks_min_refresh_interval: Duration::from_secs(2),
        ..JwtSettings::default()
    };
    let registry = JwksRegistry::new(settings, server.client());
    let auth = JwtAuth::compile(spec(Mode::Strict, vec![provider(&server.url)]), &registry)
        .expect("compiles");
    wait_loaded(&registry, &server.url).await;
    server.set_keys(&[&k1, &k2]);

    // Within the floor after the startup fetch, an unknown kid fails fast without fetching;
    // once the floor has passed, one refetch picks the new key up.
    let t2 = sign(&k2, &claims(json!({})));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match auth.authenticate(&bearer(&t2)).await {
            AuthOutcome::Authenticated(_) => break,
            AuthOutcome::Rejected(f) => assert_eq!(f.reason, Reason::KidUnknown),
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "rotated key never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registry.refresh_count(&server.url, Trigger::UnknownKid), 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    // A second unknown kid right after: no fetch.
    let t3 = sign_with(&k2, "k3", &claims(json!({})));
    assert_eq!(
        reason(auth.authenticate(&bearer(&t3)).await).0,
        Reason::KidUnknown
    );
    assert_eq!(registry.refresh_count(&server.url, Trigger::UnknownKid), 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    // Old tokens still work: k1 stayed in the set.
    let t1 = sign(&k1, &claims(json!({})));
    assert!(matches!(
        auth.authenticate(&bearer(&t1)).await,
        AuthOutcome::Authenticated(_)
    ));
    let m = registry.metrics();
    assert_eq!(m[0].keys, 2);
}

#[tokio::test]
async fn j3_v1_and_v2_providers_share_one_cache() {
    let rsa = rsa_key("rsa", 2048);
    let ec = ec_key("ec");
    let server = JwksServer::start(&[&rsa, &ec]).await;
    let registry = JwksRegistry::new(JwtSettings::default(), server.client());
    let tid = "7d9a3e8c-0000-4000-8000-000000000001";
    let v1 = format!("https://sts.windows.net/{tid}/");
    let v2 = format!("https://login.microsoftonline.com/{tid}/v2.0");
    let auth = JwtAuth::compile(
        spec(
            Mode::Strict,
            vec![
                ProviderSpec {
                    issuer: v1.clone(),
                    audiences: vec!["api://mcp".into()],
                    jwks: JwksSource::Url(server.url.clone()),
                    required_claims: vec![],
                },
                ProviderSpec {
                    issuer: v2.clone(),
                    audiences: vec!["mcp".into()],
                    jwks: JwksSource::Url(server.url.clone()),
                    required_claims: vec![],
                },
            ],
        ),
        &registry,
    )
    .unwrap();
    wait_loaded(&registry, &server.url).await;
    let v1_token = sign(
        &rsa,
        &claims(
            json!({"iss": v1, "aud": "api://mcp", "azp": null, "appid": "agent-1",
            "idtyp": null, "scp": "access_as_user", "xms_sub_fct": "2 3", "oid": "alice",
            "upn": "alice@contoso"}),
        ),
    );
    let v2_token = sign(
        &ec,
        &claims(json!({"iss": v2, "aud": "mcp", "azp": "agent-2"})),
    );
    let AuthOutcome::Authenticated(a) = auth.authenticate(&bearer(&v1_token)).await else {
        panic!("v1 refused")
    };
    assert_eq!(a.identity.id.as_deref(), Some("agent-1"));
    assert_eq!(a.identity.mode, AgentMode::OnBehalfOfUser);
    assert_eq!(a.identity.user_oid.as_deref(), Some("alice"));
    assert_eq!(a.issuer, v1);
    let AuthOutcome::Authenticated(b) = auth.authenticate(&bearer(&v2_token)).await else {
        panic!("v2 refused")
    };
    assert_eq!(b.identity.id.as_deref(), Some("agent-2"));
    assert_eq!(b.identity.mode, AgentMode::Autonomous);
    // v1 audience on the v2 issuer does not pass.
    let cross = sign(&ec, &claims(json!({"iss": v2, "aud": "api://mcp"})));
    assert_eq!(
        reason(auth.authenticate(&bearer(&cross)).await).0,
        Reason::AudienceMismatch
    );
    assert_eq!(registry.metrics().len(), 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn jwks_unavailable_is_503_and_recovers() {
    let k1 = rsa_key("k1", 2048);
    let server = JwksServer::start(&[&k1]).await;
    server.fail.store(true, Ordering::SeqCst);
    let settings = JwtSettings {
        jwks_min_refresh_interval: Duration::from_millis(200),
        ..JwtSettings::default()
    };
    let registry = JwksRegistry::new(settings, server.client());
    let auth = JwtAuth::compile(spec(Mode::Strict, vec![provider(&server.url)]), &registry)
        .expect("compiles");
    let t = sign(&k1, &claims(json!({})));
    assert_eq!(
        reason(auth.authenticate(&bearer(&t)).await),
        (Reason::JwksUnavailable, 503)
    );
    let errors: u64 = registry.metrics()[0]
        .refreshes
        .iter()
        .filter(|r| r.result == "error")
        .map(|r| r.count)
        .sum();
    assert!(errors >= 1);
    // Permissive mode does not turn an outage into a rejection.
    let permissive = JwtAuth::compile(
        spec(Mode::Permissive, vec![provider(&server.url)]),
        &registry,
    )
    .unwrap();
    assert!(matches!(
        permissive.authenticate(&bearer(&t)).await,
        AuthOutcome::Anonymous(Some(_))
    ));
    // Once the issuer answers, the next request after the floor loads the keys.
    server.fail.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match auth.authenticate(&bearer(&t)).await {
            AuthOutcome::Authenticated(_) => break,
            AuthOutcome::Rejected(f) => assert_eq!(f.reason, Reason::JwksUnavailable),
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Later failures keep the last good set.
    server.fail.store(true, Ordering::SeqCst);
    let unknown = sign_with(&k1, "other", &claims(json!({})));
    tokio::time::sleep(Duration::from_millis(250)).await; // past the 200 ms floor
    assert_eq!(
        reason(auth.authenticate(&bearer(&unknown)).await).0,
        Reason::KidUnknown
    );
    let fresh = sign(&k1, &claims(json!({"uti": "another"})));
    assert!(matches!(
        auth.authenticate(&bearer(&fresh)).await,
        AuthOutcome::Authenticated(_)
    ));
}

#[tokio::test]
async fn static_sources_and_load_errors() {
    let ec = ec_key("ec");
    let registry = JwksRegistry::new(JwtSettings::default(), reqwest::Client::new());
    let doc = json!({"keys": [ec.jwk.clone(), {"kty": "oct", "kid": "x", "k": "c2VjcmV0"}]});
    let inline = ProviderSpec {
        issuer: ISS.into(),
        audiences: vec![],
        jwks: JwksSource::Inline(doc.to_string()),
        required_claims: vec![],
    };
    let auth = JwtAuth::compile(spec(Mode::Strict, vec![inline.clone()]), &registry).unwrap();
    let t = sign(&ec, &claims(json!({"aud": "anything"})));
    assert!(matches!(
        auth.authenticate(&bearer(&t)).await,
        AuthOutcome::Authenticated(_)
    ));

    // A file source is re-read on reload.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let other = ec_key("ec2");
    std::fs::write(&path, json!({"keys": [other.jwk.clone()]}).to_string()).unwrap();
    let file = ProviderSpec {
        jwks: JwksSource::File(path.clone()),
        ..inline.clone()
    };
    let auth = JwtAuth::compile(spec(Mode::Strict, vec![file.clone()]), &registry).unwrap();
    let t2 = sign(&other, &claims(json!({"uti": "u2"})));
    assert!(matches!(
        auth.authenticate(&bearer(&t2)).await,
        AuthOutcome::Authenticated(_)
    ));
    let t3 = sign(&ec, &claims(json!({"uti": "u3"})));
    assert_eq!(
        reason(auth.authenticate(&bearer(&t3)).await).0,
        Reason::KidUnknown
    );
    std::fs::write(&path, json!({"keys": [ec.jwk.clone()]}).to_string()).unwrap();
    auth.reload_files().unwrap();
    assert!(matches!(
        auth.authenticate(&bearer(&t3)).await,
        AuthOutcome::Authenticated(_)
    ));
    // The cached t2 is not served once its kid left the set.
    assert_eq!(
        reason(auth.authenticate(&bearer(&t2)).await).0,
        Reason::KidUnknown
    );

    // Load-time errors.
    let err = |p: ProviderSpec| {
        JwtAuth::compile(spec(Mode::Strict, vec![p]), &registry).expect_err("refused")
    };
    let e = err(ProviderSpec {
        jwks: JwksSource::Inline(r#"{"keys":[{"kty":"oct","kid":"x","k":"eA"}]}"#.into()),
        ..inline.clone()
    });
    assert!(matches!(e, JwtConfigError::Jwks { .. }), "{e}");
    let e = err(ProviderSpec {
        jwks: JwksSource::Inline("not json".into()),
        ..inline.clone()
    });
    assert!(matches!(e, JwtConfigError::Jwks { .. }), "{e}");
    let e = err(ProviderSpec {
        jwks: JwksSource::File(dir.path().join("absent.json")),
        ..inline.clone()
    });
    assert!(matches!(e, JwtConfigError::JwksFile { .. }), "{e}");
    let e = err(ProviderSpec {
        jwks: JwksSource::Url("http://login.example/keys".into()),
        ..inline.clone()
    });
    assert!(matches!(e, JwtConfigError::JwksUrl { .. }), "{e}");
    let e = err(ProviderSpec {
        required_claims: vec!["exp".into(), "tid".into()],
        ..inline.clone()
    });
    assert!(matches!(e, JwtConfigError::UnknownRequiredClaim(ref c) if c == "tid"));
    for ok in [
        "http://127.0.0.1:1/keys",
        "http://localhost:1/keys",
        "http://[::1]:1/keys",
    ] {
        JwtAuth::compile(
            spec(
                Mode::Strict,
                vec![ProviderSpec {
                    jwks: JwksSource::Url(ok.into()),
                    ..inline.clone()
                }],
            ),
            &registry,
        )
        .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    assert!(matches!(
        JwtAuth::compile(spec(Mode::Strict, vec![]), &registry),
        Err(JwtConfigError::NoProviders)
    ));
}

/// Not a benchmark (§14 has the real one): prints what validation plus a seed-rule decision
/// costs per request in this build, and guards against a gross regression.
#[tokio::test]
async fn hot_path_cost() {
    use agentid_gateway::rules::{
        EvalContext, Level, RequestInfo, RuleKind, RuleSet, RuleSpec, SourceInfo, evaluate,
    };
    let k1 = rsa_key("k1", 2048);
    let server = JwksServer::start(&[&k1]).await;
    let registry = JwksRegistry::new(JwtSettings::default(), server.client());
    let auth = JwtAuth::compile(spec(Mode::Strict, vec![provider(&server.url)]), &registry)
        .expect("compiles");
    wait_loaded(&registry, &server.url).await;
    let rules = RuleSet::compile(vec![RuleSpec {
        kind: RuleKind::Allow,
        expr: "jwt.azp == '65027832-f56f-4d8e-93aa-a09113ba2d47' && '11' in jwt.xms_act_fct.split(' ')"
            .into(),
    }])
    .unwrap();
    let source = SourceInfo {
        address: "127.0.0.1".into(),
        port: 1,
    };
    let n: u32 = 300;
    let run = |tokens: Vec<String>| {
        let (auth, rules, source) = (&auth, &rules, &source);
        async move {
            let start = Instant::now();
            for t in &tokens {
                let headers = bearer(t);
                let AuthOutcome::Authenticated(v) = auth.authenticate(&headers).await else {
                    panic!("refused")
                };
                let info = RequestInfo::from_http(
                    &http::Method::POST,
                    &"/mcp".parse().unwrap(),
                    http::Version::HTTP_11,
                    &headers,
                    "http",
                    chrono::Utc::now(),
                );
                let ctx = EvalContext {
                    request: &info,
                    source,
                    jwt: Some(&v.claims),
                    identity: &v.identity,
                    mcp: None,
                    response_code: None,
                    llm: None,
                    backend: None,
                };
                assert!(evaluate(&[(Level::Route, rules)], &ctx).allow);
            }
            start.elapsed() / tokens.len() as u32
        }
    };
    // Distinct tokens: a signature check each. The same token: verified-token cache hits.
    let fresh: Vec<String> = (0..n)
        .map(|i| sign(&k1, &claims(json!({"uti": format!("u{i}")}))))
        .collect();
    let cold = run(fresh).await;
    let same = sign(&k1, &claims(json!({})));
    let warm = run(vec![same; n as usize]).await;
    println!("per request: {cold:?} with signature check, {warm:?} from the verified-token cache");
    assert!(warm < Duration::from_millis(2), "{warm:?}");
    assert!(cold < Duration::from_millis(5), "{cold:?}");
}

#[tokio::test]
async fn fetches_are_single_flight_and_periodic() {
    let k1 = rsa_key("k1", 2048);
    let k2 = rsa_key("k2", 2048);
    let server = JwksServer::start(&[&k1]).await;
    let settings = JwtSettings {
        jwks_min_refresh_interval: Duration::from_millis(300),
        jwks_refresh_interval: Duration::from_secs(3600),
        ..JwtSettings::default()
    };
    let registry = JwksRegistry::new(settings, server.client());
    let auth = Arc::new(
        JwtAuth::compile(spec(Mode::Strict, vec![provider(&server.url)]), &registry).unwrap(),
    );
    wait_loaded(&registry, &server.url).await;
    server.set_keys(&[&k1, &k2]);
    tokio::time::sleep(Duration::from_millis(350)).await; // past the floor
    // Many concurrent requests with the new kid: one fetch serves them all.
    let t2 = sign(&k2, &claims(json!({})));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (auth, t2) = (auth.clone(), t2.clone());
            tokio::spawn(async move { auth.authenticate(&bearer(&t2)).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), AuthOutcome::Authenticated(_)));
    }
    assert_eq!(registry.refresh_count(&server.url, Trigger::UnknownKid), 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    // A short refresh interval refetches on its own.
    let server2 = JwksServer::start(&[&k1]).await;
    let registry2 = JwksRegistry::new(
        JwtSettings {
            jwks_refresh_interval: Duration::from_millis(100),
            ..JwtSettings::default()
        },
        server2.client(),
    );
    let _auth2 =
        JwtAuth::compile(spec(Mode::Strict, vec![provider(&server2.url)]), &registry2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry2.refresh_count(&server2.url, Trigger::Interval) < 2 {
        assert!(Instant::now() < deadline, "no periodic refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(registry2.refresh_count(&server2.url, Trigger::Startup), 1);
    // Dropping the last policy that uses a URL stops its cache.
    drop(_auth2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !registry2.metrics().is_empty() {
        assert!(Instant::now() < deadline, "cache kept alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<JwtAuth>();
    check::<JwksRegistry>();
    check::<agentid_gateway::rules::RuleSet>();
    check::<agentid_gateway::rules::Expr>();
    check::<agentid_gateway::jwt::Verified>();
    fn send<T: Send>() {}
    send::<agentid_gateway::rules::Activation<'static>>();
}

/// The adversarial table (RFC 8725) for `jwtAuth`: exact reason codes, skew edges, header URLs
/// never fetched, and the gateway still answering afterwards.
#[tokio::test]
async fn hostile_tokens_get_exact_reasons() {
    use agentid_testkit::hostile::{INJECTED_KIDS, Recorder, forge, hs256};
    let k1 = rsa_key("k1", 2048);
    let ec = ec_key("e1");
    let server = JwksServer::start(&[&k1, &ec]).await;
    let registry = JwksRegistry::new(JwtSettings::default(), server.client());
    let auth = JwtAuth::compile(spec(Mode::Strict, vec![provider(&server.url)]), &registry)
        .expect("compiles");
    wait_loaded(&registry, &server.url).await;
    let recorder = Recorder::start().await;
    let c = claims(json!({}));
    let header = |extra: Value| {
        let mut h = json!({"alg": "RS256", "kid": "k1", "typ": "JWT"});
        if let (Value::Object(b), Value::Object(e)) = (&mut h, extra) {
            b.extend(e);
        }
        h
    };
    let mut cases: Vec<(String, String, Reason)> = vec![
        (
            "alg none".into(),
            forge(&header(json!({"alg": "none"})), &c, b""),
            Reason::AlgNotAllowed,
        ),
        (
            "HS256 with the JWK".into(),
            hs256(
                &header(json!({"alg": "HS256"})),
                &c,
                k1.jwk.to_string().as_bytes(),
            ),
            Reason::AlgNotAllowed,
        ),
        (
            "ES256 on the RSA kid".into(),
            forge(&header(json!({"alg": "ES256"})), &c, &[7; 64]),
            Reason::SignatureInvalid,
        ),
        (
            "RS256 on the EC kid".into(),
            forge(&header(json!({"kid": "e1"})), &c, &[7; 256]),
            Reason::SignatureInvalid,
        ),
        (
            "jku/x5u".into(),
            forge(
                &header(json!({"kid": "attacker", "jku": recorder.url, "x5u": recorder.url})),
                &c,
                &[7; 256],
            ),
            Reason::KidUnknown,
        ),
        (
            "crit".into(),
            forge(&header(json!({"crit": ["b64"]})), &c, &[7; 256]),
            Reason::TokenMalformed,
        ),
        (
            "typ dpop+jwt".into(),
            forge(&header(json!({"typ": "dpop+jwt"})), &c, &[7; 256]),
            Reason::TokenMalformed,
        ),
        (
            "another issuer".into(),
            sign(&k1, &claims(json!({"iss": "https://evil.example/v2.0"}))),
            Reason::IssuerMismatch,
        ),
        (
            "T1 audience".into(),
            sign(
                &k1,
                &claims(json!({"aud": "fb60f99c-7a34-4190-8149-302f77469936"})),
            ),
            Reason::AudienceMismatch,
        ),
        (
            "expired at exp + skew".into(),
            sign(&k1, &claims(json!({"exp": now() - 60}))),
            Reason::TokenExpired,
        ),
        (
            "not yet valid beyond the skew".into(),
            sign(&k1, &claims(json!({"nbf": now() + 62}))),
            Reason::TokenNotYetValid,
        ),
    ];
    for kid in INJECTED_KIDS {
        cases.push((
            format!("kid {kid:?}"),
            sign_with(&k1, kid, &c),
            Reason::KidUnknown,
        ));
    }
    for (name, token, want) in cases {
        match auth.authenticate(&bearer(&token)).await {
            AuthOutcome::Rejected(f) => assert_eq!(f.reason, want, "{name}: {}", f.message),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Inside the skew by a few seconds: accepted (a real clock ticks, so not exactly 1 s).
    for t in [
        sign(&k1, &claims(json!({"exp": now() - 57, "uti": "edge1"}))),
        sign(&k1, &claims(json!({"nbf": now() + 57, "uti": "edge2"}))),
        sign(&k1, &c),
    ] {
        assert!(matches!(
            auth.authenticate(&bearer(&t)).await,
            AuthOutcome::Authenticated(_)
        ));
    }
    assert_eq!(recorder.hits(), 0, "a header URL was fetched");
}
