//! The revocation feed's reader attacked directly (docs/sts.md §17.1): a feed signed with the
//! wrong key, tampered with, of the wrong `typ`, for another issuer, expired, oversized or
//! malformed is refused; a version older than the one held is refused by the poller, which
//! keeps the newer state; and the token check answers each revocation kind.

use agentid_claims::revocation::{FEED_TYP, FeedError, PollSettings, Revoked, feed, spawn};
use agentid_claims::verify::{Fetcher, KeySet, VerificationKey, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const ISS: &str = "https://sts.example/0a1f25a9-15b6-4302-87d7-ef0c38bdedc5/v2.0";
pub(crate) const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
pub(crate) const BLUEPRINT: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
pub(crate) const USER: &str = "0501a526-79e4-46ff-bd07-6605a752287b";

struct Key {
    enc: jsonwebtoken::EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &str) -> Key {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    Key {
        enc: jsonwebtoken::EncodingKey::from_rsa_pem(
            private.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap(),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())}),
    }
}

/// The issuer's key (`k1`) and an attacker's key that claims the same kid.
fn keys() -> &'static (Key, Key) {
    static K: OnceLock<(Key, Key)> = OnceLock::new();
    K.get_or_init(|| (rsa_key("k1"), rsa_key("k1")))
}

fn key_set() -> KeySet {
    let jwk = serde_json::from_value(keys().0.jwk.clone()).unwrap();
    KeySet::from_keys([VerificationKey::from_jwk(&jwk).unwrap()])
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn payload(version: i64, changes: Value) -> Value {
    let t = now();
    let mut p = json!({"iss": ISS, "version": version, "iat": t, "exp": t + 300,
        "disabledAgents": [AGENT], "disabledBlueprints": [],
        "revokedUsers": [{"oid": USER, "revokedAt": t - 100}], "revokedTokens": ["uti-1"]});
    if let (Value::Object(b), Value::Object(ch)) = (&mut p, changes) {
        for (k, v) in ch {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    p
}

fn sign_with(key: &Key, header: Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key.enc, jsonwebtoken::Algorithm::RS256)
            .unwrap();
    format!("{input}.{sig}")
}

fn header() -> Value {
    json!({"alg": "RS256", "typ": FEED_TYP, "kid": "k1"})
}

pub(crate) fn signed(claims: &Value) -> String {
    sign_with(&keys().0, header(), claims)
}

/// What a hostile case must be refused with.
type Expect = fn(&FeedError) -> bool;

pub(crate) async fn read(doc: &str) -> Result<feed::RevocationState, FeedError> {
    feed::verify(doc, ISS, &key_set(), now(), 60).await
}

#[tokio::test]
async fn a_genuine_feed_is_read() {
    let state = read(&signed(&payload(7, json!({})))).await.unwrap();
    assert_eq!(state.version, 7);
    assert!(state.disabled_agents.contains(AGENT));
    assert!(state.revoked_tokens.contains("uti-1"));
}

#[tokio::test]
async fn hostile_feeds_are_refused() {
    let good = signed(&payload(7, json!({})));
    let (body, sig) = good.rsplit_once('.').unwrap();
    let tampered_claims = {
        let (h, _) = body.split_once('.').unwrap();
        let evil = payload(7, json!({"disabledAgents": []}));
        format!("{h}.{}.{sig}", URL_SAFE_NO_PAD.encode(evil.to_string()))
    };
    let with_typ = |typ: Value| {
        let mut h = header();
        match typ {
            Value::Null => h.as_object_mut().unwrap().remove("typ"),
            t => h.as_object_mut().unwrap().insert("typ".into(), t),
        };
        sign_with(&keys().0, h, &payload(7, json!({})))
    };
    let big = "x".repeat(agentid_claims::revocation::MAX_FEED_BYTES + 1);
    let too_many: Vec<String> = (0..5001).map(|i| format!("a{i}")).collect();
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "signed with another key under the same kid",
            sign_with(&keys().1, header(), &payload(7, json!({}))),
            |e| matches!(e, FeedError::Verify(VerifyError::BadSignature)),
        ),
        ("payload tampered after signing", tampered_claims, |e| {
            matches!(e, FeedError::Verify(VerifyError::BadSignature))
        }),
        ("typ JWT (an access token)", with_typ(json!("JWT")), |e| {
            matches!(e, FeedError::WrongType(_))
        }),
        ("typ at+jwt", with_typ(json!("at+jwt")), |e| {
            matches!(e, FeedError::WrongType(_))
        }),
        ("no typ", with_typ(Value::Null), |e| {
            matches!(e, FeedError::WrongType(None))
        }),
        ("typ not a string", with_typ(json!(7)), |e| {
            matches!(e, FeedError::WrongType(None))
        }),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": FEED_TYP}).to_string()),
                URL_SAFE_NO_PAD.encode(payload(7, json!({})).to_string())
            ),
            |e| matches!(e, FeedError::Verify(VerifyError::AlgNotAllowed(_))),
        ),
        (
            "another issuer",
            signed(&payload(7, json!({"iss": "https://evil.example/t/v2.0"}))),
            |e| matches!(e, FeedError::Verify(VerifyError::IssuerMismatch(_))),
        ),
        (
            "expired (a replayed old feed)",
            signed(&payload(
                7,
                json!({"iat": now() - 4000, "exp": now() - 3000}),
            )),
            |e| matches!(e, FeedError::Verify(VerifyError::Expired { .. })),
        ),
        (
            "issued in the future",
            signed(&payload(
                7,
                json!({"iat": now() + 4000, "exp": now() + 5000}),
            )),
            |e| matches!(e, FeedError::Verify(VerifyError::IssuedInFuture { .. })),
        ),
        (
            "no version",
            signed(&payload(7, json!({"version": null}))),
            |e| matches!(e, FeedError::Verify(VerifyError::MissingClaim(_))),
        ),
        (
            "version not a number",
            signed(&payload(7, json!({"version": "9"}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        ("negative version", signed(&payload(-1, json!({}))), |e| {
            matches!(e, FeedError::Payload(_))
        }),
        (
            "a list missing",
            signed(&payload(7, json!({"revokedTokens": null}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "an entry that is not a string",
            signed(&payload(7, json!({"disabledAgents": [1]}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "an empty entry",
            signed(&payload(7, json!({"disabledAgents": [""]}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "an entry with a control character",
            signed(&payload(7, json!({"revokedTokens": ["a\u{0}b"]}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "a user entry with an unknown member",
            signed(&payload(
                7,
                json!({"revokedUsers": [{"oid": USER, "revokedAt": 1, "x": 1}]}),
            )),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "more entries than the bound",
            signed(&payload(7, json!({"revokedTokens": too_many}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "more deleted agents than the bound",
            signed(&payload(
                7,
                json!({"deletedAgents": too_many.iter().map(|a| json!({"appId": a, "deletedAt": 1})).collect::<Vec<_>>()}),
            )),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "more revoked consents than the bound",
            signed(&payload(
                7,
                json!({"revokedGrants": too_many.iter().map(|a| json!({"appId": a, "revokedAt": 1})).collect::<Vec<_>>()}),
            )),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "a deleted agent with an unknown member",
            signed(&payload(
                7,
                json!({"deletedAgents": [{"appId": AGENT, "deletedAt": 1, "x": 1}]}),
            )),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "a deleted agent without a time",
            signed(&payload(7, json!({"deletedAgents": [{"appId": AGENT}]}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "a revoked consent with an empty user",
            signed(&payload(
                7,
                json!({"revokedGrants": [{"appId": AGENT, "oid": "", "revokedAt": 1}]}),
            )),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "a revoked consent whose user is not a string",
            signed(&payload(
                7,
                json!({"revokedGrants": [{"appId": AGENT, "oid": 5, "revokedAt": 1}]}),
            )),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "a revoked consent with a control character",
            signed(&payload(
                7,
                json!({"revokedGrants": [{"appId": "a\u{7}", "revokedAt": 1}]}),
            )),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "revoked consents that are not a list",
            signed(&payload(7, json!({"revokedGrants": {"appId": AGENT}}))),
            |e| matches!(e, FeedError::Payload(_)),
        ),
        (
            "truncated by the STS",
            signed(&payload(7, json!({"truncated": true}))),
            |e| matches!(e, FeedError::Truncated),
        ),
        ("larger than the document limit", big, |e| {
            matches!(e, FeedError::Malformed(_))
        }),
        ("not a JWS", "not.a.jws.at.all".to_string(), |e| {
            matches!(e, FeedError::Malformed(_))
        }),
        ("empty", String::new(), |e| {
            matches!(e, FeedError::Malformed(_))
        }),
    ];
    for (name, doc, expected) in cases {
        match read(&doc).await {
            Ok(s) => panic!("{name}: accepted (version {})", s.version),
            Err(e) => assert!(expected(&e), "{name}: refused for the wrong reason: {e}"),
        }
    }
}

pub(crate) fn claims(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn the_check_names_each_revocation() {
    let t = now();
    let state = read(&signed(&payload(
        3,
        json!({"disabledBlueprints": [BLUEPRINT], "disabledAgents": [AGENT.to_uppercase()]}),
    )))
    .await
    .unwrap();
    let other_agent = "11111111-2222-3333-4444-555555555555";
    let cases = [
        (json!({"azp": AGENT}), Some(Revoked::AgentDisabled)),
        (
            json!({"appid": AGENT.to_uppercase()}),
            Some(Revoked::AgentDisabled),
        ),
        (
            json!({"azp": other_agent, "xms_par_app_azp": BLUEPRINT}),
            Some(Revoked::AgentDisabled),
        ),
        (json!({"azp": BLUEPRINT}), Some(Revoked::AgentDisabled)),
        // Sessions revoked 100 s ago: a token issued before is refused, one issued after is not.
        (
            json!({"azp": other_agent, "oid": USER, "iat": t - 200}),
            Some(Revoked::UserSessionsRevoked),
        ),
        (
            json!({"azp": other_agent, "oid": USER, "iat": t - 100}),
            Some(Revoked::UserSessionsRevoked),
        ),
        (
            json!({"azp": other_agent, "oid": USER}),
            Some(Revoked::UserSessionsRevoked),
        ),
        (
            json!({"azp": other_agent, "oid": USER, "iat": t - 50}),
            None,
        ),
        (
            json!({"azp": other_agent, "uti": "uti-1"}),
            Some(Revoked::TokenRevoked),
        ),
        (json!({"azp": other_agent, "uti": "UTI-1"}), None),
        (json!({"azp": other_agent, "oid": other_agent}), None),
        (json!({}), None),
    ];
    for (c, expected) in cases {
        assert_eq!(state.check(&claims(c.clone())), expected, "{c}");
    }
    assert_eq!(
        Revoked::UserSessionsRevoked.reason(),
        "revoked:userSessionsRevoked"
    );
}

/// A feed server: its issuer URL and the documents it answers in turn (the last forever).
async fn feed_server() -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let docs: Arc<Mutex<Vec<String>>> = Arc::default();
    let (d, count) = (docs.clone(), served.clone());
    let router = axum::Router::new().route(
        "/{*rest}",
        axum::routing::get(move || {
            let (docs, count) = (d.clone(), count.clone());
            async move {
                let docs = docs.lock().unwrap();
                let i = count.fetch_add(1, Ordering::SeqCst).min(docs.len() - 1);
                docs[i].clone()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/t/v2.0"), docs, served)
}

#[tokio::test]
async fn the_poller_refuses_a_version_rollback_and_keeps_the_newer_state() {
    let (issuer, docs, served) = feed_server().await;
    let doc = |v: i64, agents: Value| {
        let mut p = payload(v, json!({"disabledAgents": agents}));
        p["iss"] = json!(issuer);
        signed(&p)
    };
    *docs.lock().unwrap() = vec![doc(5, json!([AGENT])), doc(3, json!([]))];
    let settings = PollSettings {
        interval: Duration::from_millis(100),
        wait: Duration::ZERO,
        fetch_timeout: Duration::from_secs(2),
        skew: Duration::from_secs(60),
    };
    let handle = spawn(
        &issuer,
        key_set(),
        Fetcher::configured(reqwest::Client::new()),
        settings,
    );
    // Wait until the rolled-back document has been served and refused several times.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handle.status().failures < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the poller never refused the rollback"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.load(Ordering::SeqCst) >= 4);
    let state = handle.current().expect("the first feed was accepted");
    assert_eq!(state.version, 5, "the older version replaced the newer one");
    assert!(state.disabled_agents.contains(AGENT));
}

#[tokio::test]
async fn a_feed_signed_by_someone_else_never_becomes_the_state() {
    let (issuer, docs, _) = feed_server().await;
    let mut p = payload(9, json!({}));
    p["iss"] = json!(issuer);
    *docs.lock().unwrap() = vec![sign_with(&keys().1, header(), &p)];
    let handle = spawn(
        &issuer,
        key_set(),
        Fetcher::configured(reqwest::Client::new()),
        PollSettings {
            interval: Duration::from_millis(100),
            wait: Duration::ZERO,
            ..PollSettings::default()
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handle.status().failures < 2 {
        assert!(std::time::Instant::now() < deadline, "no refusal counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(handle.current().is_none());
    assert_eq!(handle.status().version, None);
    assert!(handle.last_success_age().is_none());
}
