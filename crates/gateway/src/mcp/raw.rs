//! JSON objects as written (docs/performance.md §6.2): an object's members with their values
//! as raw JSON text, a name seen twice refused; and an object written back from such members
//! with some replaced. What the MCP path reads and relays without building every value.

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;

/// A JSON object written from `members` (name, JSON text), except those named in `set`, written
/// from the given values (and added at the end when absent). Names are written escaped by
/// serde_json; the caller gives each name once.
pub(super) fn write_object<'a>(
    members: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    set: &[(&str, &Value)],
) -> String {
    let size: usize = members.clone().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = String::with_capacity(size + 2 + 64 * set.len());
    out.push('{');
    let member = |out: &mut String, k: &str, v: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::from(k).to_string());
        out.push(':');
        out.push_str(v);
    };
    let mut seen = vec![false; set.len()];
    for (k, v) in members {
        match set.iter().position(|(name, _)| *name == k) {
            Some(i) => {
                seen[i] = true;
                member(&mut out, k, &set[i].1.to_string());
            }
            None => member(&mut out, k, v),
        }
    }
    for ((name, value), seen) in set.iter().zip(seen) {
        if !seen {
            member(&mut out, name, &value.to_string());
        }
    }
    out.push('}');
    out
}

/// A JSON object's members in order, values as written; a name seen twice is an error.
pub(super) fn members(text: &str) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    serde_json::from_str::<Members<&RawValue>>(text).map(|m| m.0)
}

/// Up to this many members, duplicates are looked for member by member.
const LINEAR_CHECK: usize = 16;

fn duplicate<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate member {name:?}"))
}

/// An object's members in order; a name seen twice is an error.
struct Members<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Members<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Walk<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Walk<V> {
            type Value = Members<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    // Small objects (every JSON-RPC envelope) are checked as they are read;
                    // a large one once at the end, sorted, so a body of many members costs
                    // n log n, not n² (the body is the client's or an upstream's to grow).
                    if out.len() < LINEAR_CHECK && out.iter().any(|(k, _)| *k == key) {
                        return Err(duplicate(&key));
                    }
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                if out.len() > LINEAR_CHECK {
                    let mut names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
                    names.sort_unstable();
                    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
                        return Err(duplicate(pair[0]));
                    }
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Walk(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(names: impl Iterator<Item = String>) -> String {
        let body: Vec<String> = names.map(|n| format!("{n:?}:0")).collect();
        format!("{{{}}}", body.join(","))
    }

    #[test]
    fn a_duplicate_is_found_in_small_and_large_objects() {
        for n in [2usize, LINEAR_CHECK, LINEAR_CHECK + 1, 50_000] {
            let distinct = object((0..n).map(|i| format!("m{i}")));
            assert_eq!(members(&distinct).unwrap().len(), n, "{n} distinct members");
            // The repeated name first, in the middle, and last.
            for at in [0, n / 2, n - 1] {
                let names = (0..n).map(|i| format!("m{i}")).chain([format!("m{at}")]);
                let err = members(&object(names)).unwrap_err().to_string();
                assert!(
                    err.contains(&format!("duplicate member \"m{at}\"")),
                    "{n}/{at}: {err}"
                );
            }
        }
    }
}
