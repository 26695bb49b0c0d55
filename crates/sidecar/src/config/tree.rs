//! The configuration tree: every source (workload-identity variables, the JSON file, `__`
//! environment variables, command-line flags) is flattened into one tree of string leaves with
//! case-insensitive keys, in increasing order of precedence, the way .NET's configuration
//! system merges providers. Arrays become indexed children (`Scopes__0`), so a file array and
//! indexed environment keys merge the same way they do upstream.

use serde_json::Value;

/// Sections of the environment that belong to the sidecar; other variables are not read.
const SECTIONS: [&str; 5] = ["AzureAd", "DownstreamApis", "Sidecar", "Logging", "Kestrel"];

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Leaf(String),
    Branch(Vec<(String, Node)>),
}

/// A scalar and an indexed list under the same key, from the same source. The list wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub key: String,
}

#[derive(Debug, Default)]
pub struct Tree {
    root: Vec<(String, Node)>,
    /// Rank of the source that wrote each leaf path, to tell same-source conflicts apart.
    ranks: Vec<(String, u8)>,
    pub conflicts: Vec<Conflict>,
    /// Downstream API names that differ only in case: (first spelling, second spelling).
    pub name_collisions: Vec<(String, String)>,
}

fn rank_of(ranks: &[(String, u8)], path: &str) -> Option<u8> {
    ranks
        .iter()
        .rev()
        .find(|(p, _)| p.eq_ignore_ascii_case(path))
        .map(|(_, r)| *r)
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `path` to `value`. `rank` is the precedence of the source (higher wins).
    pub fn set(&mut self, path: &[&str], value: &str, rank: u8) {
        if path.is_empty() {
            return;
        }
        let joined = path.join("__");
        let mut children = &mut self.root;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let prefix = path[..=i].join("__");
            if i == 1
                && path[0].eq_ignore_ascii_case("DownstreamApis")
                && let Some((k, _)) = children
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(seg) && k != seg)
            {
                self.name_collisions.push((k.clone(), seg.to_string()));
            }
            let same_source = rank_of(&self.ranks, &prefix) == Some(rank);
            let idx = match children
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case(seg))
            {
                Some(idx) => idx,
                None => {
                    let fresh = if last {
                        Node::Leaf(String::new())
                    } else {
                        Node::Branch(vec![])
                    };
                    children.push((seg.to_string(), fresh));
                    children.len() - 1
                }
            };
            let node = &mut children[idx].1;
            if last {
                match node {
                    Node::Leaf(v) => *v = value.to_string(),
                    Node::Branch(_) if same_source => {
                        // `Scopes="a b"` next to `Scopes__0`: the indexed form wins.
                        self.conflicts.push(Conflict { key: joined });
                        return;
                    }
                    Node::Branch(_) => *node = Node::Leaf(value.to_string()),
                }
                self.ranks.push((joined, rank));
                return;
            }
            if let Node::Leaf(_) = node {
                if same_source {
                    self.conflicts.push(Conflict {
                        key: prefix.clone(),
                    });
                }
                *node = Node::Branch(vec![]);
            }
            // Record that this prefix is now a branch written by `rank`.
            self.ranks.push((prefix, rank));
            match node {
                Node::Branch(next) => children = next,
                Node::Leaf(_) => return,
            }
        }
    }

    /// Adds a JSON document (the config file).
    pub fn add_json(&mut self, value: &Value, rank: u8) {
        let mut path = Vec::new();
        self.add_json_at(&mut path, value, rank);
    }

    fn add_json_at(&mut self, path: &mut Vec<String>, value: &Value, rank: u8) {
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    path.push(k.clone());
                    self.add_json_at(path, v, rank);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(i.to_string());
                    self.add_json_at(path, v, rank);
                    path.pop();
                }
            }
            Value::Null => {}
            Value::String(s) => self.set_owned(path, s, rank),
            other => self.set_owned(path, &other.to_string(), rank),
        }
    }

    fn set_owned(&mut self, path: &[String], value: &str, rank: u8) {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        self.set(&p, value, rank);
    }

    /// Adds the environment variables that belong to a sidecar section (`AzureAd__ClientId`,
    /// also `AzureAd:ClientId`). Returns the names of variables that could not be split.
    pub fn add_env<'a>(
        &mut self,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
        rank: u8,
    ) -> Vec<String> {
        let mut bad = Vec::new();
        for (name, value) in vars {
            let normalised = name.replace(':', "__");
            let segments: Vec<&str> = normalised.split("__").collect();
            if segments.len() < 2 || !SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(segments[0])) {
                continue;
            }
            if segments.iter().any(|s| s.is_empty()) {
                bad.push(name.to_string());
                continue;
            }
            self.set(&segments, value, rank);
        }
        bad
    }

    pub fn root(&self) -> Node {
        Node::Branch(self.root.clone())
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: &[&str]) -> Option<&Node> {
        let mut children = &self.root;
        let mut found = None;
        for seg in path {
            let node = children
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(seg))
                .map(|(_, n)| n)?;
            found = Some(node);
            match node {
                Node::Branch(c) => children = c,
                Node::Leaf(_) => children = &EMPTY,
            }
        }
        found
    }
}

static EMPTY: Vec<(String, Node)> = Vec::new();

impl Node {
    /// Keys of a branch (empty for a leaf).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Node::Branch(c) => c.iter().map(|(k, _)| k.as_str()).collect(),
            Node::Leaf(_) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_beats_file_and_keys_are_case_insensitive() {
        let mut t = Tree::new();
        t.add_json(
            &serde_json::json!({"AzureAd": {"ClientId": "file", "TenantId": "t"}}),
            1,
        );
        t.add_env([("AZUREAD__CLIENTID", "env"), ("PATH", "/bin")], 2);
        assert_eq!(
            t.get(&["azuread", "clientid"]),
            Some(&Node::Leaf("env".into()))
        );
        assert_eq!(
            t.get(&["AzureAd", "TenantId"]),
            Some(&Node::Leaf("t".into()))
        );
        assert!(t.get(&["Path"]).is_none());
    }

    #[test]
    fn indexed_list_beats_scalar_from_the_same_source() {
        let mut t = Tree::new();
        t.add_env(
            [
                ("DownstreamApis__g__Scopes", "a b"),
                ("DownstreamApis__g__Scopes__0", "x"),
            ],
            2,
        );
        assert!(matches!(
            t.get(&["DownstreamApis", "g", "Scopes"]),
            Some(Node::Branch(_))
        ));
        assert_eq!(t.conflicts.len(), 1);
        let mut t = Tree::new();
        t.add_env(
            [
                ("DownstreamApis__g__Scopes__0", "x"),
                ("DownstreamApis__g__Scopes", "a b"),
            ],
            2,
        );
        assert!(matches!(
            t.get(&["DownstreamApis", "g", "Scopes"]),
            Some(Node::Branch(_))
        ));
        // A higher-precedence scalar replaces a lower-precedence list.
        let mut t = Tree::new();
        t.add_json(
            &serde_json::json!({"DownstreamApis": {"g": {"Scopes": ["x"]}}}),
            1,
        );
        t.add_env([("DownstreamApis__g__Scopes", "a b")], 2);
        assert_eq!(
            t.get(&["DownstreamApis", "g", "Scopes"]),
            Some(&Node::Leaf("a b".into()))
        );
    }

    #[test]
    fn file_arrays_merge_with_indexed_environment_keys() {
        let mut t = Tree::new();
        t.add_json(
            &serde_json::json!({"AzureAd": {"ClientCredentials": [{"SourceType": "ClientSecret", "ClientSecret": "a"}]}}),
            1,
        );
        t.add_env([("AzureAd__ClientCredentials__0__ClientSecret", "b")], 2);
        assert_eq!(
            t.get(&["AzureAd", "ClientCredentials", "0", "ClientSecret"]),
            Some(&Node::Leaf("b".into()))
        );
        assert_eq!(
            t.get(&["AzureAd", "ClientCredentials", "0", "SourceType"]),
            Some(&Node::Leaf("ClientSecret".into()))
        );
    }
}
