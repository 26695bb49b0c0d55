//! Where settings come from and which wins (docs/sidecar.md §12.1, §12.4): Azure workload-identity
//! variables, then the JSON file, then environment variables, then command-line flags, merged
//! into one key tree and read into the raw serde types.

use super::invalid;
use crate::config::de::{DeError, NodeDe};
use crate::config::raw::RawRoot;
use crate::config::tree::Tree;
use crate::config::{ConfigError, ConfigSources};
use std::path::{Path, PathBuf};

const RANK_WORKLOAD_IDENTITY: u8 = 0;
const RANK_FILE: u8 = 1;
const RANK_ENV: u8 = 2;
const RANK_FLAGS: u8 = 3;

/// Every source merged, higher ranks winning.
pub(super) fn tree(sources: &ConfigSources) -> Result<Tree, ConfigError> {
    let mut tree = Tree::new();
    // Azure workload-identity variables are defaults (docs/sidecar.md §12.4).
    for (var, key) in [
        ("AZURE_CLIENT_ID", "ClientId"),
        ("AZURE_TENANT_ID", "TenantId"),
        ("AZURE_AUTHORITY_HOST", "Instance"),
    ] {
        if let Some(v) = sources.var(var) {
            tree.set(&["AzureAd", key], v, RANK_WORKLOAD_IDENTITY);
        }
    }
    if let Some(path) = config_file(sources) {
        tree.add_json(&read_file(&path)?, RANK_FILE);
    }
    let bad = tree.add_env(
        sources.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        RANK_ENV,
    );
    if let Some(b) = bad.first() {
        return Err(invalid(b.clone(), "empty segment in the key name"));
    }
    if let Some(l) = &sources.listen {
        tree.set(&["Sidecar", "ListenUrl"], l, RANK_FLAGS);
    }
    if let Some(h) = &sources.health_listen {
        tree.set(&["Sidecar", "HealthListenUrl"], h, RANK_FLAGS);
    }
    if let Some((first, second)) = tree.name_collisions.first() {
        return Err(ConfigError::ApiNameCollision {
            first: first.clone(),
            second: second.clone(),
        });
    }
    Ok(tree)
}

/// The merged tree as the raw serde types; an unknown or malformed key is named by its path.
pub(super) fn raw(tree: &Tree) -> Result<RawRoot, ConfigError> {
    let root = tree.root();
    serde_path_to_error::deserialize(NodeDe(&root)).map_err(|e| {
        let path = render_path(e.path());
        match e.into_inner() {
            DeError::UnknownKey(k) => {
                let key = if path.is_empty() {
                    k.clone()
                } else if path.ends_with(&k) {
                    path
                } else {
                    format!("{path}__{k}")
                };
                invalid(key, "unknown key")
            }
            DeError::Message(m) => invalid(path, m),
        }
    })
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = Vec::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push(index.to_string()),
            Segment::Map { key } => out.push(key.clone()),
            Segment::Enum { variant } => out.push(variant.clone()),
            Segment::Unknown => {}
        }
    }
    out.join("__")
}

fn config_file(sources: &ConfigSources) -> Option<PathBuf> {
    if let Some(f) = &sources.file {
        return Some(f.clone());
    }
    if let Some(f) = sources.var("AGENTID_SIDECAR_CONFIG") {
        return Some(PathBuf::from(f));
    }
    let default = PathBuf::from("appsettings.json");
    (sources.search_default_file && default.exists()).then_some(default)
}

fn read_file(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if !value.is_object() {
        return Err(ConfigError::ParseFile {
            path: path.display().to_string(),
            reason: "the top level must be a JSON object".into(),
        });
    }
    // Names in one JSON object that differ only in case are a collision there too.
    if let Some(apis) = value
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("DownstreamApis"))
        })
        .and_then(|(_, v)| v.as_object())
    {
        let names: Vec<&String> = apis.keys().collect();
        for (i, a) in names.iter().enumerate() {
            if let Some(b) = names[i + 1..].iter().find(|b| b.eq_ignore_ascii_case(a)) {
                return Err(ConfigError::ApiNameCollision {
                    first: a.to_string(),
                    second: b.to_string(),
                });
            }
        }
    }
    Ok(value)
}
