//! The contract file (upstream's OpenAPI document): every JSON 200, 400 and 401 body a test
//! receives from a token route is validated against the schema declared for it (docs/sidecar.md
//! §1.1, §16.P7). Also a small Prometheus text-format parser (§16.P1).

use serde_json::Value;
use std::sync::OnceLock;

const CONTRACT: &str = include_str!("../../../contract/entra-sdk-sidecar.openapi.json");

fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(CONTRACT).expect("contract JSON"))
}

/// The contract's path template for a request path.
fn template(path: &str) -> Option<&'static str> {
    let first = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()?
        .to_ascii_lowercase();
    Some(match first.as_str() {
        "validate" => "/Validate",
        "authorizationheader" => "/AuthorizationHeader/{apiName}",
        "authorizationheaderunauthenticated" => "/AuthorizationHeaderUnauthenticated/{apiName}",
        "downstreamapi" => "/DownstreamApi/{apiName}",
        "downstreamapiunauthenticated" => "/DownstreamApiUnauthenticated/{apiName}",
        _ => return None,
    })
}

fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc()["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => false,
    }
}

/// Validates `v` against the subset of JSON Schema the contract uses.
pub fn validate(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(schema);
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| type_ok(t, v)) {
            return Err(format!("{at}: {v} is not of type {types:?}"));
        }
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str()) {
        // The only pattern in the contract: an integer written as a string.
        assert_eq!(p, r"^-?(?:0|[1-9]\d*)$");
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return Err(format!("{at}: '{s}' does not match {p}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{at}: required member '{r}' is missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            if let Some(ps) = props.and_then(|p| p.get(k)) {
                validate(ps, val, &format!("{at}.{k}"))?;
            } else if let Some(extra) = schema.get("additionalProperties") {
                if extra.is_object() {
                    validate(extra, val, &format!("{at}.{k}"))?;
                } else if extra == &Value::Bool(false) {
                    return Err(format!("{at}: member '{k}' is not allowed"));
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            validate(items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks a response of a token route against the contract (no-op for other routes, other
/// statuses, and the empty-body 401 of §7.3).
pub fn check(path: &str, resp: &super::Resp) {
    let Some(t) = template(path) else { return };
    if !matches!(resp.status, 200 | 400 | 401) || resp.body.is_empty() {
        return;
    }
    let op = &doc()["paths"][t];
    let op = op.get("get").or_else(|| op.get("post")).expect("operation");
    let content = &op["responses"][resp.status.to_string()]["content"];
    let (media, schema) = content
        .as_object()
        .and_then(|m| m.iter().next())
        .unwrap_or_else(|| panic!("contract declares no body for {t} {}", resp.status));
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with(media.as_str()),
        "{t} {}: content-type '{ct}' is not {media}",
        resp.status
    );
    let body: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("{t} {}: body is not JSON ({e})", resp.status));
    if let Err(e) = validate(&schema["schema"], &body, "$") {
        panic!("{t} {}: {e}\nbody: {body}", resp.status);
    }
    CHECKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many bodies were validated (tests assert that the check ran).
pub static CHECKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Parses Prometheus text format 0.0.4 strictly enough to catch malformed output: every sample
/// belongs to a declared family, every line is a comment or `name{labels} value`.
pub fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut families: Vec<(String, String)> = vec![];
    let mut out = vec![];
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().unwrap().to_string();
            let kind = p.next().expect("a type").to_string();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()),
                "unknown type in {line}"
            );
            families.push((name, kind));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment line: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels in {line}"
            );
        }
        let family = families.iter().find(|(f, kind)| {
            name == f
                || (kind == "histogram"
                    && [
                        format!("{f}_bucket"),
                        format!("{f}_sum"),
                        format!("{f}_count"),
                    ]
                    .contains(&name.to_string()))
        });
        assert!(family.is_some(), "sample without a # TYPE: {line}");
        out.push((series.to_string(), value));
    }
    out
}
