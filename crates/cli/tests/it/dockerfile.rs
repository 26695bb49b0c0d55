//! The repository's `Dockerfile` cannot be built here (no image builder on the machines that
//! test agentid, as its header says), so this checks what can be checked without building it:
//!
//! - the build stage runs CI's toolchain (the `rustc` running these tests) and builds this
//!   package's binary with `cargo build --release --locked`;
//! - the runtime stage puts that binary at the path every agentid container in `deploy/` names
//!   as its `command`, as its entrypoint, and runs as the user the pods ask for;
//! - the image every agentid container uses is the one `deploy/kustomization.yaml` pins, at the
//!   workspace version;
//! - every such container's `args` is a command line the built binary accepts: its subcommand
//!   exists and each of its options is one the subcommand documents.

// Shared with the deploy tests, which use the rest of it.
#[allow(dead_code)]
use crate::deploy_support::{repo_root, yaml_docs};
use serde_json::Value;
use std::collections::BTreeSet;

const IMAGE: &str = "ghcr.io/agentid/agentid";

/// The Dockerfile's instructions (continuation lines joined, comments dropped), as
/// (keyword, rest).
fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("the Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The instructions of each stage, split at `FROM`.
fn stages() -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for i in instructions() {
        if i.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(i);
    }
    stages
}

fn toml(path: &str) -> toml_like::Doc {
    toml_like::Doc::read(&repo_root().join(path))
}

/// Just enough TOML for `[section]` `key = "value"` lookups (no TOML parser among the
/// workspace's dependencies).
mod toml_like {
    pub struct Doc(Vec<(String, String, String)>);

    impl Doc {
        pub fn read(path: &std::path::Path) -> Doc {
            let text = std::fs::read_to_string(path).unwrap();
            let mut section = String::new();
            let mut entries = Vec::new();
            for line in text.lines().map(str::trim) {
                if let Some(s) = line.strip_prefix('[') {
                    section = s.trim_matches(|c| c == '[' || c == ']').to_string();
                } else if let Some((k, v)) = line.split_once('=') {
                    let v = v.trim();
                    if let Some(v) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                        entries.push((section.clone(), k.trim().to_string(), v.to_string()));
                    }
                }
            }
            Doc(entries)
        }

        pub fn get(&self, section: &str, key: &str) -> String {
            self.0
                .iter()
                .find(|(s, k, _)| s == section && k == key)
                .map(|(_, _, v)| v.clone())
                .unwrap_or_else(|| panic!("[{section}] {key}"))
        }
    }
}

/// Every container (init containers too) whose image is agentid's, with its pod spec.
fn agentid_containers() -> Vec<(String, Value, Value)> {
    let dir = repo_root().join("deploy");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for doc in yaml_docs(&std::fs::read_to_string(&path).unwrap(), &file) {
            let pod = &doc["spec"]["template"]["spec"];
            for list in ["initContainers", "containers"] {
                for c in pod[list].as_array().into_iter().flatten() {
                    if c["image"]
                        .as_str()
                        .is_some_and(|i| i.split(':').next() == Some(IMAGE))
                    {
                        let what = format!("{file}: {}", c["name"].as_str().unwrap_or("?"));
                        out.push((what, c.clone(), pod.clone()));
                    }
                }
            }
        }
    }
    assert!(
        out.len() >= 4,
        "the STS, the gateway, the sidecar and the agent: {out:?}"
    );
    out
}

#[test]
fn the_build_stage_builds_what_ci_builds_with_ci_s_toolchain() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let build = &stages[0];
    let from = &build[0].1;
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .expect("rustc");
    let version = String::from_utf8_lossy(&rustc.stdout);
    let minor: String = version
        .split_whitespace()
        .nth(1)
        .expect("rustc X.Y.Z")
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    assert!(
        from.starts_with(&format!("docker.io/library/rust:{minor}-"))
            && from.ends_with(" AS build"),
        "the build image is Rust {minor}, CI's toolchain: FROM {from}"
    );
    let package = toml("crates/cli/Cargo.toml").get("package", "name");
    let binary = toml("crates/cli/Cargo.toml").get("bin", "name");
    let run = build
        .iter()
        .find(|(k, _)| k == "RUN")
        .map(|(_, r)| r.clone())
        .expect("a RUN that builds");
    let command = format!("cargo build --release --locked -p {package} --bin {binary}");
    assert!(run.contains(&command), "`{command}` in: {run}");
    assert!(
        run.contains(&format!("target/release/{binary} /out/{binary}")),
        "the built binary is staged: {run}"
    );
}

#[test]
fn the_runtime_stage_matches_every_agentid_container_in_deploy() {
    let stages = stages();
    let runtime = &stages[1];
    let binary = toml("crates/cli/Cargo.toml").get("bin", "name");
    let copy = runtime
        .iter()
        .find(|(k, _)| k == "COPY")
        .map(|(_, r)| r.clone())
        .expect("COPY --from=build");
    let path = copy
        .strip_prefix(&format!("--from=build /out/{binary} "))
        .unwrap_or_else(|| panic!("the runtime copies the built binary: COPY {copy}"))
        .to_string();
    let entrypoint = runtime
        .iter()
        .find(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, r)| r.clone())
        .expect("ENTRYPOINT");
    assert_eq!(entrypoint, format!("[\"{path}\"]"));
    let user = runtime
        .iter()
        .find(|(k, _)| k == "USER")
        .map(|(_, r)| r.clone())
        .expect("USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    assert_ne!(uid, "0", "non-root");

    let kustomization: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let pinned = kustomization["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == IMAGE)
        .expect("kustomization pins agentid's image");
    let version = toml("Cargo.toml").get("workspace.package", "version");
    assert_eq!(
        pinned["newTag"],
        version.as_str(),
        "the image tag is the version"
    );

    for (what, container, pod) in agentid_containers() {
        assert_eq!(
            container["image"],
            format!("{IMAGE}:{version}").as_str(),
            "{what}"
        );
        assert_eq!(
            container["command"],
            serde_json::json!([path]),
            "{what}: the command is the image's binary"
        );
        let security = &pod["securityContext"];
        assert_eq!(security["runAsUser"].to_string(), uid, "{what}");
        assert_eq!(security["runAsGroup"].to_string(), gid, "{what}");
        assert_eq!(security["runAsNonRoot"], true, "{what}");
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"], true,
            "{what}: the image needs no writable root"
        );
    }
}

#[test]
fn every_container_s_args_are_a_command_line_the_binary_accepts() {
    let bin = env!("CARGO_BIN_EXE_agentid");
    let mut checked = BTreeSet::new();
    for (what, container, _) in agentid_containers() {
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: args"))
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let subcommand: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .map(String::as_str)
            .collect();
        assert!(!subcommand.is_empty(), "{what}: {args:?}");
        let help = std::process::Command::new(bin)
            .args(&subcommand)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.status.success(),
            "{what}: `agentid {} --help` fails: {}",
            subcommand.join(" "),
            String::from_utf8_lossy(&help.stderr)
        );
        for option in args.iter().filter(|a| a.starts_with('-')) {
            let name = option.split('=').next().unwrap();
            let documented = text
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| {
                    w == name
                        || w.strip_prefix(name)
                            .is_some_and(|rest| rest.starts_with(['=', '[', '<']))
                });
            assert!(
                documented,
                "{what}: `agentid {}` has no option {name}:\n{text}",
                subcommand.join(" ")
            );
        }
        checked.insert(subcommand.join(" "));
    }
    for part in ["sts serve", "gateway", "sidecar", "agent chat"] {
        assert!(
            checked.contains(part),
            "{part} is started by deploy/: {checked:?}"
        );
    }
}
