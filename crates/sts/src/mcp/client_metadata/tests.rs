use super::*;
use proptest::prelude::*;
use serde_json::json;

const URL: &str = "https://mcp.example.com/oauth/client.json";

fn url() -> url::Url {
    client_url(URL).unwrap()
}

fn doc(v: Value) -> Result<ClientDocument, ClientMetadataError> {
    parse_document(&url(), v.to_string().as_bytes())
}

fn good() -> Value {
    json!({
        "client_id": URL,
        "client_name": "Example MCP",
        "redirect_uris": ["http://127.0.0.1:3030/callback", "https://mcp.example.com/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "logo_uri": "https://mcp.example.com/logo.png",
        "software_id": "anything else is ignored"
    })
}

fn with(k: &str, v: Value) -> Value {
    let mut d = good();
    d[k] = v;
    d
}

#[test]
fn a_good_document() {
    let d = doc(good()).unwrap();
    assert_eq!(d.url, URL);
    assert_eq!(d.host, "mcp.example.com");
    assert_eq!(d.name, "Example MCP");
    assert_eq!(d.redirect_uris.len(), 2);
    assert_eq!(
        d.display_name(),
        "Example MCP (unverified, mcp.example.com)"
    );
    // Without a name the host is the name; without the method it is public.
    let mut m = good();
    m.as_object_mut().unwrap().remove("client_name");
    m.as_object_mut()
        .unwrap()
        .remove("token_endpoint_auth_method");
    assert_eq!(doc(m).unwrap().name, "mcp.example.com");
}

#[test]
fn hostile_client_id_urls() {
    use ClientMetadataError::{BadUrl, NotHttps};
    let long = format!("https://a.example/{}", "x".repeat(MAX_URL_CHARS));
    let cases: &[(&str, ClientMetadataError)] = &[
        ("http://mcp.example.com/client.json", NotHttps),
        ("ftp://mcp.example.com/client.json", NotHttps),
        ("file:///etc/passwd", NotHttps),
        ("https://mcp.example.com", BadUrl),
        ("https://mcp.example.com/", BadUrl),
        ("https://user:pw@mcp.example.com/c", BadUrl),
        ("https://user@mcp.example.com/c", BadUrl),
        ("https://mcp.example.com/c?x=1", BadUrl),
        ("https://mcp.example.com/c#f", BadUrl),
        ("https://mcp.example.com/a/../c", BadUrl),
        ("https://mcp.example.com/./c", BadUrl),
        ("https://MCP.example.com/c", BadUrl),
        ("https://mcp.example.com:443/c", BadUrl),
        ("https://mcp.example.com/c d", BadUrl),
        ("https:///c", BadUrl),
        ("https://", BadUrl),
        ("not a url", BadUrl),
        (long.as_str(), BadUrl),
    ];
    for (u, want) in cases {
        assert_eq!(client_url(u).as_ref().unwrap_err(), want, "{u}");
    }
    for ok in [
        URL,
        "https://mcp.example.com:8443/c",
        "https://127.0.0.1:9/client.json",
        "https://[::1]:9/c",
    ] {
        assert!(client_url(ok).is_ok(), "{ok}");
    }
    assert!(is_url(URL) && is_url("http://x") && !is_url("1bc7902d-ee63-4134-84d4-e2b04e0c42a0"));
}

#[test]
fn hostile_documents() {
    use ClientMetadataError::{ClientIdMismatch, Invalid, NotJson};
    let kind = |r: Result<ClientDocument, ClientMetadataError>| match r {
        Ok(_) => "ok",
        Err(NotJson) => "not_json",
        Err(ClientIdMismatch) => "mismatch",
        Err(Invalid(_)) => "invalid",
        Err(_) => "other",
    };
    let many: Vec<String> = (0..11).map(|i| format!("http://127.0.0.1/{i}")).collect();
    let cases = [
        (json!([]), "not_json"),
        (json!("x"), "not_json"),
        (json!(null), "not_json"),
        (json!({}), "not_json"),
        (with("client_id", json!(7)), "not_json"),
        (
            with("redirect_uris", json!("http://127.0.0.1/cb")),
            "not_json",
        ),
        (
            with("client_id", json!("https://other.example/client.json")),
            "mismatch",
        ),
        (with("client_id", json!(format!("{URL}/"))), "mismatch"),
        (with("client_id", json!(URL.to_uppercase())), "mismatch"),
        (with("redirect_uris", json!([])), "invalid"),
        (with("redirect_uris", json!(many)), "invalid"),
        (
            with("redirect_uris", json!(["javascript:alert(1)"])),
            "invalid",
        ),
        (
            with("redirect_uris", json!(["http://evil.example/cb"])),
            "invalid",
        ),
        (
            with("redirect_uris", json!(["https://a.example/cb#f"])),
            "invalid",
        ),
        (
            with("token_endpoint_auth_method", json!("client_secret_basic")),
            "invalid",
        ),
        (
            with("token_endpoint_auth_method", json!("private_key_jwt")),
            "invalid",
        ),
        (with("client_secret", json!("s3cret")), "invalid"),
        (with("client_secret_expires_at", json!(0)), "invalid"),
        (
            with("grant_types", json!(["client_credentials"])),
            "invalid",
        ),
        (
            with("grant_types", json!(["implicit", "authorization_code"])),
            "invalid",
        ),
        (with("response_types", json!(["token"])), "invalid"),
        (with("client_name", json!("a\u{0}b")), "invalid"),
        (with("client_name", json!("x".repeat(201))), "invalid"),
        (with("client_name", json!("   ")), "ok"),
    ];
    for (v, want) in cases {
        assert_eq!(kind(doc(v.clone())), want, "{v}");
    }
    let mut pad = good();
    pad["padding"] = json!("x".repeat(MAX_DOCUMENT_BYTES));
    assert_eq!(kind(doc(pad)), "invalid");
    for raw in [&b"\xff\xfe"[..], b"{", b"{\"client_id\":", b"", b"\x00"] {
        assert_eq!(kind(parse_document(&url(), raw)), "not_json");
    }
}

#[test]
fn cache_lifetimes_are_clamped() {
    assert_eq!(ttl(None), DEFAULT_TTL);
    assert_eq!(ttl(Some(Duration::ZERO)), MIN_TTL);
    assert_eq!(
        ttl(Some(Duration::from_secs(600))),
        Duration::from_secs(600)
    );
    assert_eq!(ttl(Some(Duration::from_secs(u64::MAX / 4))), MAX_TTL);
}

proptest! {
    /// Whatever the bytes, the parser answers (no panic), and what it accepts keeps the rules.
    #[test]
    fn any_bytes_are_answered(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(d) = parse_document(&url(), &body) {
            prop_assert_eq!(d.url.as_str(), URL);
            prop_assert!(!d.redirect_uris.is_empty());
        }
    }

    /// Documents built from arbitrary member values: accepted only when they keep the rules.
    #[test]
    fn arbitrary_members(
        id in prop_oneof![Just(URL.to_string()), ".{0,40}"],
        uris in proptest::collection::vec(".{0,30}", 0..12),
        method in proptest::option::of(prop_oneof![Just("none".to_string()), ".{0,12}"]),
        name in proptest::option::of(".{0,250}"),
        secret in any::<bool>(),
    ) {
        let mut v = json!({"client_id": id, "redirect_uris": uris});
        if let Some(m) = &method { v["token_endpoint_auth_method"] = json!(m); }
        if let Some(n) = &name { v["client_name"] = json!(n); }
        if secret { v["client_secret"] = json!("x"); }
        if let Ok(d) = doc(v) {
            prop_assert_eq!(id.as_str(), URL);
            prop_assert!(!secret);
            prop_assert!(method.is_none() || method.as_deref() == Some("none"));
            prop_assert!((1..=10).contains(&d.redirect_uris.len()));
            prop_assert!(!d.name.chars().any(char::is_control));
        }
    }

    /// Client ids: anything accepted is canonical https with a path.
    #[test]
    fn client_ids(s in "https?://[a-zA-Z0-9.:@/?#%\\[\\]-]{0,40}") {
        if let Ok(u) = client_url(&s) {
            prop_assert_eq!(u.as_str(), s.as_str());
            prop_assert_eq!(u.scheme(), "https");
            prop_assert!(u.query().is_none() && u.fragment().is_none());
        }
    }
}

#[test]
fn fetch_failures_do_not_leak_connection_details() {
    let e = ClientMetadataError::Fetch(FetchError::Request(
        "error sending request: tcp connect error: 203.0.113.9:22: Connection refused".into(),
    ));
    assert_eq!(
        e.to_string(),
        "the client ID metadata document could not be fetched"
    );
    let e = ClientMetadataError::Fetch(FetchError::PrivateAddress("127.0.0.1".into()));
    assert!(e.to_string().ends_with("its host is not a public address"));
    let e = ClientMetadataError::Fetch(FetchError::Status(404));
    assert!(e.to_string().ends_with(": HTTP 404"));
}
