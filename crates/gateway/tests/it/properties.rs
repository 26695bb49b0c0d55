//! Property tests (issue 10): arbitrary input thrown at the gateway's parsers.
//!
//! - the path normaliser: never panics; its output is a fixed point, holds no dot segment and
//!   no encoded separator, and survives `url::Url` byte for byte;
//! - the MCP JSON-RPC envelope: never panics on any bytes or JSON; every refusal is a §9.7 code;
//! - the config loader: arbitrary documents and mutations of the seed never panic, and every
//!   refusal is a typed error that says where.
//!
//! Plus the hostile-input table for the MCP envelope.

use agentid_gateway::config::ConfigError;
use agentid_gateway::mcp::envelope::{self, Envelope};
use agentid_gateway::request_path::{CanonicalPath, CanonicalQuery, PathError, RequestTarget};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Path normaliser

/// Paths built from the pieces attacks are made of, plus arbitrary characters; the harmless
/// pieces weigh more so that over a third of the paths have a canonical form to check.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        12 => "[a-zA-Z0-9._~!$&'()*+,=:@-]{1,4}",
        6 => Just("/".to_string()),
        2 => Just("//".to_string()),
        2 => Just("%41".to_string()),
        2 => Just("%c3%a9".to_string()),
        2 => Just("%25".to_string()),
        1 => Just("%2e".to_string()),
        1 => Just("é".to_string()),
        1 => Just("...".to_string()),
        1 => "[ \"<>{}|^`\\[\\]]",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just("%2E".to_string()),
        1 => Just("%2f".to_string()),
        1 => Just("%2F".to_string()),
        1 => Just("%5c".to_string()),
        1 => Just("%".to_string()),
        1 => Just(";".to_string()),
        1 => Just("\\".to_string()),
        1 => Just("%00".to_string()),
        1 => "[ -~]{1,3}",
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| format!("/{}", parts.concat()))
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').skip(1).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn normalising_is_idempotent_and_leaves_nothing_to_reinterpret(raw in hostile_path()) {
        let Ok(canonical) = CanonicalPath::parse(&raw) else {
            return Ok(());
        };
        let c = canonical.as_str();
        // A fixed point.
        prop_assert_eq!(CanonicalPath::parse(c), Ok(canonical.clone()));
        prop_assert!(c.starts_with('/'));
        // No dot segment, no empty segment but a trailing one, nothing a parser re-reads.
        let segs = segments(c);
        for (i, s) in segs.iter().enumerate() {
            prop_assert!(*s != "." && *s != "..", "{c}");
            prop_assert!(!s.is_empty() || i + 1 == segs.len(), "{c}");
        }
        let upper = c.to_ascii_uppercase();
        for bad in ["%2E", "%2F", "%5C", "%00", "\\", ";", "//"] {
            prop_assert!(!upper.contains(bad), "{c} contains {bad}");
        }
        prop_assert!(c.bytes().all(|b| b.is_ascii_graphic()), "{c}");
        // `url::Url`, under the upstream client, keeps it byte for byte.
        let url = url::Url::parse(&format!("http://upstream.test{c}")).unwrap();
        prop_assert_eq!(url.path(), c);
        let target = RequestTarget::parse(c).unwrap();
        let upstream = target.upstream_url("https", "h.test:8443").unwrap();
        prop_assert_eq!(upstream.path(), c);
    }

    #[test]
    fn arbitrary_strings_never_panic(raw in any::<String>()) {
        let _ = CanonicalPath::parse(&raw);
        let _ = CanonicalQuery::parse(&raw);
        let _ = RequestTarget::parse(&raw);
        if let Ok(t) = RequestTarget::parse(&format!("/{raw}")) {
            let url = t.upstream_url("http", "127.0.0.1:1").unwrap();
            prop_assert_eq!(url.path(), t.path.as_str());
            prop_assert_eq!(url.query(), t.query.as_ref().map(|q| q.as_str()));
            prop_assert_eq!(RequestTarget::parse(&t.path_and_query()), Ok(t.clone()));
        }
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling(
        before in "[a-z]{0,3}",
        dots in prop::sample::select(vec![".", "..", "%2e", "%2E", ".%2e", "%2e.", "%2E%2e", ".%2E", "%2e%2E"]),
        after in "[a-z]{0,3}",
    ) {
        let raw = format!("/{before}/{dots}/{after}");
        prop_assert_eq!(CanonicalPath::parse(&raw), Err(PathError::DotSegment));
    }

    #[test]
    fn prefix_rewrites_stay_canonical(
        path in hostile_path(),
        replacement in prop::sample::select(vec!["", "/v1", "/a/b", "/x%20y"]),
    ) {
        let Ok(p) = CanonicalPath::parse(&path) else { return Ok(()); };
        let first = p.as_str().split('/').nth(1).unwrap_or("");
        let prefix = if first.is_empty() { String::new() } else { format!("/{first}") };
        let out = p.replace_prefix(&prefix, replacement).unwrap();
        prop_assert_eq!(CanonicalPath::parse(out.as_str()), Ok(out.clone()));
    }
}

// ---------------------------------------------------------------------------------------------
// MCP JSON-RPC envelope

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["2.0", "1.0", "initialize", "tools/call", "tools/list"])
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "jsonrpc", "id", "method", "params", "result", "error", "name", "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn check_envelope(bytes: &[u8]) -> Result<(), TestCaseError> {
    match envelope::parse(bytes) {
        Ok(Envelope::Call(call)) => {
            prop_assert!(
                !call.method.is_empty() && call.method.len() <= envelope::MAX_METHOD_BYTES
            );
            if let Some(id) = &call.id {
                prop_assert!(id.is_string() || id.is_i64() || id.is_u64(), "{id}");
            }
        }
        Ok(Envelope::ClientResponse) => {}
        Err(e) => {
            prop_assert!([-32700, -32600, -32602].contains(&e.code), "{e:?}");
            prop_assert!(e.id.is_null() || e.id.is_string() || e.id.is_i64() || e.id.is_u64());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn envelope_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_envelope(&bytes)?;
    }

    #[test]
    fn envelope_never_panics_on_json(v in any_json()) {
        check_envelope(v.to_string().as_bytes())?;
    }

    #[test]
    fn envelope_messages_with_a_method_keep_their_fields(
        id in prop_oneof![any::<i64>().prop_map(Value::from), "[a-z0-9-]{1,16}".prop_map(Value::String)],
        method in "[a-z/]{1,20}",
        params in prop::collection::vec(("[a-z]{1,5}", any::<i32>()), 0..4),
    ) {
        let params: serde_json::Map<String, Value> =
            params.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let Ok(Envelope::Call(call)) = envelope::parse(msg.to_string().as_bytes()) else {
            return Err(TestCaseError::fail(format!("{msg} refused")));
        };
        prop_assert_eq!(call.id, Some(id));
        prop_assert_eq!(call.method, method);
        prop_assert_eq!(call.params.to_map(), params);
    }
}

#[test]
fn hostile_envelopes_get_the_codes_of_the_error_table() {
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_params = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}1{}}}"#,
        r#"{"a":"#.repeat(200),
        "}".repeat(200)
    );
    let long_method = json!({"jsonrpc": "2.0", "id": 1, "method": "x".repeat(10_000)}).to_string();
    let long_id = json!({"jsonrpc": "2.0", "id": "i".repeat(10_000), "method": "ping"}).to_string();
    let cases: Vec<(String, i64, Value)> = vec![
        ("".into(), -32700, Value::Null),
        ("not json".into(), -32700, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping""#.into(),
            -32700,
            Value::Null,
        ),
        ("\u{feff}{}".into(), -32700, Value::Null),
        (deep_array, -32700, Value::Null),
        (deep_params, -32700, Value::Null),
        // Numbers beyond f64: refused by the JSON parser.
        (
            r#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.into(),
            -32700,
            Value::Null,
        ),
        // Batches.
        ("[]".into(), -32600, Value::Null),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.into(),
            -32600,
            Value::Null,
        ),
        // Not an object.
        ("null".into(), -32600, Value::Null),
        ("42".into(), -32600, Value::Null),
        (r#""2.0""#.into(), -32600, Value::Null),
        // Wrong or missing version.
        (r#"{"id":1,"method":"ping"}"#.into(), -32600, json!(1)),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.into(),
            -32600,
            json!(1),
        ),
        (
            r#"{"jsonrpc":2.0,"id":"a","method":"ping"}"#.into(),
            -32600,
            json!("a"),
        ),
        // Ids that are not a string or an integer, or too big to echo.
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#.into(),
            -32600,
            Value::Null,
        ),
        (long_id, -32600, Value::Null),
        // Methods.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#.into(),
            -32600,
            json!(1),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":""}"#.into(),
            -32600,
            json!(1),
        ),
        (long_method, -32600, json!(1)),
        (r#"{"jsonrpc":"2.0","id":1}"#.into(), -32600, json!(1)),
        (
            r#"{"jsonrpc":"2.0","result":{}}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#.into(),
            -32600,
            json!(1),
        ),
        // Params that are not an object.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}"#.into(),
            -32602,
            json!(1),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#.into(),
            -32602,
            json!(1),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":3}"#.into(),
            -32602,
            json!(1),
        ),
        // A member twice (docs/performance.md §6.2): in the envelope, in params (decoded names).
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","na\u006de":"b"}}"#.into(),
            -32602,
            json!(1),
        ),
        // Deep nesting anywhere, even where nothing is built from it.
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"arguments":{}0{}}}}}"#,
                "[".repeat(300),
                "]".repeat(300)
            ),
            -32700,
            Value::Null,
        ),
    ];
    for (body, code, id) in cases {
        let shown: String = body.chars().take(60).collect();
        let e = envelope::parse(body.as_bytes()).expect_err(&shown);
        assert_eq!((e.code, &e.id), (code, &id), "{shown}: {e:?}");
    }
    // Accepted edge cases.
    assert!(matches!(
        envelope::parse(
            br#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping","params":null}"#
        ),
        Ok(Envelope::Call(_))
    ));
    assert!(matches!(
        envelope::parse(br#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}"#),
        Ok(Envelope::Call(_))
    ));
    assert_eq!(
        envelope::parse(br#"{"jsonrpc":"2.0","id":"s","error":{"code":1}}"#),
        Ok(Envelope::ClientResponse)
    );
}

// ---------------------------------------------------------------------------------------------
// Config loader

const SEED: &str = include_str!("../fixtures/seed-agentgateway.yaml");

fn load(text: &str) -> Result<(), ConfigError> {
    agentid_gateway::serve::load_offline(&agentid_gateway::Source::Inline(text.to_string()), &[])
        .map(|_| ())
}

/// Every refusal names where: a non-empty JSON path or a line.
fn assert_located(e: &ConfigError, input: &str) -> Result<(), TestCaseError> {
    let shown: String = input.chars().take(200).collect();
    match e {
        ConfigError::At { path, message } => {
            prop_assert!(!path.is_empty() && !message.is_empty(), "{e} for {shown}");
        }
        ConfigError::Text { line, message, .. } => {
            prop_assert!(*line >= 1 && !message.is_empty(), "{e} for {shown}");
        }
        ConfigError::Read { .. } => {
            prop_assert!(false, "an inline config read a file: {e}");
        }
    }
    prop_assert!(e.to_string().starts_with("config error at "), "{e}");
    Ok(())
}

/// Config-shaped documents: keys from the gateway's vocabulary, values of any kind.
fn config_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "binds",
        "port",
        "listeners",
        "routes",
        "name",
        "matches",
        "path",
        "pathPrefix",
        "exact",
        "regex",
        "backends",
        "host",
        "mcp",
        "targets",
        "ai",
        "provider",
        "openAI",
        "policies",
        "jwtAuth",
        "mode",
        "issuer",
        "audiences",
        "jwks",
        "backendTLS",
        "root",
        "hostname",
        "urlRewrite",
        "prefix",
        "full",
        "authorization",
        "rules",
        "config",
        "agentid",
        "limits",
        "maxMcpSessions",
        "cors",
        "timeout",
        "weight",
        "hostOverride",
        "unknownKey",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u32..70000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "/",
            "/a/../b",
            "/mcp",
            "127.0.0.1:1",
            "strict",
            "true",
            "[",
            "$X",
            "http://x/",
            "{}",
            "%2f",
            "1s",
            "-1",
        ])
        .prop_map(|s| Value::String(s.into())),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// One edit of the seed text: delete, duplicate or replace a line, or cut the text.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    Replace(usize, String),
    Truncate(usize),
    Swap(String, String),
}

fn seed_edit() -> impl Strategy<Value = Edit> {
    let lines = SEED.lines().count();
    prop_oneof![
        (0..lines).prop_map(Edit::Delete),
        (0..lines).prop_map(Edit::Duplicate),
        (0..lines, "[ -~]{0,30}").prop_map(|(i, s)| Edit::Replace(i, s)),
        (0..SEED.len()).prop_map(Edit::Truncate),
        (
            prop::sample::select(vec![
                "/mcp",
                "/llm",
                "443",
                "strict",
                "{}",
                "backendTLS",
                "- ",
                ": ",
                "\"",
                "[\"*\"]"
            ]),
            prop::sample::select(vec![
                "/a/../mcp",
                "%2F",
                "0",
                "nope",
                "[]",
                "backendTls",
                "",
                "::",
                "'",
                "{}",
                "$NOPE",
                "/mcp;x"
            ]),
        )
            .prop_map(|(a, b)| Edit::Swap(a.into(), b.into())),
    ]
}

fn apply(edits: &[Edit]) -> String {
    let mut lines: Vec<String> = SEED.lines().map(str::to_string).collect();
    let mut truncate = None;
    let mut swaps = Vec::new();
    for e in edits {
        match e {
            Edit::Delete(i) if *i < lines.len() => {
                lines.remove(*i);
            }
            Edit::Duplicate(i) if *i < lines.len() => {
                let l = lines[*i].clone();
                lines.insert(*i, l);
            }
            Edit::Replace(i, s) if *i < lines.len() => lines[*i] = s.clone(),
            Edit::Truncate(n) => truncate = Some(*n),
            Edit::Swap(a, b) => swaps.push((a.clone(), b.clone())),
            _ => {}
        }
    }
    let mut text = lines.join("\n");
    for (a, b) in swaps {
        text = text.replacen(&a, &b, 1);
    }
    if let Some(n) = truncate {
        let cut: String = text.chars().take(n).collect();
        text = cut;
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_config_documents_never_panic(doc in config_json()) {
        for text in [doc.to_string(), serde_yaml_ng::to_string(&doc).unwrap_or_default()] {
            if let Err(e) = load(&text) {
                assert_located(&e, &text)?;
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\n\t]{0,200}") {
        if let Err(e) = load(&text) {
            assert_located(&e, &text)?;
        }
    }

    #[test]
    fn mutations_of_the_seed_never_panic(edits in prop::collection::vec(seed_edit(), 1..4)) {
        let text = apply(&edits);
        if let Err(e) = load(&text) {
            assert_located(&e, &text)?;
        }
    }
}

#[test]
fn the_unmutated_seed_loads() {
    load(SEED).expect("the seed loads");
}
