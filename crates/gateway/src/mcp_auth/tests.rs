use super::*;

fn auth(resource: Option<&str>) -> McpAuth {
    McpAuth {
        resource: resource.map(|r| url::Url::parse(r).unwrap()),
        resource_path: resource
            .map(|r| {
                url::Url::parse(r)
                    .unwrap()
                    .path()
                    .trim_end_matches('/')
                    .to_string()
            })
            .unwrap_or_else(|| "/mcp".into()),
        extra: Map::new(),
        authorization_servers: vec!["https://sts.test/t/v2.0".into()],
        scopes: vec!["access_as_user".into()],
    }
}

const LOCAL: Origin<'static> = Origin {
    scheme: "http",
    host: "127.0.0.1:3000",
};

#[test]
fn derived_from_the_request_host() {
    let a = auth(None);
    assert_eq!(a.resource_url(LOCAL), "http://127.0.0.1:3000/mcp");
    assert_eq!(
        a.metadata_url(LOCAL),
        "http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp"
    );
    let doc = a.document(LOCAL);
    assert_eq!(doc["resource"], "http://127.0.0.1:3000/mcp");
    assert_eq!(doc["authorization_servers"][0], "https://sts.test/t/v2.0");
    assert_eq!(doc["scopes_supported"][0], "access_as_user");
    assert_eq!(doc["bearer_methods_supported"][0], "header");
}

#[test]
fn configured_resource_wins_over_the_host() {
    let a = auth(Some("https://tools.example.com/mcp/"));
    assert_eq!(a.resource_url(LOCAL), "https://tools.example.com/mcp");
    assert_eq!(
        a.metadata_url(LOCAL),
        "https://tools.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert!(a.serves("/mcp") && a.serves("/mcp/") && !a.serves("/other") && !a.serves(""));
}

#[test]
fn challenges() {
    let a = auth(None);
    assert_eq!(
        a.challenge(LOCAL, None),
        r#"Bearer resource_metadata="http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp", scope="access_as_user""#
    );
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FORBIDDEN;
    decorate(&a, LOCAL, &mut r);
    let v = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(v.ends_with(r#"error="insufficient_scope""#), "{v}");
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    );
    decorate(&a, LOCAL, &mut r);
    let v = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(v.contains("resource_metadata=") && v.ends_with(r#"error="invalid_token""#));
    // Other statuses are left alone.
    let mut r = Response::new(body::empty());
    decorate(&a, LOCAL, &mut r);
    assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
}

#[test]
fn hostile_host_headers_cannot_break_out_of_the_quoted_value() {
    let a = auth(None);
    let o = Origin {
        scheme: "http",
        host: r#"evil", error="x"#,
    };
    let v = a.challenge(o, None);
    assert_eq!(v.matches('"').count(), 4, "{v}");
}

#[test]
fn metadata_is_open_to_every_origin() {
    let a = auth(None);
    for m in [Method::GET, Method::OPTIONS] {
        let r = metadata_response(&a, LOCAL, &m);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
    assert_eq!(
        metadata_response(&a, LOCAL, &Method::POST).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}
