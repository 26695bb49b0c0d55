//! MCP tool names → OpenAI function names (`^[A-Za-z0-9_-]{1,64}$`), reversibly.
//!
//! MCP allows names OpenAI refuses (dots, slashes, long names) and two servers may offer the
//! same name. A name offered by one server and already valid is kept as is; a name offered by
//! several servers becomes `{server}__{tool}` (no silent shadowing); anything else is escaped
//! (invalid characters become `_`) and, when that changed it or it is too long, made unique by a
//! hash of the original. The map keeps the way back, so the mapping never needs to be inverted.

use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const MAX_LEN: usize = 64;

/// Whether OpenAI accepts `name` as a function name.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn hash8(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The function name for `wanted` (already namespaced if needed), before collision checks.
pub fn sanitize(wanted: &str) -> String {
    if is_valid(wanted) {
        return wanted.to_string();
    }
    let escaped: String = wanted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Room for "_" + 8 hex characters of the original's hash.
    let keep: String = escaped.chars().take(MAX_LEN - 9).collect();
    let keep = if keep.is_empty() {
        "tool".to_string()
    } else {
        keep
    };
    format!("{keep}_{}", hash8(wanted))
}

/// Where a function name leads: the server (by index) and the tool's MCP name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: usize,
    pub tool: String,
}

/// The two-way map for one set of servers' tools.
#[derive(Debug, Default, Clone)]
pub struct ToolNames {
    back: HashMap<String, Target>,
    forward: HashMap<(usize, String), String>,
}

impl ToolNames {
    /// `servers[i]` = (server name, its tools' MCP names).
    pub fn build(servers: &[(String, Vec<String>)]) -> Self {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, tools) in servers {
            let mut seen = std::collections::HashSet::new();
            for t in tools {
                if seen.insert(t.as_str()) {
                    *count.entry(t.as_str()).or_default() += 1;
                }
            }
        }
        let mut map = ToolNames::default();
        for (i, (server, tools)) in servers.iter().enumerate() {
            for tool in tools {
                if map.forward.contains_key(&(i, tool.clone())) {
                    continue;
                }
                let wanted = if count.get(tool.as_str()).copied().unwrap_or(0) > 1 {
                    format!("{server}__{tool}")
                } else {
                    tool.clone()
                };
                let mut name = sanitize(&wanted);
                // A clash between an escaped name and a real one: add a counter (hashed so
                // the result still fits).
                let mut n = 1;
                while map.back.contains_key(&name) {
                    name = sanitize(&format!("{wanted}\u{0}{n}"));
                    n += 1;
                }
                map.back.insert(
                    name.clone(),
                    Target {
                        server: i,
                        tool: tool.clone(),
                    },
                );
                map.forward.insert((i, tool.clone()), name);
            }
        }
        map
    }

    pub fn resolve(&self, function: &str) -> Option<&Target> {
        self.back.get(function)
    }

    pub fn function_name(&self, server: usize, tool: &str) -> Option<&str> {
        self.forward
            .get(&(server, tool.to_string()))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.back.len()
    }

    pub fn is_empty(&self) -> bool {
        self.back.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn examples() {
        let m = ToolNames::build(&[
            ("gw".into(), vec!["whoami".into(), "notes.add".into()]),
            ("other".into(), vec!["whoami".into(), "x".repeat(80)]),
        ]);
        assert_eq!(m.function_name(0, "whoami"), Some("gw__whoami"));
        assert_eq!(m.function_name(1, "whoami"), Some("other__whoami"));
        let dotted = m.function_name(0, "notes.add").unwrap();
        assert!(
            dotted.starts_with("notes_add_") && is_valid(dotted),
            "{dotted}"
        );
        let long = m.function_name(1, &"x".repeat(80)).unwrap();
        assert_eq!(long.len(), 64);
        assert_eq!(
            m.resolve(long),
            Some(&Target {
                server: 1,
                tool: "x".repeat(80)
            })
        );
    }

    /// Property: for random server/tool sets, every function name is valid and unique, and
    /// resolves back to exactly the tool it came from.
    #[test]
    fn mapping_is_valid_unique_and_reversible() {
        let alphabet: Vec<char> = "ab_-.:/ é1Z".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let servers: Vec<(String, Vec<String>)> = (0..rng.gen_range(1..4))
                .map(|i| {
                    let tools = (0..rng.gen_range(0..8))
                        .map(|_| {
                            let len = rng.gen_range(1..90);
                            (0..len)
                                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                                .collect::<String>()
                        })
                        .collect();
                    (format!("s{i}"), tools)
                })
                .collect();
            let m = ToolNames::build(&servers);
            let mut names = std::collections::HashSet::new();
            for (i, (_, tools)) in servers.iter().enumerate() {
                for t in tools {
                    let f = m.function_name(i, t).expect("every tool is mapped");
                    assert!(is_valid(f), "{f:?} from {t:?}");
                    assert_eq!(
                        m.resolve(f),
                        Some(&Target {
                            server: i,
                            tool: t.clone()
                        })
                    );
                    names.insert(f.to_string());
                }
            }
            assert_eq!(names.len(), m.len());
        }
    }
}
