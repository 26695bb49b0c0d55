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
