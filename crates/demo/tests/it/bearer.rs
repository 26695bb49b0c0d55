//! The bearer check on its own, against an issuer whose tokens the test mints: lifetime with
//! 60 s skew, exact issuer, audience, signature, and keys it has never seen.

use agentid_demo::TokenCheck;
use agentid_demo::auth::{AuthError, Validator};
use agentid_testkit::KubeIssuer;

const AUD: &str = "api://demo-audience";

fn validator(kube: &KubeIssuer, issuer: &str) -> Validator {
    Validator::new(
        TokenCheck {
            jwks_url: format!("{}/openid/v1/jwks", kube.issuer),
            issuer: issuer.to_string(),
            audience: AUD.to_string(),
            ca_pem: None,
        },
        agentid_demo::http_client(None).unwrap(),
    )
}

#[tokio::test]
async fn lifetime_issuer_audience_and_signature() {
    let kube = KubeIssuer::start().await;
    let v = validator(&kube, &kube.issuer);
    let now = chrono::Utc::now().timestamp();

    let ok = kube.mint("ns", "sa", AUD, 600);
    let jwt = v.validate(&ok).await.expect("valid token");
    assert_eq!(jwt.str_claim("sub"), Some("system:serviceaccount:ns:sa"));

    // Expired 30 s ago: inside the skew, accepted; 2 min ago: refused, saying when.
    let recent = kube.mint_at("ns", "sa", AUD, now - 630, 600);
    assert!(v.validate(&recent).await.is_ok());
    let old = kube.mint_at("ns", "sa", AUD, now - 720, 600);
    let e = v.validate(&old).await.unwrap_err();
    assert!(matches!(e, AuthError::Expired(_)), "{e}");
    // Not valid for another 5 minutes.
    let future = kube.mint_at("ns", "sa", AUD, now + 300, 600);
    assert!(matches!(
        v.validate(&future).await.unwrap_err(),
        AuthError::NotYetValid(_)
    ));

    let other_aud = kube.mint("ns", "sa", "api://someone-else", 600);
    let e = v.validate(&other_aud).await.unwrap_err();
    assert!(
        e.to_string().contains("api://someone-else") && e.to_string().contains(AUD),
        "{e}"
    );

    let strict = validator(&kube, "https://another-issuer.example");
    assert!(matches!(
        strict.validate(&ok).await.unwrap_err(),
        AuthError::Issuer { .. }
    ));

    // Claims changed after signing.
    let mut parts: Vec<String> = ok.split('.').map(str::to_string).collect();
    let forged = kube.mint("ns", "admin", AUD, 600);
    parts[1] = forged.split('.').nth(1).unwrap().to_string();
    assert!(matches!(
        v.validate(&parts.join(".")).await.unwrap_err(),
        AuthError::BadSignature
    ));

    assert!(matches!(
        v.validate("not-a-jwt").await.unwrap_err(),
        AuthError::Malformed(_)
    ));
}

#[tokio::test]
async fn keys_it_does_not_know_are_refused() {
    let kube = KubeIssuer::start().await;
    let stranger = KubeIssuer::start().await;
    let v = validator(&kube, &kube.issuer);
    assert!(v.validate(&kube.mint("ns", "sa", AUD, 600)).await.is_ok());
    // Same issuer name, another key: the JWKS has no such kid (and is not refetched within 30 s).
    let mut forged = stranger;
    forged.issuer = kube.issuer.clone();
    let e = v
        .validate(&forged.mint("ns", "sa", AUD, 600))
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::UnknownKey(_)), "{e}");
}

#[tokio::test]
async fn an_unreachable_authority_is_not_the_callers_fault() {
    let kube = KubeIssuer::start().await;
    let token = kube.mint("ns", "sa", AUD, 600);
    // A port that was just free: nothing listens there, the fetch is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let v = Validator::new(
        TokenCheck {
            jwks_url: format!("http://127.0.0.1:{port}/keys"),
            issuer: kube.issuer.clone(),
            audience: AUD.into(),
            ca_pem: None,
        },
        agentid_demo::http_client(None).unwrap(),
    );
    let e = v.validate(&token).await.unwrap_err();
    assert!(matches!(e, AuthError::Keys { .. }), "{e}");
    let r = axum::response::IntoResponse::into_response(e);
    assert_eq!(r.status(), 503);
}

/// Issue 10 defect 2: an `ES256` header naming the issuer's RSA key used to reach
/// `unreachable!` inside jsonwebtoken. It is a clean refusal now, and the next token is checked.
#[tokio::test]
async fn an_algorithm_that_does_not_fit_the_key_is_refused_without_a_panic() {
    let kube = KubeIssuer::start().await;
    let v = validator(&kube, &kube.issuer);
    let good = kube.mint("ns", "sa", AUD, 600);
    for alg in ["ES256", "ES384", "HS256", "PS256", "EdDSA"] {
        let header = agentid_testkit::hostile::header_with(&good, &serde_json::json!({"alg": alg}));
        let claims = agentid_testkit::hostile::claims_with(&good, &serde_json::json!({}));
        let token = agentid_testkit::hostile::forge(&header, &claims, &[7u8; 64]);
        let outcome = tokio::spawn({
            let token = token.clone();
            let v = validator(&kube, &kube.issuer);
            async move { v.validate(&token).await.map(|_| ()) }
        })
        .await;
        let e = outcome
            .unwrap_or_else(|p| panic!("{alg}: the bearer check panicked: {p}"))
            .expect_err(alg);
        assert!(
            matches!(e, AuthError::Algorithm(_) | AuthError::BadSignature),
            "{alg}: {e}"
        );
    }
    assert!(v.validate(&good).await.is_ok());
}

/// The adversarial table (RFC 8725) for the demo services' bearer check.
#[tokio::test]
async fn hostile_tokens_are_refused_with_their_reason() {
    use agentid_testkit::hostile::{
        INJECTED_KIDS, Recorder, claims_with, forge, header_with, hs256,
    };
    let kube = KubeIssuer::start().await;
    let v = validator(&kube, &kube.issuer);
    let recorder = Recorder::start().await;
    let good = kube.mint("ns", "sa", AUD, 600);
    let c = claims_with(&good, &serde_json::json!({}));
    let h = |x: serde_json::Value| header_with(&good, &x);
    let sig = good.rsplit('.').next().unwrap().to_string();
    let resign = |header: serde_json::Value| format!("{}{sig}", forge(&header, &c, b""));
    type Check = fn(&AuthError) -> bool;
    let mut cases: Vec<(String, String, Check)> = vec![
        (
            "alg none".into(),
            forge(&h(serde_json::json!({"alg": "none"})), &c, b""),
            |e| matches!(e, AuthError::Algorithm(_)),
        ),
        (
            "HS256 with the JWKS".into(),
            hs256(
                &h(serde_json::json!({"alg": "HS256"})),
                &c,
                kube.jwks_json().as_bytes(),
            ),
            |e| matches!(e, AuthError::Algorithm(_)),
        ),
        (
            "ES256 on the RSA kid".into(),
            forge(&h(serde_json::json!({"alg": "ES256"})), &c, &[7; 64]),
            |e| matches!(e, AuthError::BadSignature),
        ),
        (
            "jku/x5u".into(),
            resign(h(
                serde_json::json!({"kid": "attacker", "jku": recorder.url, "x5u": recorder.url}),
            )),
            |e| matches!(e, AuthError::UnknownKey(_)),
        ),
        (
            "crit".into(),
            resign(h(serde_json::json!({"crit": ["exp"]}))),
            |e| matches!(e, AuthError::Header(_)),
        ),
        (
            "typ dpop+jwt".into(),
            resign(h(serde_json::json!({"typ": "dpop+jwt"}))),
            |e| matches!(e, AuthError::Header(_)),
        ),
        (
            "T1 audience".into(),
            kube.mint("ns", "sa", "fb60f99c-7a34-4190-8149-302f77469936", 600),
            |e| matches!(e, AuthError::Audience { .. }),
        ),
    ];
    for kid in INJECTED_KIDS {
        cases.push((
            format!("kid {kid:?}"),
            resign(h(serde_json::json!({"kid": kid}))),
            |e| matches!(e, AuthError::UnknownKey(_)),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    cases.push((
        "expired at exp + skew".into(),
        kube.mint_at("ns", "sa", AUD, now - 660, 600),
        |e| matches!(e, AuthError::Expired(_)),
    ));
    cases.push((
        "nbf beyond the skew".into(),
        kube.mint_at("ns", "sa", AUD, now + 62, 600),
        |e| matches!(e, AuthError::NotYetValid(_)),
    ));
    for (name, token, ok) in cases {
        let e = v.validate(&token).await.expect_err(&name);
        assert!(ok(&e), "{name}: {e}");
    }
    assert!(
        v.validate(&kube.mint_at("ns", "sa", AUD, now - 657, 600))
            .await
            .is_ok()
    );
    assert!(v.validate(&good).await.is_ok(), "still answering");
    assert_eq!(recorder.hits(), 0);
}
