//! One Graph request as the resource handlers see it: the parsed query, the body checked
//! against a type's properties, and the OData collection conventions (`$filter`, `$search`,
//! `$orderby`, `$top`, `$select`, paging).

use super::odata::cast;
use super::odata::{GraphError, Term, parse_filter};
use super::reply::GResult;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub(crate) struct Req<'a> {
    pub sts: &'a crate::state::StsState,
    pub base: String,
    pub version: &'a str,
    pub method: Method,
    pub query: HashMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// The path after the version, for `@odata.nextLink`.
    pub path: String,
}

impl Req<'_> {
    pub fn context(&self, what: &str) -> String {
        format!("{}/{}/$metadata#{what}", self.base, self.version)
    }

    /// The JSON body as an object whose keys are all in `allowed` (read-only ones are dropped).
    pub fn body_object(
        &self,
        type_name: &str,
        allowed: &[&str],
        read_only: &[&str],
    ) -> GResult<Map<String, Value>> {
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| GraphError::bad_request(format!("Invalid JSON body: {e}.")))?;
        let Value::Object(mut m) = v else {
            return Err(GraphError::bad_request(
                "The request body must be a JSON object.",
            ));
        };
        m.retain(|k, _| {
            !read_only.iter().any(|r| r.eq_ignore_ascii_case(k))
                && !k.eq_ignore_ascii_case("@odata.type")
        });
        for k in m.keys() {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(k)) {
                return Err(GraphError::bad_request(format!(
                    "Property '{k}' does not exist on type 'microsoft.graph.{type_name}'."
                )));
            }
        }
        Ok(m)
    }

    pub fn odata_type(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v.get("@odata.type")
            .and_then(Value::as_str)
            .map(|t| cast(t.trim_start_matches('#')))
    }

    pub fn filter(&self) -> GResult<Option<Vec<Term>>> {
        self.query
            .get("$filter")
            .map(|f| parse_filter(f))
            .transpose()
    }

    /// Applies `$search`, `$orderby`, `$top` and `$select` to a collection and wraps it.
    pub fn collection(&self, what: &str, mut items: Vec<Value>) -> GResult<Value> {
        for k in self.query.keys() {
            if k.starts_with('$')
                && ![
                    "$filter",
                    "$top",
                    "$select",
                    "$orderby",
                    "$count",
                    "$search",
                    "$skiptoken",
                ]
                .contains(&k.as_str())
            {
                return Err(GraphError::unsupported_query(format!(
                    "Query option '{k}' is not supported."
                )));
            }
        }
        let eventual = self
            .headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
        if (self.query.contains_key("$search") || self.query.contains_key("$count")) && !eventual {
            return Err(GraphError::unsupported_query(
                "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
            ));
        }
        if let Some(s) = self.query.get("$search") {
            let needle = s
                .trim_matches('"')
                .strip_prefix("displayName:")
                .unwrap_or(s.trim_matches('"'))
                .to_lowercase();
            items.retain(|i| {
                i["displayName"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(&needle)
            });
        }
        if let Some(o) = self.query.get("$orderby") {
            let (prop, desc) = match o.split_once(' ') {
                Some((p, d)) => (p, d.eq_ignore_ascii_case("desc")),
                None => (o.as_str(), false),
            };
            if prop != "displayName" && prop != "createdDateTime" {
                return Err(GraphError::unsupported_query(format!(
                    "Ordering by '{prop}' is not supported."
                )));
            }
            items.sort_by_key(|i| i[prop].as_str().unwrap_or("").to_lowercase());
            if desc {
                items.reverse();
            }
        }
        let count = items.len();
        let top = match self.query.get("$top") {
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|t| (1..=999).contains(t))
                .ok_or_else(|| GraphError::bad_request("$top must be between 1 and 999."))?,
            None => 100,
        };
        // Paging: `$skiptoken` is opaque to clients (base64url of the offset).
        let skip = match self.query.get("$skiptoken") {
            Some(t) => {
                use base64::Engine;
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                raw.and_then(|r| r.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
                    .ok_or_else(|| GraphError::bad_request("Invalid $skiptoken."))?
            }
            None => 0,
        };
        let more = items.len() > skip + top;
        let mut items: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
        let next_link = more.then(|| {
            use base64::Engine;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("o:{}", skip + top));
            let mut q: Vec<(String, String)> = self
                .query
                .iter()
                .filter(|(k, _)| *k != "$skiptoken")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            q.sort();
            q.push(("$skiptoken".into(), token));
            let qs: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(q)
                .finish();
            format!("{}/{}/{}?{qs}", self.base, self.version, self.path)
        });
        if let Some(sel) = self.query.get("$select") {
            let keep: Vec<&str> = sel.split(',').map(str::trim).collect();
            for i in items.iter_mut() {
                if let Value::Object(m) = i {
                    m.retain(|k, _| {
                        k.starts_with("@odata") || keep.iter().any(|s| s.eq_ignore_ascii_case(k))
                    });
                }
            }
        }
        let mut body = json!({"@odata.context": self.context(what), "value": items});
        if let Some(n) = next_link {
            body["@odata.nextLink"] = json!(n);
        }
        if self.query.get("$count").is_some_and(|c| c == "true") {
            body["@odata.count"] = json!(count);
        }
        Ok(body)
    }
}
