//! The audit line's exact text (docs/gateway.md §11): every member, in order, with the values
//! the exchange gave it. The line is serialised straight from the exchange (docs/performance.md
//! §6.4); these pin what it was when it was built from an owned event: an authenticated agent
//! acting for a user, allowed by a rule; a request without a token; a refused one.

use crate::support::*;
use serde_json::json;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// The line of the only event with `correlation_id`, its moving parts (time, id, durations)
/// replaced by placeholders.
async fn line(gw: &Gw, correlation_id: &str) -> String {
    let query = format!("correlationId={correlation_id}");
    let url = gw.admin(&format!("/audit/events?{query}"));
    // Parsed only to wait for the event; the text is what is checked.
    gw.audit_until(&query, 1).await;
    let body = gw.http.get(url).send().await.unwrap().text().await.unwrap();
    let line = body
        .strip_prefix("{\"events\":[")
        .and_then(|b| b.strip_suffix("],\"truncated\":false}"))
        .unwrap_or_else(|| panic!("one event expected: {body}"));
    let moving = regex::Regex::new(
        r#"("time":)"[0-9T:.Z-]{27}"|("eventId":)"[0-9a-f]{32}"|("(?:latencyMs|durationMs)":)[0-9.e-]+"#,
    )
    .unwrap();
    moving
        .replace_all(line, |c: &regex::Captures| {
            let name = c.get(1).or(c.get(2)).or(c.get(3)).unwrap().as_str();
            format!("{name}0")
        })
        .into_owned()
}

#[tokio::test]
async fn audit_lines_keep_every_member_in_order() {
    let up = serve(axum::Router::new().fallback(|| async { "ok" })).await;
    let signer = Signer::new();
    let config = format!(
        r#"
binds:
- port: 3000
  listeners:
  - name: main
    routes:
    - name: agents
      matches: [{{path: {{pathPrefix: /agents}}}}]
      backends: [{{host: "{up}"}}]
      policies:
        jwtAuth: {{mode: strict, issuer: "{ISS}", audiences: ["{AUD}"], jwks: '{jwks}'}}
        authorization: {{rules: ["jwt.scp == 'access_as_user'"]}}
    - name: open
      matches: [{{path: {{pathPrefix: /open}}}}]
      backends: [{{host: "{up}"}}]
"#,
        jwks = signer.jwks()
    );
    let gw = Gw::start(&config, None).await;
    let now = chrono::Utc::now().timestamp();
    let token = signer.token_with(json!({
        "iss": ISS, "aud": AUD, "sub": "s-1", "exp": now + 600, "iat": now,
        "azp": "agent-1", "idtyp": "user", "xms_act_fct": "11 3", "xms_sub_fct": "2",
        "xms_par_app_azp": "bp-1", "tid": "tenant-1", "oid": "oid-1",
        "upn": "alice@contoso.test", "scp": "access_as_user", "roles": ["R1", "R2"],
        "uti": "token-1"
    }));
    let send = |path: &str, correlation: &str, auth: Option<&str>| {
        let mut req = gw
            .http
            .post(gw.url(3000, path))
            .header("x-correlation-id", correlation)
            .header("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01"))
            .body("{}");
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        req.send()
    };
    assert_eq!(
        send("/agents/x", "c-agent", Some(&token))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send("/open/y?q=1", "c-open", None).await.unwrap().status(),
        200
    );
    assert_eq!(
        send("/agents/z", "c-refused", None).await.unwrap().status(),
        401
    );

    let head = |c: &str, route: &str, path: &str| {
        format!(
            r#"{{"schema":"agentid.gateway.audit/v1","time":0,"eventId":0,"correlationId":"{c}","traceId":"{TRACE}","kind":"http","route":"{route}","bind":3000,"listener":"main","request":{{"method":"POST","path":"{path}","sourceAddress":"127.0.0.1"}},"identity":"#
        )
    };
    let anonymous = r#"{"authenticated":false,"issuer":null,"audience":null,"tenant":null,"tokenType":null,"tokenId":null,"clientAppId":null,"agentId":null,"blueprint":null,"agentMode":"none","userOid":null,"userUpn":null,"scopes":null,"roles":null}"#;
    let agent = head("c-agent", "agents", "/agents/x")
        + r#"{"authenticated":true,"issuer":"https://issuer.gateway.test","audience":"api://gateway-test","tenant":"tenant-1","tokenType":"user","tokenId":"token-1","clientAppId":"agent-1","agentId":"agent-1","blueprint":"bp-1","agentMode":"onBehalfOfUser","userOid":"oid-1","userUpn":"alice@contoso.test","scopes":"access_as_user","roles":["R1","R2"]}"#
        + r#","mcp":null,"llm":null,"decision":{"result":"allow","stage":"authorization","ruleLevel":"route","ruleKind":"allow","ruleIndex":0,"rule":"jwt.scp == 'access_as_user'","reason":"rule_matched"},"upstream":{"target":"UP","status":200,"durationMs":0,"error":null,"credential":"none"},"status":200,"latencyMs":0,"fields":{}}"#;
    let open = head("c-open", "open", "/open/y")
        + anonymous
        + r#","mcp":null,"llm":null,"decision":{"result":"allow","stage":"none","ruleLevel":null,"ruleKind":null,"ruleIndex":null,"rule":null,"reason":"no_rules"},"upstream":{"target":"UP","status":200,"durationMs":0,"error":null,"credential":"none"},"status":200,"latencyMs":0,"fields":{}}"#;
    let refused = head("c-refused", "agents", "/agents/z")
        + anonymous
        + r#","mcp":null,"llm":null,"decision":{"result":"deny","stage":"jwtAuth","ruleLevel":null,"ruleKind":null,"ruleIndex":null,"rule":null,"reason":"token_missing"},"upstream":null,"status":401,"latencyMs":0,"fields":{}}"#;
    let backend = up.to_string();
    for (c, want) in [("c-agent", agent), ("c-open", open), ("c-refused", refused)] {
        assert_eq!(line(&gw, c).await, want.replace("UP", &backend), "{c}");
    }
}
