//! `/Validate` and inbound bearer validation (docs/sidecar.md §7, §16.A), against tokens the real
//! STS issues and tokens signed with its key.

use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_garbage_bearer() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    // A1
    let r = sc.get("/Validate").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.body.is_empty());
    // A2, B1, C1
    for path in [
        "/Validate",
        "/AuthorizationHeader/graph",
        "/DownstreamApi/graph",
    ] {
        let r = sc.get_as(path, "garbage").await;
        assert_eq!(r.status, 401, "{path}");
        let www = r.header("www-authenticate").unwrap();
        assert!(www.contains("error=\"invalid_token\""), "{www}");
        assert!(www.contains("The token is malformed"), "{www}");
        assert!(r.body.is_empty());
    }
    // Another scheme counts as no token at all.
    let r = sc
        .send(
            reqwest::Method::GET,
            "/Validate",
            None,
            &[("authorization", "PoP abc")],
            None,
        )
        .await;
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_is_echoed_with_its_claims_and_no_cache_headers() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    // A3 with aud=api://{ClientId} (v1, what the STS issues for the blueprint's API) …
    let tc = alice_tc(&sts).await;
    let r = sc.get_as("/Validate", &tc).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["protocol"], "Bearer");
    assert_eq!(body["token"], tc.as_str());
    assert_eq!(
        body["claims"],
        serde_json::Value::Object(agentid_testkit::claims(&tc))
    );
    assert_eq!(
        body["claims"]["xms_act_fct"], "9 3",
        "xms_* kept as strings"
    );
    // A6
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert_eq!(r.header("pragma"), Some("no-cache"));
    assert_eq!(r.header("expires"), Some("0"));
    assert!(uuid::Uuid::parse_str(r.header("x-correlation-id").unwrap()).is_ok());
    // … and with aud={ClientId} (v2), plus an unknown claim kept verbatim.
    let mut c = agentid_testkit::claims(&tc);
    c.insert("aud".into(), json!(BP));
    c.insert("custom_thing".into(), json!({"nested": [1, 2]}));
    let v2 = sign_as_sts(&sts, &serde_json::Value::Object(c.clone())).await;
    let r = sc.get_as("/Validate", &v2).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["claims"], serde_json::Value::Object(c));
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_issuer_algorithm_and_lifetime() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let tc = alice_tc(&sts).await;
    let base = agentid_testkit::claims(&tc);
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c.insert(k.into(), v);
        serde_json::Value::Object(c)
    };
    let reason = |r: &Resp| {
        assert_eq!(r.status, 401, "{}", r.text());
        r.header("www-authenticate").unwrap().to_string()
    };
    let t = sign_as_sts(&sts, &with("aud", json!("api://someone-else"))).await;
    assert!(
        reason(&sc.get_as("/Validate", &t).await)
            .contains("The audience 'api://someone-else' is invalid")
    );
    let t = sign_as_sts(&sts, &with("iss", json!("https://evil.example/tenant/"))).await;
    assert!(
        reason(&sc.get_as("/Validate", &t).await)
            .contains("The issuer 'https://evil.example/tenant/' is invalid")
    );
    let t = unsigned(
        &json!({"alg": "none", "typ": "JWT"}),
        &serde_json::Value::Object(base.clone()),
    );
    assert!(reason(&sc.get_as("/Validate", &t).await).contains("The signature is invalid"));
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &base,
        &jsonwebtoken::EncodingKey::from_secret(b"a shared secret"),
    )
    .unwrap();
    assert!(reason(&sc.get_as("/Validate", &hs).await).contains("The signature is invalid"));
    // A tampered payload with the original signature.
    let mut parts: Vec<&str> = tc.split('.').collect();
    let forged = unsigned(&json!({}), &with("upn", json!("mallory@contoso.test")));
    let forged_payload = forged.split('.').nth(1).unwrap().to_string();
    parts[1] = &forged_payload;
    assert!(
        reason(&sc.get_as("/Validate", &parts.join(".")).await)
            .contains("The signature is invalid")
    );
    // Lifetime, with the sidecar's clock: 4 min past exp is inside the skew, 5 min + 1 s is not.
    let exp = base["exp"].as_i64().unwrap();
    sc.clock.set(exp + 240);
    assert_eq!(sc.get_as("/Validate", &tc).await.status, 200);
    sc.clock.set(exp + 301);
    assert!(reason(&sc.get_as("/Validate", &tc).await).contains("The token is expired"));
    let nbf = base["nbf"].as_i64().unwrap();
    sc.clock.set(nbf - 400);
    assert!(reason(&sc.get_as("/Validate", &tc).await).contains("The token is not yet valid"));
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_scopes_are_any_of_on_every_authenticated_route() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[("AzureAd__Scopes", Some("access_as_user other"))]).await;
    let tc = alice_tc(&sts).await;
    assert_eq!(sc.get_as("/Validate", &tc).await.status, 200);
    let base = agentid_testkit::claims(&tc);
    let idw = "IDW10203: The 'scope' or 'scp' claim does not contain scopes 'access_as_user other' or was not found.";
    let mut c = base.clone();
    c.insert("scp".into(), json!("x"));
    let wrong = sign_as_sts(&sts, &serde_json::Value::Object(c)).await;
    let mut c = base.clone();
    c.remove("scp");
    let none = sign_as_sts(&sts, &serde_json::Value::Object(c)).await;
    for path in [
        "/Validate",
        "/AuthorizationHeader/graph",
        "/DownstreamApi/graph",
    ] {
        for t in [&wrong, &none] {
            let r = sc.get_as(path, t).await;
            r.assert_problem(403, idw);
        }
    }
    // The unauthenticated routes do not check scopes.
    assert_eq!(
        sc.get_as("/AuthorizationHeaderUnauthenticated/graph-app", &none)
            .await
            .status,
        200
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_unavailable_is_503() {
    let sts = start_sts().await;
    // An authority that does not answer: keys cannot be fetched and none are cached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sc = TestSidecar::direct(
        &sts,
        &[
            (
                "AzureAd__Instance",
                Some(&format!("http://127.0.0.1:{port}/")),
            ),
            ("Sidecar__AllowInsecureAuthority", Some("true")),
        ],
    )
    .await;
    let tc = alice_tc(&sts).await;
    let r = sc.get_as("/Validate", &tc).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.detail()
            .starts_with("Unable to retrieve signing keys from "),
        "{}",
        r.detail()
    );
    assert!(r.header("retry-after").is_some());
    sts.stop().await;
}

/// The adversarial table (RFC 8725) through `/Validate`: each hostile variant of a genuine
/// token gets the contract's phrase, nothing panics (the next request is answered), and no
/// header URL is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_get_the_contract_phrases() {
    use agentid_testkit::hostile::{
        INJECTED_KIDS, Recorder, claims_with, forge, header_with, hs256,
    };
    let sts = start_sts().await;
    let sc = TestSidecar::direct(&sts, &[]).await;
    let recorder = Recorder::start().await;
    let tc = alice_tc(&sts).await;
    assert_eq!(sc.get_as("/Validate", &tc).await.status, 200);
    let claims = claims_with(&tc, &json!({}));
    let sig = tc.rsplit('.').next().unwrap().to_string();
    let h = |c: serde_json::Value| header_with(&tc, &c);
    let resign = |header: serde_json::Value| format!("{}{sig}", forge(&header, &claims, b""));
    let (_, jwks) = sts
        .get_json(&format!("{}/discovery/v2.0/keys", sts.authority()))
        .await;
    let bad_sig = "The signature is invalid";
    let malformed = "The token is malformed";
    let mut cases: Vec<(String, String, &str)> = vec![
        (
            "alg none".into(),
            forge(&h(json!({"alg": "none"})), &claims, b""),
            bad_sig,
        ),
        (
            "HS256 with the JWKS as key".into(),
            hs256(
                &h(json!({"alg": "HS256"})),
                &claims,
                jwks.to_string().as_bytes(),
            ),
            bad_sig,
        ),
        (
            "ES256 on an RSA kid".into(),
            forge(&h(json!({"alg": "ES256"})), &claims, &[7; 64]),
            bad_sig,
        ),
        (
            "unknown kid".into(),
            resign(h(json!({"kid": "nope"}))),
            bad_sig,
        ),
        (
            "jku/x5u".into(),
            resign(h(
                json!({"kid": "attacker", "jku": recorder.url, "x5u": recorder.url}),
            )),
            bad_sig,
        ),
        (
            "crit".into(),
            resign(h(json!({"crit": ["exp"], "exp": 1}))),
            malformed,
        ),
        (
            "typ dpop+jwt".into(),
            resign(h(json!({"typ": "dpop+jwt"}))),
            malformed,
        ),
    ];
    for kid in INJECTED_KIDS {
        cases.push((
            format!("kid {kid:?}"),
            resign(h(json!({"kid": kid}))),
            bad_sig,
        ));
    }
    // Signed by the STS, but not an access token for this API.
    let mut id_claims = claims_with(&tc, &json!({"azp": null, "appid": null}));
    id_claims["aud"] = json!(BP);
    cases.push((
        "ID token".into(),
        sign_as_sts(&sts, &id_claims).await,
        malformed,
    ));
    let other_tenant = claims_with(
        &tc,
        &json!({"iss": "https://sts.windows.net/11111111-2222-4333-8444-555555555555/"}),
    );
    cases.push((
        "another tenant".into(),
        sign_as_sts(&sts, &other_tenant).await,
        "The issuer",
    ));
    for (name, token, phrase) in cases {
        let r = sc.get_as("/Validate", &token).await;
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        let www = r.header("www-authenticate").unwrap_or_default().to_string();
        assert!(www.contains(phrase), "{name}: {www}");
    }
    assert_eq!(
        sc.get_as("/Validate", &tc).await.status,
        200,
        "still answering"
    );
    assert_eq!(recorder.hits(), 0, "a header URL was fetched");
    sts.stop().await;
}
