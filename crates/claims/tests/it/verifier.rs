//! The shared verifier attacked directly (RFC 8725 / RFC 9700), plus property tests: arbitrary
//! strings, headers, claims and key/algorithm combinations never panic, and every refusal is a
//! typed [`VerifyError`]. The per-part suites (STS, sidecar, gateway, demo) repeat the table
//! through each part's real endpoint.

use agentid_claims::UnverifiedJwt;
use agentid_claims::jwk::Jwk;
use agentid_claims::verify::{
    Alg, Audiences, Issuers, KeySet, TokenUse, Typ, VerificationKey, Verifier, VerifyError,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

const ISS: &str = "https://issuer.example/t/v2.0";
const AUD: &str = "api://resource";
const NOW: i64 = 1_800_000_000;

struct Keys {
    rsa_enc: jsonwebtoken::EncodingKey,
    rsa_jwk: Value,
    rsa_pem: String,
    ec_enc: jsonwebtoken::EncodingKey,
    ec_jwk: Value,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = ec.public_key_raw();
        Keys {
            rsa_enc: jsonwebtoken::EncodingKey::from_rsa_pem(
                private.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
            )
            .unwrap(),
            rsa_jwk: json!({"kty": "RSA", "kid": "rsa", "use": "sig",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())}),
            rsa_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
            ec_enc: jsonwebtoken::EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
            ec_jwk: json!({"kty": "EC", "crv": "P-256", "kid": "ec",
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}),
        }
    })
}

fn key_set() -> KeySet {
    let k = keys();
    KeySet::from_keys([k.rsa_jwk.clone(), k.ec_jwk.clone()].iter().map(|j| {
        VerificationKey::from_jwk(&serde_json::from_value::<Jwk>(j.clone()).unwrap()).unwrap()
    }))
}

fn verifier() -> Verifier {
    Verifier::new(&[Alg::RS256, Alg::ES256])
        .issuers(Issuers::OneOf(vec![ISS.into()]))
        .audiences(Audiences::OneOf(vec![AUD.into()]))
        .skew(60)
        .require_kid(true)
        .typ(Typ::AccessToken)
        .token_use(TokenUse::Access)
}

fn claims(changes: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": AUD, "azp": "client", "exp": NOW + 600,
        "nbf": NOW - 10, "iat": NOW - 10, "sub": "s"});
    if let (Value::Object(b), Value::Object(ch)) = (&mut c, changes) {
        for (k, v) in ch {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    c
}

fn sign(alg: jsonwebtoken::Algorithm, kid: &str, header: Value, claims: &Value) -> String {
    let k = keys();
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = Some(kid.into());
    let mut hv = serde_json::to_value(&h).unwrap();
    if let (Value::Object(b), Value::Object(extra)) = (&mut hv, header) {
        b.extend(extra);
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hv.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => &k.ec_enc,
        _ => &k.rsa_enc,
    };
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

fn forge(header: Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

async fn check(token: &str, now: i64) -> Result<(), VerifyError> {
    let jwt = UnverifiedJwt::parse(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    verifier().verify(&jwt, &key_set(), now).await.map(|_| ())
}

#[tokio::test]
async fn rfc_8725_table() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    let k = keys();
    let good = sign(RS256, "rsa", json!({}), &claims(json!({})));
    assert_eq!(check(&good, NOW).await, Ok(()));
    assert_eq!(
        check(&sign(ES256, "ec", json!({}), &claims(json!({}))), NOW).await,
        Ok(())
    );
    let hs = |key: &[u8]| {
        jsonwebtoken::encode(
            &{
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some("rsa".into());
                h
            },
            &claims(json!({})),
            &jsonwebtoken::EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String, i64, VerifyError)> = vec![
        (
            "alg none",
            forge(
                json!({"alg": "none", "kid": "rsa"}),
                &claims(json!({})),
                b"",
            ),
            NOW,
            VerifyError::AlgNotAllowed("none".into()),
        ),
        (
            "HS256 keyed with the PEM public key",
            hs(k.rsa_pem.as_bytes()),
            NOW,
            VerifyError::AlgNotAllowed("HS256".into()),
        ),
        (
            "HS256 keyed with the JWK",
            hs(k.rsa_jwk.to_string().as_bytes()),
            NOW,
            VerifyError::AlgNotAllowed("HS256".into()),
        ),
        (
            "ES256 header naming the RSA kid",
            forge(
                json!({"alg": "ES256", "kid": "rsa"}),
                &claims(json!({})),
                &[1; 64],
            ),
            NOW,
            VerifyError::KeyMismatch {
                kid: "rsa".into(),
                alg: "ES256".into(),
            },
        ),
        (
            "RS256 header naming the EC kid",
            forge(
                json!({"alg": "RS256", "kid": "ec"}),
                &claims(json!({})),
                &[1; 256],
            ),
            NOW,
            VerifyError::KeyMismatch {
                kid: "ec".into(),
                alg: "RS256".into(),
            },
        ),
        (
            "unknown kid",
            sign(RS256, "nope", json!({}), &claims(json!({}))),
            NOW,
            VerifyError::KidUnknown("nope".into()),
        ),
        (
            "path traversal kid",
            sign(
                RS256,
                "../../../../etc/passwd",
                json!({}),
                &claims(json!({})),
            ),
            NOW,
            VerifyError::KidUnknown("../../../../etc/passwd".into()),
        ),
        (
            "SQL-ish kid",
            sign(RS256, "' OR '1'='1", json!({}), &claims(json!({}))),
            NOW,
            VerifyError::KidUnknown("' OR '1'='1".into()),
        ),
        (
            "no kid",
            forge(json!({"alg": "RS256"}), &claims(json!({})), &[1; 256]),
            NOW,
            VerifyError::KidMissing,
        ),
        (
            "crit",
            sign(
                RS256,
                "rsa",
                json!({"crit": ["exp"], "exp": 1}),
                &claims(json!({})),
            ),
            NOW,
            VerifyError::Crit,
        ),
        (
            "wrong typ (DPoP proof)",
            sign(RS256, "rsa", json!({"typ": "dpop+jwt"}), &claims(json!({}))),
            NOW,
            VerifyError::WrongType("dpop+jwt".into()),
        ),
        (
            "ID token where an access token is due",
            sign(RS256, "rsa", json!({}), &claims(json!({"azp": null}))),
            NOW,
            VerifyError::WrongType("ID token".into()),
        ),
        (
            "T1 where an access token is due",
            sign(
                RS256,
                "rsa",
                json!({}),
                &claims(json!({"aud": [AUD, agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID]})),
            ),
            NOW,
            VerifyError::WrongType("token-exchange credential".into()),
        ),
        (
            "another issuer",
            sign(
                RS256,
                "rsa",
                json!({}),
                &claims(json!({"iss": "https://evil.example/"})),
            ),
            NOW,
            VerifyError::IssuerMismatch("https://evil.example/".into()),
        ),
        (
            "another audience",
            sign(
                RS256,
                "rsa",
                json!({}),
                &claims(json!({"aud": "api://other"})),
            ),
            NOW,
            VerifyError::AudienceMismatch(vec!["api://other".into()]),
        ),
        (
            "tampered payload",
            {
                let mut p: Vec<&str> = good.split('.').collect();
                let evil = URL_SAFE_NO_PAD.encode(claims(json!({"sub": "admin"})).to_string());
                p[1] = &evil;
                p.join(".")
            },
            NOW,
            VerifyError::BadSignature,
        ),
        (
            "expired at exactly exp + skew",
            good.clone(),
            NOW + 600 + 60,
            VerifyError::Expired { exp: NOW + 600 },
        ),
        (
            "not yet valid at nbf - skew - 1",
            good.clone(),
            NOW - 10 - 61,
            VerifyError::NotYetValid { nbf: NOW - 10 },
        ),
        (
            "no exp",
            sign(RS256, "rsa", json!({}), &claims(json!({"exp": null}))),
            NOW,
            VerifyError::MissingClaim("exp".into()),
        ),
        (
            "exp not a date",
            sign(RS256, "rsa", json!({}), &claims(json!({"exp": "tomorrow"}))),
            NOW,
            VerifyError::BadDate("exp".into()),
        ),
    ];
    for (name, token, now, want) in cases {
        assert_eq!(check(&token, now).await, Err(want), "{name}");
    }
    // Skew edges that pass: one second before exp + skew, exactly nbf - skew.
    assert_eq!(check(&good, NOW + 600 + 59).await, Ok(()));
    assert_eq!(check(&good, NOW - 10 - 60).await, Ok(()));
    // jku / x5u / x5c / jwk in the header are never used as key sources: an attacker's key
    // there changes nothing (the kid still resolves only in the configured set).
    let planted = sign(
        RS256,
        "attacker",
        json!({"jku": "https://attacker.example/jwks", "x5u": "https://attacker.example/c",
            "jwk": k.rsa_jwk, "x5c": ["MIIB"]}),
        &claims(json!({})),
    );
    assert_eq!(
        check(&planted, NOW).await,
        Err(VerifyError::KidUnknown("attacker".into()))
    );
}

/// Header members with arbitrary JSON values.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("RS256"),
            Just("ES256"),
            Just("ES384"),
            Just("PS256"),
            Just("HS256"),
            Just("none"),
            Just("EdDSA"),
            Just("rsa"),
            Just("ec"),
            Just(ISS),
            Just(AUD)
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(keys), json_value()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

const HEADER_KEYS: &[&str] = &[
    "alg", "kid", "typ", "crit", "jku", "x5u", "x5c", "jwk", "x5t", "cty",
];
const CLAIM_KEYS: &[&str] = &[
    "iss", "aud", "exp", "nbf", "iat", "azp", "appid", "sub", "tid", "scp",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any string: parsing and verifying never panic; refusals are typed.
    #[test]
    fn arbitrary_strings(s in ".{0,300}") {
        let rt = runtime();
        let r = rt.block_on(check(&s, NOW));
        prop_assert!(r.is_err());
    }

    /// Dot-separated base64 parts of anything.
    #[test]
    fn arbitrary_parts(a in prop::collection::vec(any::<u8>(), 0..64),
                       b in prop::collection::vec(any::<u8>(), 0..64),
                       c in prop::collection::vec(any::<u8>(), 0..300)) {
        let t = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(a), URL_SAFE_NO_PAD.encode(b), URL_SAFE_NO_PAD.encode(c));
        let rt = runtime();
        prop_assert!(rt.block_on(check(&t, NOW)).is_err());
    }

    /// Arbitrary headers and claims over arbitrary signatures, against RSA and EC keys: every
    /// key/algorithm combination reaches only a typed refusal.
    #[test]
    fn arbitrary_headers_claims_and_keys(header in object(HEADER_KEYS), claims in object(CLAIM_KEYS),
                                         sig in prop::collection::vec(any::<u8>(), 0..300),
                                         now in any::<i64>()) {
        let t = forge(header, &claims, &sig);
        let rt = runtime();
        prop_assert!(rt.block_on(check(&t, now)).is_err());
    }

    /// Real signatures with arbitrary claims: no panic at any clock value.
    #[test]
    fn signed_arbitrary_claims(claims in object(CLAIM_KEYS), now in any::<i64>(), ec in any::<bool>()) {
        let (alg, kid) = if ec { (jsonwebtoken::Algorithm::ES256, "ec") } else { (jsonwebtoken::Algorithm::RS256, "rsa") };
        let t = sign(alg, kid, json!({}), &claims);
        let rt = runtime();
        let _ = rt.block_on(check(&t, now));
    }

    /// Arbitrary JWKs never panic when made keys, and a key only ever accepts algorithms of
    /// its type.
    #[test]
    fn arbitrary_jwks(kty in prop_oneof![Just("RSA".to_string()), Just("EC".to_string()), Just("oct".to_string()), ".{0,5}"],
                      crv in prop::option::of(prop_oneof![Just("P-256".to_string()), Just("P-384".to_string()), Just("P-521".to_string()), ".{0,5}"]),
                      n in prop::option::of(".{0,400}"), e in prop::option::of(".{0,8}"),
                      x in prop::option::of(".{0,60}"), y in prop::option::of(".{0,60}")) {
        let jwk = Jwk { kty, use_: None, alg: None, kid: Some("k".into()), x5t: None,
            n, e, crv, x, y, x5c: None };
        if let Ok(key) = VerificationKey::from_jwk(&jwk) {
            for alg in Alg::ALL {
                prop_assert_eq!(key.accepts(alg), alg.fits(key.kind));
            }
            let set = Arc::new(key);
            let token = forge(json!({"alg": "ES256", "kid": "k"}), &claims(json!({})), &[0; 64]);
            let jwt = UnverifiedJwt::parse(&token).unwrap();
            for alg in Alg::ALL {
                let r = verifier().verify_signature(&jwt, alg, Some("k"), std::slice::from_ref(&set));
                prop_assert!(r.is_err());
            }
        }
    }
}
