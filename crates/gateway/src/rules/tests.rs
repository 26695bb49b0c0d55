//! The rules' behaviour, table by table: compile errors, every variable, decisions per level.

use super::*;
use serde_json::json;

const SEED: &str =
    "jwt.appid == '65027832-f56f-4d8e-93aa-a09113ba2d47' && '11' in jwt.xms_act_fct.split(' ')";

fn claims(v: Json) -> Map<String, Json> {
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

struct Fixture {
    request: RequestInfo,
    source: SourceInfo,
    claims: Map<String, Json>,
    identity: Identity,
}

impl Fixture {
    fn new(c: Json) -> Fixture {
        let claims = claims(c);
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        headers.insert("host", "gw.example:8443".parse().unwrap());
        let request = RequestInfo::from_http(
            &http::Method::POST,
            &"/mcp?x=1".parse().unwrap(),
            http::Version::HTTP_11,
            &headers,
            "https",
            chrono::Utc::now(),
        );
        Fixture {
            request,
            source: SourceInfo {
                address: "127.0.0.1".into(),
                port: 4242,
            },
            identity: Identity::derive(&claims),
            claims,
        }
    }

    fn ctx(&self) -> EvalContext<'_> {
        EvalContext {
            request: &self.request,
            source: &self.source,
            jwt: Some(&self.claims),
            identity: &self.identity,
            mcp: None,
            response_code: None,
            llm: None,
            backend: None,
        }
    }
}

fn eval(f: &Fixture, expr: &str) -> Result<Json, RuleError> {
    Expr::compile(expr)?.eval(&f.ctx())
}

fn set(rules: &[(RuleKind, &str)]) -> RuleSet {
    RuleSet::compile(
        rules
            .iter()
            .map(|(kind, expr)| RuleSpec {
                kind: *kind,
                expr: expr.to_string(),
            })
            .collect(),
    )
    .unwrap()
}

fn obo() -> Fixture {
    Fixture::new(json!({
        "appid": "65027832-f56f-4d8e-93aa-a09113ba2d47",
        "xms_act_fct": "11 9 3", "idtyp": "user", "scp": "access",
        "oid": "u1", "upn": "alice@contoso", "sub": "s", "exp": 2000000000, "iat": 1.5
    }))
}

#[test]
fn seed_rule_evaluates_like_agentgateway() {
    let f = obo();
    assert_eq!(eval(&f, SEED).unwrap(), json!(true));
    let other = Fixture::new(json!({"appid": "other", "xms_act_fct": "11 9 3"}));
    assert_eq!(eval(&other, SEED).unwrap(), json!(false));
    let no11 = Fixture::new(json!({
        "appid": "65027832-f56f-4d8e-93aa-a09113ba2d47", "xms_act_fct": "111 9"}));
    assert_eq!(eval(&no11, SEED).unwrap(), json!(false));
    // Missing claim: an evaluation error, not false.
    let missing = Fixture::new(json!({"appid": "65027832-f56f-4d8e-93aa-a09113ba2d47"}));
    assert!(eval(&missing, SEED).is_err());
}

#[test]
fn nulls_and_types() {
    let f = obo();
    assert_eq!(eval(&f, "jwt.sub != null").unwrap(), json!(true));
    assert_eq!(eval(&f, "agent.id == 'x'").unwrap(), json!(false));
    assert_eq!(eval(&f, "agent.blueprint == null").unwrap(), json!(true));
    assert_eq!(eval(&f, "jwt.exp > 1").unwrap(), json!(true));
    assert_eq!(eval(&f, "jwt.iat").unwrap(), json!(1.5));
    assert!(eval(&f, "jwt.nope == 'x'").is_err());
    let none = Fixture::new(json!({}));
    assert_eq!(eval(&none, "agent.id == 'x'").unwrap(), json!(false));
    assert_eq!(eval(&none, "user.oid == null").unwrap(), json!(true));
    assert_eq!(eval(&f, "agent.mode").unwrap(), json!("onBehalfOfUser"));
    assert_eq!(eval(&f, "agent.actorFacets").unwrap(), json!([3, 9, 11]));
    assert_eq!(eval(&f, "user.upn").unwrap(), json!("alice@contoso"));
}

#[test]
fn functions() {
    let f = obo();
    assert_eq!(
        eval(&f, "facets(jwt.xms_act_fct)").unwrap(),
        json!([3, 9, 11])
    );
    assert_eq!(
        eval(&f, "11 in facets(jwt.xms_act_fct)").unwrap(),
        json!(true)
    );
    assert_eq!(eval(&f, "facets(' 11  x 3')").unwrap(), json!([3, 11]));
    assert_eq!(eval(&f, "facets(['13', 2, -1])").unwrap(), json!([2, 13]));
    assert_eq!(eval(&f, "facets(null)").unwrap(), json!([]));
    assert!(eval(&f, "facets(jwt.xms_sub_fct)").is_err());
    assert_eq!(
        eval(&f, "'A,B'.lowerAscii().split(',')").unwrap(),
        json!(["a", "b"])
    );
    assert_eq!(eval(&f, "['a','b'].join('-')").unwrap(), json!("a-b"));
    assert_eq!(eval(&f, "' x '.trim().upperAscii()").unwrap(), json!("X"));
    assert_eq!(eval(&f, "'abc'.replace('b','z')").unwrap(), json!("azc"));
    assert_eq!(eval(&f, "'abc'.indexOf('c')").unwrap(), json!(2));
    assert_eq!(eval(&f, "'abc'.substring(1)").unwrap(), json!("bc"));
    assert_eq!(
        eval(
            &f,
            "user.upn.endsWith('@contoso') && user.upn.matches('^a')"
        )
        .unwrap(),
        json!(true)
    );
    assert_eq!(
        eval(&f, "has(jwt.oid) && !has(jwt.azp)").unwrap(),
        json!(true)
    );
    assert_eq!(eval(&f, "size(jwt.xms_act_fct)").unwrap(), json!(6));
}

#[test]
fn request_variables() {
    let f = obo();
    assert_eq!(
        eval(&f, "request.headers['authorization']").unwrap(),
        json!("<redacted>")
    );
    assert_eq!(
        eval(&f, "request.headers['x-multi']").unwrap(),
        json!("a,b")
    );
    assert_eq!(eval(&f, "request.host").unwrap(), json!("gw.example"));
    assert_eq!(eval(&f, "request.path").unwrap(), json!("/mcp"));
    assert_eq!(eval(&f, "request.pathAndQuery").unwrap(), json!("/mcp?x=1"));
    assert_eq!(
        eval(&f, "request.uri").unwrap(),
        json!("https://gw.example:8443/mcp?x=1")
    );
    assert_eq!(
        eval(&f, "request.method + ' ' + request.version").unwrap(),
        json!("POST HTTP/1.1")
    );
    assert_eq!(eval(&f, "source.port").unwrap(), json!(4242));
    assert!(eval(&f, "mcp.method").is_err());
    assert!(eval(&f, "response.code").is_err());
}

#[test]
fn references_are_reported() {
    let s = set(&[
        (RuleKind::Allow, "mcp.tool.name == 'x'"),
        (RuleKind::Deny, "jwt.a == 1"),
    ]);
    assert!(s.references_mcp());
    assert!(s.references("mcp."));
    assert!(s.references("jwt"));
    assert!(!s.references("llm."));
    assert!(
        RuleSet::compile(vec![RuleSpec {
            kind: RuleKind::Allow,
            expr: "a ==".into()
        }])
        .is_err()
    );
}

#[test]
fn rule_semantics_r4() {
    let f = obo();
    let ctx = f.ctx();
    let d = evaluate(&[(Level::Route, &RuleSet::empty())], &ctx);
    assert_eq!((d.allow, d.reason), (true, "no_rules"));
    // A deny rule that errors denies.
    let s = set(&[
        (RuleKind::Deny, "jwt.missing == 1"),
        (RuleKind::Allow, "true"),
    ]);
    let d = evaluate(&[(Level::Route, &s)], &ctx);
    assert_eq!(
        (d.allow, d.reason, d.rule_index),
        (false, "rule_error", Some(0))
    );
    // An allow rule that errors is ignored.
    let s = set(&[
        (RuleKind::Allow, "jwt.missing == 1"),
        (RuleKind::Allow, "jwt.sub == 's'"),
    ]);
    let d = evaluate(&[(Level::Route, &s)], &ctx);
    assert_eq!(
        (d.allow, d.reason, d.rule_index),
        (true, "rule_matched", Some(1))
    );
    assert_eq!(d.rule.as_deref(), Some("jwt.sub == 's'"));
    assert_eq!(d.rule_kind, Some(RuleKind::Allow));
    let s = set(&[(RuleKind::Allow, "jwt.missing == 1")]);
    let d = evaluate(&[(Level::Route, &s)], &ctx);
    assert_eq!((d.allow, d.reason), (false, "no_allow_rule_matched"));
    // Require false denies even when an allow matches.
    let s = set(&[
        (RuleKind::Allow, "true"),
        (RuleKind::Require, "agent.autonomous"),
    ]);
    let d = evaluate(&[(Level::Route, &s)], &ctx);
    assert_eq!(
        (d.allow, d.reason, d.rule_index),
        (false, "require_failed", Some(1))
    );
    // Deny-only list allows what it does not deny.
    let s = set(&[(RuleKind::Deny, "agent.autonomous")]);
    let d = evaluate(&[(Level::Route, &s)], &ctx);
    assert_eq!((d.allow, d.reason), (true, "no_deny_matched"));
    let d = evaluate(
        &[(
            Level::Route,
            &set(&[(RuleKind::Deny, "agent.onBehalfOfUser")]),
        )],
        &ctx,
    );
    assert_eq!((d.allow, d.reason), (false, "deny_matched"));
    // A non-bool result counts as false.
    let d = evaluate(&[(Level::Route, &set(&[(RuleKind::Allow, "'yes'")]))], &ctx);
    assert!(!d.allow);
}

#[test]
fn levels_combine() {
    let f = obo();
    let ctx = f.ctx();
    let route = set(&[(RuleKind::Allow, "false")]);
    let backend = set(&[(RuleKind::Allow, "agent.onBehalfOfUser")]);
    let d = evaluate(&[(Level::Route, &route), (Level::Backend, &backend)], &ctx);
    assert_eq!(
        (d.allow, d.level, d.rule_index),
        (true, Level::Backend, Some(0))
    );
    let deny = set(&[(RuleKind::Deny, "true")]);
    let d = evaluate(&[(Level::Route, &backend), (Level::Backend, &deny)], &ctx);
    assert_eq!(
        (d.allow, d.level, d.reason),
        (false, Level::Backend, "deny_matched")
    );
    let req = set(&[(RuleKind::Require, "false")]);
    let d = evaluate(&[(Level::Route, &req), (Level::Backend, &backend)], &ctx);
    assert_eq!(
        (d.allow, d.level, d.reason),
        (false, Level::Route, "require_failed")
    );
}

#[test]
fn mcp_items_per_call() {
    let f = obo();
    let ctx = f.ctx();
    let act = Activation::new(&ctx);
    let s = set(&[(
        RuleKind::Allow,
        "mcp.tool.name == 'echo' && mcp.tool.target == 't1'",
    )]);
    let deny = set(&[(RuleKind::Deny, "mcp.tool.name == 'rm'")]);
    let item = |name: &str| McpInfo {
        method: "tools/list".into(),
        tool: Some(McpItem {
            name: name.into(),
            target: "t1".into(),
            arguments: None,
        }),
        ..Default::default()
    };
    assert!(act.decide(&[(Level::Route, &s)], Some(&item("echo"))).allow);
    assert!(
        !act.decide(&[(Level::Route, &s)], Some(&item("other")))
            .allow
    );
    // A prompt operation: tool fields are null, so a tool deny rule does not deny it.
    let prompt = McpInfo {
        method: "prompts/get".into(),
        prompt: Some(McpItem {
            name: "p".into(),
            target: "t1".into(),
            arguments: None,
        }),
        ..Default::default()
    };
    let d = act.decide(&[(Level::Route, &deny)], Some(&prompt));
    assert_eq!((d.allow, d.reason), (true, "no_deny_matched"));
    let call = McpInfo {
        method: "tools/call".into(),
        tool: Some(McpItem {
            name: "echo".into(),
            target: "t1".into(),
            arguments: Some(json!({"n": 3})),
        }),
        ..Default::default()
    };
    let args = set(&[(
        RuleKind::Allow,
        "mcp.method == 'tools/call' && mcp.tool.arguments.n < 5",
    )]);
    assert!(act.decide(&[(Level::Route, &args)], Some(&call)).allow);
}

#[test]
fn log_fields() {
    let f = obo();
    let llm = LlmInfo {
        request_model: Some("gpt".into()),
        provider: "azure".into(),
        input_tokens: Some(10),
        ..Default::default()
    };
    let backend = BackendInfo {
        name: "b".into(),
        kind: "ai".into(),
    };
    let ctx = EvalContext {
        llm: Some(&llm),
        backend: Some(&backend),
        response_code: Some(200),
        ..f.ctx()
    };
    let e = Expr::compile(
        "{'m': llm.requestModel, 'o': llm.outputTokens, 'c': response.code, 't': backend.type}",
    )
    .unwrap();
    assert_eq!(
        e.eval(&ctx).unwrap(),
        json!({"m": "gpt", "o": null, "c": 200, "t": "ai"})
    );
    assert!(Expr::compile("llm.x").unwrap().references("llm."));
}

/// Not a benchmark: a guard that building the activation and deciding stays far below the
/// per-request budget (§14), printed for a human.
#[test]
fn activation_is_cheap() {
    let f = obo();
    let s = set(&[(RuleKind::Allow, SEED)]);
    let ctx = f.ctx();
    let n = 2000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert!(evaluate(&[(Level::Route, &s)], &ctx).allow);
    }
    let per = start.elapsed() / n;
    println!("activation + seed rule: {per:?} per request (debug build)");
    assert!(per < std::time::Duration::from_millis(2), "{per:?}");
}
