//! `/openapi/v1.json` (docs/sidecar.md §2): the contract file embedded at build time, with the
//! DownstreamApi path items extended to the verbs agentid accepts.

use serde_json::Value;

/// The upstream contract (OpenAPI 3.1.1, MIT, from AzureAD/microsoft-identity-web).
pub const CONTRACT: &str = include_str!("../contract/entra-sdk-sidecar.openapi.json");

pub fn document() -> Value {
    let mut doc: Value = serde_json::from_str(CONTRACT).unwrap_or(Value::Null);
    for path in [
        "/DownstreamApi/{apiName}",
        "/DownstreamApiUnauthenticated/{apiName}",
    ] {
        let Some(item) = doc["paths"].get_mut(path).and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(post) = item.get("post").cloned() else {
            continue;
        };
        for verb in ["get", "put", "patch", "delete"] {
            let mut op = post.clone();
            if let Some(id) = op["operationId"].as_str().map(str::to_string) {
                let mut v = verb.to_string();
                v[..1].make_ascii_uppercase();
                op["operationId"] = Value::String(format!("{id}{v}"));
            }
            if verb != "put"
                && verb != "patch"
                && let Some(o) = op.as_object_mut()
            {
                o.remove("requestBody");
            }
            item.insert(verb.to_string(), op);
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn downstream_paths_have_five_verbs() {
        let d = super::document();
        let item = &d["paths"]["/DownstreamApi/{apiName}"];
        for v in ["get", "post", "put", "patch", "delete"] {
            assert!(item[v].is_object(), "{v}");
        }
        assert_eq!(item["get"]["operationId"], "DownstreamApiGet");
    }
}
