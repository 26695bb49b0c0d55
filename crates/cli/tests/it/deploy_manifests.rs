//! The Kubernetes manifests in `deploy/` refer to each other correctly.
//!
//! Each check mirrors a mistake that would only show up in a cluster, usually as a pod stuck in
//! ContainerCreating or a token request refused with an AADSTS code: a ConfigMap or volume name
//! that does not exist, a Service whose targetPort is not a container port, a probe on a port
//! the process does not listen on, a projected token audience the federated credential does not
//! accept, a token path the sidecar does not read, a config file mounted somewhere other than
//! where the command line looks. [`check`] returns every problem it finds, so the negative test
//! can mutate one parsed document and see exactly that problem reported.
//!
//! The embedded config files are parsed by their real parsers where the workspace has them
//! (tenant file, STS settings) and the command lines are given to the real `agentid` binary
//! (`--help` / `--check-config` / `--validate-only`, never serving, no network).

use agentid_directory::tenant_file::TenantFile;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const NAMESPACE: &str = "agentid";
const IMAGE: &str = "ghcr.io/agentid/agentid:0.1.0";
const IMAGE_REPO: &str = "ghcr.io/agentid/agentid";
/// The audience of every Entra-style federated credential and projected token.
const TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The service-account issuer of kubeadm and kind clusters, as the README documents it.
const CLUSTER_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Objects created outside `deploy/` because they hold cluster-specific material (so that
/// re-applying the directory never overwrites them): kind, name, keys the pods read.
const EXTERNAL: &[(&str, &str, &[&str])] = &[
    ("Secret", "agentid-sts-tls", &["tls.crt", "tls.key"]),
    ("ConfigMap", "agentid-sts-ca", &["ca.crt"]),
    ("ConfigMap", "agentid-cluster-jwks", &["cluster-jwks.json"]),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---- loading ---------------------------------------------------------------------------------

#[derive(Clone)]
struct Deploy {
    kustomization: Value,
    /// Resource file names as listed in kustomization.yaml.
    resources: Vec<String>,
    /// Every object of every resource file, in order.
    docs: Vec<Value>,
}

fn parse_multi(text: &str, file: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn load() -> Deploy {
    let dir = repo_root().join("deploy");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
    };
    let kustomization: Value = serde_yaml_ng::from_str(&read("kustomization.yaml")).unwrap();
    let resources: Vec<String> = kustomization["resources"]
        .as_sequence()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| r.as_str().expect("resource is a file name").to_string())
        .collect();
    let docs = resources
        .iter()
        .flat_map(|f| parse_multi(&read(f), f))
        .collect();
    Deploy {
        kustomization,
        resources,
        docs,
    }
}

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("README.md")
}

// ---- small accessors -------------------------------------------------------------------------

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn seq(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn kind(v: &Value) -> &str {
    str_of(v, "kind")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The port of `host:port` or `http://host:port/…`.
fn port_of(addr: &str) -> Option<u16> {
    if addr.contains("://") {
        return url::Url::parse(addr).ok()?.port_or_known_default();
    }
    addr.rsplit_once(':')?.1.parse().ok()
}

fn host_of(addr: &str) -> String {
    if addr.contains("://") {
        return url::Url::parse(addr)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
    }
    addr.rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

struct Pod<'a> {
    workload: &'a Value,
    spec: &'a Value,
}

impl Pod<'_> {
    fn label(&self) -> String {
        format!("{} {}", kind(self.workload), name(self.workload))
    }
    /// Init containers (native sidecars among them) and containers.
    fn containers(&self) -> Vec<Value> {
        let mut all = seq(self.spec, "initContainers");
        all.extend(seq(self.spec, "containers"));
        all
    }
    /// A pod volume, or a StatefulSet's volumeClaimTemplate (as a `persistentVolumeClaim`).
    fn volume(&self, vname: &str) -> Option<Value> {
        seq(self.spec, "volumes")
            .into_iter()
            .find(|v| str_of(v, "name") == vname)
            .or_else(|| {
                seq(&self.workload["spec"], "volumeClaimTemplates")
                    .iter()
                    .any(|t| name(t) == vname)
                    .then(|| {
                        serde_yaml_ng::from_str(&format!(
                            "{{name: {vname}, persistentVolumeClaim: {{claimName: {vname}}}}}"
                        ))
                        .expect("literal")
                    })
            })
    }
    fn labels(&self) -> BTreeMap<String, String> {
        labels(&self.workload["spec"]["template"]["metadata"]["labels"])
    }
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (scalar(k), scalar(v)))
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default()
}

/// The containerPort a probe or Service names (by name or number), if the container has it.
fn container_port(c: &Value, port: &Value) -> Option<u64> {
    seq(c, "ports").iter().find_map(|p| {
        let number = p.get("containerPort").and_then(Value::as_u64)?;
        match port {
            Value::String(n) if str_of(p, "name") == n => Some(number),
            Value::Number(n) if n.as_u64() == Some(number) => Some(number),
            _ => None,
        }
    })
}

fn named_port(c: &Value, port_name: &str) -> Option<u64> {
    container_port(c, &Value::String(port_name.into()))
}

/// `--flag=value` and `--flag value` (and `-f value`) from a container's args.
fn flag(args: &[String], names: &[&str]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        for n in names {
            if a == n {
                return it.next().cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

fn args_of(c: &Value) -> Vec<String> {
    seq(c, "args").iter().map(scalar).collect()
}

// ---- the model of the whole deployment ---------------------------------------------------------

struct Model<'a> {
    d: &'a Deploy,
    problems: Vec<String>,
}

/// Where a file path inside a container comes from.
#[derive(Debug, PartialEq)]
enum Source {
    /// A key of a ConfigMap or Secret (kind, name, key).
    Key(String, String, String),
    /// A projected service-account token (audience, expirationSeconds).
    Token(String, u64),
    /// A writable directory (emptyDir or a persistent volume claim).
    Writable,
}

impl<'a> Model<'a> {
    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    fn object(&self, k: &str, n: &str) -> Option<&'a Value> {
        self.d.docs.iter().find(|d| kind(d) == k && name(d) == n)
    }

    /// Whether `kind/name` exists and (if `key` is given) has that key.
    fn has(&self, k: &str, n: &str, key: Option<&str>) -> Result<(), String> {
        if let Some((_, _, keys)) = EXTERNAL.iter().find(|(ek, en, _)| *ek == k && *en == n) {
            return match key {
                Some(key) if !keys.contains(&key) => Err(format!(
                    "{k} {n} (created outside deploy/) has no documented key {key}"
                )),
                _ => Ok(()),
            };
        }
        let Some(obj) = self.object(k, n) else {
            return Err(format!("{k} {n} does not exist"));
        };
        if let Some(key) = key {
            let found = ["data", "stringData", "binaryData"]
                .iter()
                .any(|section| obj.get(section).and_then(|d| d.get(key)).is_some());
            if !found {
                return Err(format!("{k} {n} has no key {key}"));
            }
        }
        Ok(())
    }

    fn pods(&self) -> Vec<Pod<'a>> {
        self.d
            .docs
            .iter()
            .filter(|d| matches!(kind(d), "Deployment" | "StatefulSet"))
            .map(|w| Pod {
                workload: w,
                spec: &w["spec"]["template"]["spec"],
            })
            .collect()
    }

    /// The pod with a container running `agentid <subcommand>`, and that container.
    fn role(&self, subcommand: &str) -> Option<(Pod<'a>, Value)> {
        self.pods().into_iter().find_map(|p| {
            let c = p.containers().into_iter().find(|c| {
                str_of(c, "image").starts_with(IMAGE_REPO)
                    && args_of(c).first().map(String::as_str) == Some(subcommand)
            })?;
            Some((p, c))
        })
    }

    /// The Service selecting `pod`, and its cluster DNS name.
    fn service_for(&self, pod: &Pod) -> Option<(&'a Value, String)> {
        let pod_labels = pod.labels();
        self.d
            .docs
            .iter()
            .filter(|d| kind(d) == "Service")
            .find(|s| {
                let sel = labels(&s["spec"]["selector"]);
                !sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
            })
            .map(|s| (s, format!("{}.{NAMESPACE}.svc.cluster.local", name(s))))
    }

    /// The container port behind Service port `port` of `svc`, in `pod`.
    fn service_target(&self, svc: &Value, pod: &Pod, port: u16) -> Option<u64> {
        let sp = seq(&svc["spec"], "ports")
            .into_iter()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(port as u64))?;
        let target = sp.get("targetPort").cloned().unwrap_or(sp["port"].clone());
        pod.containers()
            .iter()
            .find_map(|c| container_port(c, &target))
    }

    /// Resolves a file path as `container` sees it through its volume mounts.
    fn resolve(&self, pod: &Pod, container: &Value, path: &str) -> Result<Source, String> {
        let ctx = || format!("{} container {}", pod.label(), str_of(container, "name"));
        let mount = seq(container, "volumeMounts")
            .into_iter()
            .filter(|m| {
                let mp = str_of(m, "mountPath");
                path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')))
            })
            .max_by_key(|m| str_of(m, "mountPath").len())
            .ok_or_else(|| format!("{}: no volume is mounted at {path}", ctx()))?;
        let rel = path[str_of(&mount, "mountPath").len()..].trim_start_matches('/');
        let rel = match mount.get("subPath").and_then(Value::as_str) {
            Some(sub) if rel.is_empty() => sub.to_string(),
            Some(sub) => format!("{sub}/{rel}"),
            None => rel.to_string(),
        };
        let vname = str_of(&mount, "name");
        let volume = pod
            .volume(vname)
            .ok_or_else(|| format!("{}: volume {vname} is not defined", ctx()))?;
        if volume.get("emptyDir").is_some() || volume.get("persistentVolumeClaim").is_some() {
            return Ok(Source::Writable);
        }
        let sources: Vec<Value> = if let Some(p) = volume.get("projected") {
            seq(p, "sources")
        } else {
            vec![volume.clone()]
        };
        for s in &sources {
            if let Some(t) = s.get("serviceAccountToken") {
                if str_of(t, "path") == rel {
                    return Ok(Source::Token(
                        str_of(t, "audience").to_string(),
                        t.get("expirationSeconds")
                            .and_then(Value::as_u64)
                            .unwrap_or(3600),
                    ));
                }
                continue;
            }
            let (k, body, obj_name) = if let Some(cm) = s.get("configMap") {
                ("ConfigMap", cm, str_of(cm, "name"))
            } else if let Some(sec) = s.get("secret") {
                // A pod volume names it secretName, a projected source name.
                let n = sec
                    .get("secretName")
                    .or(sec.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                ("Secret", sec, n)
            } else {
                continue;
            };
            let items = seq(body, "items");
            let key = if items.is_empty() {
                Some(rel.clone())
            } else {
                items
                    .iter()
                    .find(|i| str_of(i, "path") == rel)
                    .map(|i| str_of(i, "key").to_string())
            };
            if let Some(key) = key {
                return Ok(Source::Key(k.into(), obj_name.into(), key));
            }
        }
        Err(format!(
            "{}: {path} is not provided by volume {vname}",
            ctx()
        ))
    }

    /// Resolves `path` and requires it to be `key` of `kind/name`.
    fn expect_file(
        &mut self,
        pod: &Pod,
        c: &Value,
        what: &str,
        path: &str,
        want: (&str, &str, &str),
    ) {
        match self.resolve(pod, c, path) {
            Ok(Source::Key(k, n, key)) if (k.as_str(), n.as_str(), key.as_str()) == want => {
                if let Err(e) = self.has(&k, &n, Some(&key)) {
                    self.problem(format!("{what} ({path}): {e}"));
                }
            }
            Ok(other) => self.problem(format!(
                "{what} ({path}) comes from {other:?}, expected {} {} key {}",
                want.0, want.1, want.2
            )),
            Err(e) => self.problem(format!("{what}: {e}")),
        }
    }

    /// The text of a ConfigMap key that `path` resolves to.
    fn file_text(&self, pod: &Pod, c: &Value, path: &str) -> Result<String, String> {
        match self.resolve(pod, c, path)? {
            Source::Key(k, n, key) if k == "ConfigMap" => self
                .object(&k, &n)
                .and_then(|o| o["data"].get(key.as_str()))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("ConfigMap {n} has no key {key} (for {path})")),
            other => Err(format!("{path} comes from {other:?}, not a ConfigMap")),
        }
    }

    /// Environment of a container: envFrom ConfigMaps, then literal `env` values.
    fn env(&self, c: &Value) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for from in seq(c, "envFrom") {
            if let Some(cm) = from
                .get("configMapRef")
                .and_then(|r| self.object("ConfigMap", str_of(r, "name")))
            {
                for (k, v) in labels(&cm["data"]) {
                    env.insert(k, v);
                }
            }
        }
        for e in seq(c, "env") {
            if let Some(v) = e.get("value") {
                env.insert(str_of(&e, "name").to_string(), scalar(v));
            }
        }
        env
    }
}

// ---- the checks ------------------------------------------------------------------------------

fn check(d: &Deploy, readme: &str) -> Vec<String> {
    let mut m = Model {
        d,
        problems: Vec::new(),
    };
    objects(&mut m);
    for pod in m.pods() {
        pod_spec(&mut m, &pod);
    }
    services(&mut m);
    network_policies(&mut m);
    let sts = sts(&mut m);
    let tenant = tenant(&mut m, readme);
    let gateway = gateway(&mut m, sts.as_ref());
    agent(&mut m, sts.as_ref(), tenant.as_ref(), gateway.as_ref());
    m.problems
}

fn objects(m: &mut Model) {
    let k = &m.d.kustomization;
    if str_of(k, "namespace") != NAMESPACE {
        m.problem(format!("kustomization namespace is not {NAMESPACE}"));
    }
    let images = seq(k, "images");
    let tag = IMAGE.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    if !images
        .iter()
        .any(|i| str_of(i, "name") == IMAGE_REPO && scalar(&i["newTag"]) == tag)
    {
        m.problem(format!("kustomization images does not pin {IMAGE}"));
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo_root().join("deploy"))
        .expect("deploy/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    let listed: BTreeSet<String> = m.d.resources.iter().cloned().collect();
    if on_disk != listed {
        m.problem(format!(
            "kustomization resources {listed:?} differ from the manifests in deploy/ {on_disk:?}"
        ));
    }
    let mut seen = BTreeSet::new();
    for doc in &m.d.docs {
        let (k, n) = (kind(doc).to_string(), name(doc).to_string());
        if k.is_empty() || n.is_empty() || str_of(doc, "apiVersion").is_empty() {
            m.problem(format!(
                "an object lacks apiVersion, kind or metadata.name: {k} {n}"
            ));
        }
        if !seen.insert((k.clone(), n.clone())) {
            m.problem(format!("{k} {n} is defined twice"));
        }
        let ns = doc["metadata"]
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(NAMESPACE);
        if k != "Namespace" && ns != NAMESPACE {
            m.problem(format!("{k} {n} is in namespace {ns}, not {NAMESPACE}"));
        }
        if EXTERNAL.iter().any(|(ek, en, _)| *ek == k && *en == n) {
            m.problem(format!(
                "{k} {n} is created outside deploy/ but also defined in it (re-applying would overwrite it)"
            ));
        }
    }
    if m.object("Namespace", NAMESPACE).is_none() {
        m.problem(format!("Namespace {NAMESPACE} is not defined"));
    }
}

fn pod_spec(m: &mut Model, pod: &Pod) {
    let w = pod.workload;
    let label = pod.label();
    let selector = labels(&w["spec"]["selector"]["matchLabels"]);
    let pod_labels = pod.labels();
    if selector.is_empty() || !selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
        m.problem(format!("{label}: selector does not match the pod labels"));
    }
    if kind(w) == "StatefulSet" {
        let svc = str_of(&w["spec"], "serviceName");
        match m.object("Service", svc) {
            Some(s) if str_of(&s["spec"], "clusterIP") == "None" => {}
            _ => m.problem(format!(
                "{label}: serviceName {svc} is not a headless Service"
            )),
        }
    }
    let spec = pod.spec;
    if let Some(sa) = spec.get("serviceAccountName").and_then(Value::as_str)
        && m.object("ServiceAccount", sa).is_none()
    {
        m.problem(format!("{label}: ServiceAccount {sa} does not exist"));
    }
    if spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        != Some(false)
    {
        m.problem(format!(
            "{label}: automountServiceAccountToken is not false (no pod here calls the API server)"
        ));
    }
    let psc = &spec["securityContext"];
    if psc.get("runAsNonRoot").and_then(Value::as_bool) != Some(true)
        || psc.get("runAsUser").and_then(Value::as_u64) == Some(0)
    {
        m.problem(format!("{label}: pod does not run as non-root"));
    }
    if str_of(&psc["seccompProfile"], "type") != "RuntimeDefault" {
        m.problem(format!("{label}: no RuntimeDefault seccomp profile"));
    }

    let mut mounted = BTreeSet::new();
    for c in pod.containers() {
        let cl = format!("{label} container {}", str_of(&c, "name"));
        let image = str_of(&c, "image");
        if image.starts_with(IMAGE_REPO) || image.contains("agentid") {
            if image != IMAGE {
                m.problem(format!("{cl}: image {image}, expected {IMAGE} everywhere"));
            }
            if seq(&c, "command").iter().map(scalar).collect::<Vec<_>>() != ["/agentid"] {
                m.problem(format!("{cl}: command is not [/agentid]"));
            }
        }
        let sc = &c["securityContext"];
        if sc.get("readOnlyRootFilesystem").and_then(Value::as_bool) != Some(true) {
            m.problem(format!("{cl}: readOnlyRootFilesystem is not true"));
        }
        if sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false) {
            m.problem(format!("{cl}: allowPrivilegeEscalation is not false"));
        }
        if !seq(&sc["capabilities"], "drop")
            .iter()
            .any(|c| scalar(c) == "ALL")
        {
            m.problem(format!("{cl}: capabilities are not all dropped"));
        }
        let r = &c["resources"];
        for (section, key) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            if r[section].get(key).is_none() {
                m.problem(format!("{cl}: no resources.{section}.{key}"));
            }
        }
        // An interactive container (the agent's chat) has no health endpoint; everything else
        // that keeps running must be probed.
        let interactive = c.get("tty").and_then(Value::as_bool) == Some(true);
        let is_init_job =
            seq(spec, "initContainers").contains(&c) && str_of(&c, "restartPolicy") != "Always";
        if !interactive && !is_init_job {
            for probe in ["readinessProbe", "livenessProbe"] {
                if c.get(probe).is_none() {
                    m.problem(format!("{cl}: no {probe}"));
                }
            }
        }
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let p = &c[probe];
            for action in ["httpGet", "tcpSocket"] {
                if let Some(port) = p.get(action).and_then(|a| a.get("port"))
                    && container_port(&c, port).is_none()
                {
                    m.problem(format!(
                        "{cl}: {probe} port {} is not a port of the container",
                        scalar(port)
                    ));
                }
            }
        }
        for e in seq(&c, "env") {
            let Some(from) = e.get("valueFrom") else {
                continue;
            };
            for (refkind, k) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
                if let Some(r) = from.get(refkind)
                    && let Err(err) = m.has(k, str_of(r, "name"), Some(str_of(r, "key")))
                {
                    m.problem(format!("{cl}: env {}: {err}", str_of(&e, "name")));
                }
            }
        }
        for from in seq(&c, "envFrom") {
            for (refkind, k) in [("secretRef", "Secret"), ("configMapRef", "ConfigMap")] {
                if let Some(r) = from.get(refkind)
                    && let Err(err) = m.has(k, str_of(r, "name"), None)
                {
                    m.problem(format!("{cl}: envFrom: {err}"));
                }
            }
        }
        // $(VAR) in args is expanded by the kubelet only from the container's env.
        let defined: BTreeSet<String> = seq(&c, "env")
            .iter()
            .map(|e| str_of(e, "name").to_string())
            .collect();
        for a in args_of(&c) {
            let mut rest = a.as_str();
            while let Some(start) = rest.find("$(") {
                let Some(end) = rest[start..].find(')') else {
                    break;
                };
                let var = &rest[start + 2..start + end];
                if !defined.contains(var) {
                    m.problem(format!(
                        "{cl}: args use $({var}) but env does not define it"
                    ));
                }
                rest = &rest[start + end..];
            }
        }
        for vm in seq(&c, "volumeMounts") {
            let v = str_of(&vm, "name").to_string();
            if pod.volume(&v).is_none() {
                m.problem(format!("{cl}: volumeMount {v} names no volume"));
            }
            mounted.insert(v);
        }
    }
    for v in seq(spec, "volumes") {
        let vname = str_of(&v, "name");
        if !mounted.contains(vname) {
            m.problem(format!(
                "{label}: volume {vname} is mounted by no container"
            ));
        }
        let sources = match v.get("projected") {
            Some(p) => seq(p, "sources"),
            None => vec![v.clone()],
        };
        for s in sources {
            let refs = [
                ("ConfigMap", s.get("configMap"), "name"),
                ("Secret", s.get("secret"), "secretName"),
                ("Secret", s.get("secret"), "name"),
            ];
            for (k, body, field) in refs {
                let Some(body) = body else { continue };
                let Some(n) = body.get(field).and_then(Value::as_str) else {
                    continue;
                };
                let items = seq(body, "items");
                if items.is_empty()
                    && let Err(e) = m.has(k, n, None)
                {
                    m.problem(format!("{label}: volume {vname}: {e}"));
                }
                for i in items {
                    if let Err(e) = m.has(k, n, Some(str_of(&i, "key"))) {
                        m.problem(format!("{label}: volume {vname}: {e}"));
                    }
                }
            }
        }
    }
}

fn services(m: &mut Model) {
    let pods = m.pods();
    for svc in m.d.docs.iter().filter(|d| kind(d) == "Service") {
        let sel = labels(&svc["spec"]["selector"]);
        let matching: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                let l = p.labels();
                !sel.is_empty() && sel.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .collect();
        let [pod] = matching[..] else {
            m.problem(format!(
                "Service {}: selector matches {} workloads, expected one",
                name(svc),
                matching.len()
            ));
            continue;
        };
        for p in seq(&svc["spec"], "ports") {
            let port = p.get("port").and_then(Value::as_u64).unwrap_or(0) as u16;
            if m.service_target(svc, pod, port).is_none() {
                m.problem(format!(
                    "Service {}: targetPort {} of port {port} is not a container port of {}",
                    name(svc),
                    scalar(p.get("targetPort").unwrap_or(&p["port"])),
                    pod.label()
                ));
            }
        }
    }
}

/// Every NetworkPolicy selects one workload, admits workloads that exist, on ports they have.
fn network_policies(m: &mut Model) {
    let pods = m.pods();
    let select = |sel: &Value| -> Vec<&Pod> {
        let sel = labels(&sel["matchLabels"]);
        pods.iter()
            .filter(|p| {
                let l = p.labels();
                !sel.is_empty() && sel.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .collect()
    };
    for np in m.d.docs.iter().filter(|d| kind(d) == "NetworkPolicy") {
        let n = name(np);
        let targets = select(&np["spec"]["podSelector"]);
        let [target] = targets[..] else {
            m.problems.push(format!(
                "NetworkPolicy {n}: podSelector selects {} workloads, expected one",
                targets.len()
            ));
            continue;
        };
        for rule in seq(&np["spec"], "ingress") {
            for from in seq(&rule, "from") {
                if let Some(sel) = from.get("podSelector")
                    && select(sel).is_empty()
                {
                    m.problems.push(format!(
                        "NetworkPolicy {n}: a `from` podSelector selects no workload"
                    ));
                }
            }
            for p in seq(&rule, "ports") {
                if !target
                    .containers()
                    .iter()
                    .any(|c| container_port(c, &p["port"]).is_some())
                {
                    m.problems.push(format!(
                        "NetworkPolicy {n}: port {} is not a container port of {}",
                        scalar(&p["port"]),
                        target.label()
                    ));
                }
            }
        }
    }
}

struct StsFacts {
    /// `https://agentid-sts.agentid.svc.cluster.local`, no trailing slash.
    base: String,
}

fn sts(m: &mut Model) -> Option<StsFacts> {
    let Some((pod, c)) = m.role("sts") else {
        m.problem("no container runs `agentid sts`");
        return None;
    };
    let args = args_of(&c);
    let config_path = flag(&args, &["--config"]).unwrap_or_default();
    m.expect_file(
        &pod,
        &c,
        "STS --config",
        &config_path,
        ("ConfigMap", "agentid-sts-config", "sts.yaml"),
    );
    let text = m.file_text(&pod, &c, &config_path).unwrap_or_default();
    // The real settings loader: unknown keys or bad values fail here, not in the cluster.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sts.yaml");
    std::fs::write(&file, &text).unwrap();
    let settings = match agentid_sts::settings::load(Some(&file), &[], Some(tmp.path()), None) {
        Ok(s) => s,
        Err(e) => {
            m.problem(format!("STS config does not load: {e}"));
            return None;
        }
    };
    if !settings.require_trusted_issuer {
        m.problem("STS config: federation.require_trusted_issuer is off");
    }
    let listen = settings.listen.port() as u64;
    if named_port(&c, "https") != Some(listen) {
        m.problem(format!(
            "STS listens on {listen} but its container port `https` is {:?}",
            named_port(&c, "https")
        ));
    }
    let base = settings.public_base_url.clone();
    match m.service_for(&pod) {
        Some((svc, fqdn)) => {
            let port = port_of(&base).unwrap_or(0);
            if host_of(&base) != fqdn {
                m.problem(format!(
                    "STS public_base_url {base} is not its Service's name {fqdn}"
                ));
            }
            if m.service_target(svc, &pod, port) != Some(listen) {
                m.problem(format!(
                    "STS public_base_url port {port} does not reach the STS's listen port {listen} through Service {}",
                    name(svc)
                ));
            }
        }
        None => m.problem("no Service selects the STS"),
    }

    let tenant_path = flag(&args, &["--tenant-file"]).unwrap_or_default();
    m.expect_file(
        &pod,
        &c,
        "STS --tenant-file",
        &tenant_path,
        ("ConfigMap", "agentid-tenant", "tenant.yaml"),
    );
    if let Ok(text) = m.file_text(&pod, &c, &tenant_path) {
        let dir = Path::new(&tenant_path).parent().unwrap_or(Path::new("/"));
        match TenantFile::parse(&text, dir) {
            Ok(t) => {
                for ti in &t.trusted_issuers {
                    if let Some(f) = ti.jwks.as_ref().and_then(|j| j.file.as_ref()) {
                        let p = t.resolve(f);
                        let p = normalize(&p);
                        m.expect_file(
                            &pod,
                            &c,
                            "trusted issuer JWKS",
                            &p,
                            ("ConfigMap", "agentid-cluster-jwks", "cluster-jwks.json"),
                        );
                    }
                }
            }
            Err(e) => m.problem(format!("tenant file does not parse: {e}")),
        }
    }
    for (f, key) in [("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")] {
        let p = flag(&args, &[f]).unwrap_or_default();
        m.expect_file(&pod, &c, f, &p, ("Secret", "agentid-sts-tls", key));
    }
    let data_dir = flag(&args, &["--data-dir"]).unwrap_or_default();
    if m.resolve(&pod, &c, &data_dir) != Ok(Source::Writable) {
        m.problem(format!(
            "STS --data-dir {data_dir} is not a writable emptyDir (the root filesystem is read-only)"
        ));
    }
    if !c["env"]
        .as_sequence()
        .is_some_and(|e| e.iter().any(|e| str_of(e, "name") == "AGENTID_MASTER_KEY"))
    {
        m.problem("STS: AGENTID_MASTER_KEY is not set (PostgreSQL replicas must share it)");
    }
    database(m, &c, &args);
    Some(StsFacts { base })
}

/// `a/./b` → `a/b` (the tenant file's `./cluster-jwks.json`).
fn normalize(p: &Path) -> String {
    let mut out = PathBuf::new();
    for part in p.components() {
        if part != std::path::Component::CurDir {
            out.push(part);
        }
    }
    out.display().to_string()
}

fn database(m: &mut Model, sts: &Value, args: &[String]) {
    let Some(url) = flag(args, &["--database"]) else {
        m.problem("STS has no --database");
        return;
    };
    // The password is a $(VAR) reference; url::Url cannot parse `$(`…`)` in userinfo reliably.
    let with_placeholder = url.replace("$(POSTGRES_PASSWORD)", "PASSWORD");
    let Ok(u) = url::Url::parse(&with_placeholder) else {
        m.problem(format!("STS --database {url} is not a URL"));
        return;
    };
    if u.scheme() != "postgres" || !url.contains(":$(POSTGRES_PASSWORD)@") {
        m.problem(format!(
            "STS --database must be postgres://USER:$(POSTGRES_PASSWORD)@…, got {url}"
        ));
    }
    let Some(pg) = m.pods().into_iter().find(|p| {
        p.containers()
            .iter()
            .any(|c| str_of(c, "image").starts_with("postgres:"))
    }) else {
        m.problem("no PostgreSQL workload");
        return;
    };
    let pgc = pg
        .containers()
        .into_iter()
        .find(|c| str_of(c, "image").starts_with("postgres:"))
        .unwrap();
    let pg_env: BTreeMap<String, Value> = seq(&pgc, "env")
        .into_iter()
        .map(|e| (str_of(&e, "name").to_string(), e))
        .collect();
    let pg_value = |k: &str| pg_env.get(k).map(|e| str_of(e, "value").to_string());
    if pg_value("POSTGRES_USER").as_deref() != Some(u.username()) {
        m.problem(format!(
            "STS --database user {} is not PostgreSQL's POSTGRES_USER",
            u.username()
        ));
    }
    if pg_value("POSTGRES_DB").as_deref() != Some(u.path().trim_start_matches('/')) {
        m.problem(format!(
            "STS --database name {} is not PostgreSQL's POSTGRES_DB",
            u.path()
        ));
    }
    let sts_pw = seq(sts, "env")
        .into_iter()
        .find(|e| str_of(e, "name") == "POSTGRES_PASSWORD")
        .map(|e| e["valueFrom"]["secretKeyRef"].clone());
    let pg_pw = pg_env
        .get("POSTGRES_PASSWORD")
        .map(|e| e["valueFrom"]["secretKeyRef"].clone());
    if sts_pw.is_none() || sts_pw != pg_pw {
        m.problem("STS and PostgreSQL do not take POSTGRES_PASSWORD from the same Secret key");
    }
    match m.service_for(&pg) {
        Some((svc, fqdn)) => {
            if u.host_str() != Some(fqdn.as_str()) {
                m.problem(format!(
                    "STS --database host {:?} is not PostgreSQL's Service {fqdn}",
                    u.host_str()
                ));
            }
            let port = u.port().unwrap_or(5432);
            if m.service_target(svc, &pg, port) != named_port(&pgc, "postgres") {
                m.problem(format!(
                    "STS --database port {port} does not reach PostgreSQL's container port"
                ));
            }
        }
        None => m.problem("no Service selects PostgreSQL"),
    }
}

struct TenantFacts {
    tenant_id: String,
    blueprint: String,
    agent: String,
    mcp_app: String,
}

fn tenant(m: &mut Model, readme: &str) -> Option<TenantFacts> {
    let text = m
        .object("ConfigMap", "agentid-tenant")
        .and_then(|c| c["data"].get("tenant.yaml"))
        .and_then(Value::as_str)?
        .to_string();
    let t = match TenantFile::parse(&text, Path::new("/etc/agentid/tenant")) {
        Ok(t) => t,
        Err(e) => {
            m.problem(format!("tenant file does not parse: {e}"));
            return None;
        }
    };
    let agent_sa = m
        .role("agent")
        .and_then(|(p, _)| p.spec.get("serviceAccountName").map(scalar))
        .unwrap_or_default();
    let subject = format!("system:serviceaccount:{NAMESPACE}:{agent_sa}");
    let bp = t.blueprints.first()?;
    let fics: Vec<_> = bp
        .federated_credentials
        .iter()
        .filter(|f| f.subject == subject)
        .collect();
    if fics.len() != 1 {
        m.problem(format!(
            "the blueprint has {} federated credentials for the agent pod's subject {subject}",
            fics.len()
        ));
    }
    for f in fics {
        if f.issuer != CLUSTER_ISSUER {
            m.problem(format!(
                "federated credential issuer {} is not the cluster issuer {CLUSTER_ISSUER}",
                f.issuer
            ));
        }
        if f.audiences != [TOKEN_AUDIENCE] {
            m.problem(format!(
                "federated credential audiences {:?} are not [{TOKEN_AUDIENCE}]",
                f.audiences
            ));
        }
    }
    let trusted: Vec<_> = t
        .trusted_issuers
        .iter()
        .filter(|i| i.issuer == CLUSTER_ISSUER)
        .collect();
    if trusted.len() != 1
        || trusted[0]
            .jwks
            .as_ref()
            .and_then(|j| j.file.as_ref())
            .is_none()
    {
        m.problem(format!(
            "the tenant file has no trusted issuer {CLUSTER_ISSUER} with a stored JWKS file"
        ));
    }
    if !readme.contains(&format!("`{CLUSTER_ISSUER}`")) {
        m.problem(format!(
            "the README does not document the cluster issuer {CLUSTER_ISSUER}"
        ));
    }
    let mcp_app = t
        .applications
        .iter()
        .find(|a| a.name == "mcp-server")
        .and_then(|a| a.app_id)
        .map(|id| id.to_string())
        .unwrap_or_default();
    Some(TenantFacts {
        tenant_id: t.tenant.id.map(|i| i.to_string()).unwrap_or_default(),
        blueprint: bp.app_id.map(|i| i.to_string()).unwrap_or_default(),
        agent: bp
            .agents
            .first()
            .and_then(|a| a.id)
            .map(|i| i.to_string())
            .unwrap_or_default(),
        mcp_app,
    })
}

struct GatewayFacts {
    fqdn: String,
    service_port: u16,
    /// Route match path (`exact` or `pathPrefix` value) → whether it is a prefix, audiences, rules text.
    routes: Vec<(String, bool, Vec<String>, String)>,
}

fn gateway(m: &mut Model, sts: Option<&StsFacts>) -> Option<GatewayFacts> {
    let Some((pod, c)) = m.role("gateway") else {
        m.problem("no container runs `agentid gateway`");
        return None;
    };
    let args = args_of(&c);
    let path = flag(&args, &["-f", "--file"]).unwrap_or_default();
    m.expect_file(
        &pod,
        &c,
        "gateway -f",
        &path,
        ("ConfigMap", "agentid-gateway-config", "gateway.yaml"),
    );
    let text = m.file_text(&pod, &c, &path).ok()?;
    let cfg: Value = match serde_yaml_ng::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            m.problem(format!("gateway config is not YAML: {e}"));
            return None;
        }
    };
    let config = &cfg["config"];
    for (key, port_name) in [("statsAddr", "metrics"), ("readinessAddr", "ready")] {
        let addr = str_of(config, key);
        if port_of(addr).map(u64::from) != named_port(&c, port_name) {
            m.problem(format!(
                "gateway config.{key} {addr} is not container port `{port_name}`"
            ));
        }
    }
    let ready = port_of(str_of(config, "readinessAddr")).map(u64::from);
    if let Some(p) = c["readinessProbe"]["httpGet"].get("port")
        && container_port(&c, p) != ready
    {
        m.problem("gateway readinessProbe is not on config.readinessAddr");
    }
    if !is_loopback(&host_of(str_of(config, "adminAddr"))) {
        m.problem("gateway config.adminAddr (config dump, audit) is not on loopback");
    }
    let binds = seq(&cfg, "binds");
    let http = named_port(&c, "http");
    if binds.len() != 1 || binds[0].get("port").and_then(Value::as_u64) != http {
        m.problem(format!(
            "gateway binds {:?} are not exactly container port `http` ({http:?})",
            binds.iter().map(|b| scalar(&b["port"])).collect::<Vec<_>>()
        ));
    }
    let Some((svc, fqdn)) = m.service_for(&pod) else {
        m.problem("no Service selects the gateway");
        return None;
    };
    let service_port = seq(&svc["spec"], "ports")
        .iter()
        .find_map(|p| {
            let port = p.get("port")?.as_u64()? as u16;
            (m.service_target(svc, &pod, port) == http).then_some(port)
        })
        .unwrap_or(0);
    let mut routes = Vec::new();
    for b in &binds {
        for l in seq(b, "listeners") {
            for r in seq(&l, "routes") {
                let policies = &r["policies"];
                let jwt = &policies["jwtAuth"];
                if let Some(sts) = sts {
                    let tid_prefix = format!("{}/", sts.base);
                    let issuer = str_of(jwt, "issuer");
                    let Some(tid) = issuer
                        .strip_prefix(&tid_prefix)
                        .and_then(|rest| rest.strip_suffix('/'))
                    else {
                        m.problem(format!(
                            "gateway route {}: jwtAuth issuer {issuer} is not a v1 issuer of the STS {}",
                            str_of(&r, "name"),
                            sts.base
                        ));
                        continue;
                    };
                    let want = format!("{}/{tid}/discovery/v2.0/keys", sts.base);
                    if str_of(&jwt["jwks"], "url") != want {
                        m.problem(format!(
                            "gateway route {}: jwks url is not {want}",
                            str_of(&r, "name")
                        ));
                    }
                }
                if str_of(jwt, "mode") != "strict" {
                    m.problem(format!(
                        "gateway route {}: jwtAuth is not strict",
                        str_of(&r, "name")
                    ));
                }
                // Files the gateway reads (API keys) must be mounted.
                let key_file = str_of(&policies["backendAuth"]["key"]["value"], "file");
                if !key_file.is_empty() {
                    m.expect_file(
                        &pod,
                        &c,
                        "gateway LLM key",
                        key_file,
                        ("Secret", "agentid-llm", "api-key"),
                    );
                }
                let audiences: Vec<String> = seq(jwt, "audiences").iter().map(scalar).collect();
                let rules = serde_yaml_ng::to_string(&policies["mcpAuthorization"])
                    .unwrap_or_default()
                    + &serde_yaml_ng::to_string(&policies["authorization"]).unwrap_or_default();
                for mt in seq(&r, "matches") {
                    let p = &mt["path"];
                    if let Some(x) = p.get("exact") {
                        routes.push((scalar(x), false, audiences.clone(), rules.clone()));
                    } else if let Some(x) = p.get("pathPrefix") {
                        routes.push((scalar(x), true, audiences.clone(), rules.clone()));
                    }
                }
            }
        }
    }
    let ca = m
        .env(&c)
        .get("AGENTID_CA_FILE")
        .cloned()
        .unwrap_or_default();
    m.expect_file(
        &pod,
        &c,
        "gateway AGENTID_CA_FILE",
        &ca,
        ("ConfigMap", "agentid-sts-ca", "ca.crt"),
    );
    Some(GatewayFacts {
        fqdn,
        service_port,
        routes,
    })
}

/// `url` reaches the gateway through its Service and one of its routes; returns that route.
fn gateway_route<'g>(
    m: &mut Model,
    what: &str,
    url: &str,
    g: &'g GatewayFacts,
) -> Option<&'g (String, bool, Vec<String>, String)> {
    let Ok(u) = url::Url::parse(url) else {
        m.problem(format!("{what}: {url} is not a URL"));
        return None;
    };
    if u.host_str() != Some(g.fqdn.as_str()) || u.port_or_known_default() != Some(g.service_port) {
        m.problem(format!(
            "{what}: {url} is not the gateway Service {}:{}",
            g.fqdn, g.service_port
        ));
        return None;
    }
    let route = g.routes.iter().find(|(p, prefix, _, _)| {
        if *prefix {
            u.path() == p
                || u.path()
                    .starts_with(&format!("{}/", p.trim_end_matches('/')))
        } else {
            u.path() == p
        }
    });
    if route.is_none() {
        m.problem(format!("{what}: {url} matches no gateway route"));
    }
    route
}

fn agent(
    m: &mut Model,
    sts: Option<&StsFacts>,
    tenant: Option<&TenantFacts>,
    gw: Option<&GatewayFacts>,
) {
    let Some((pod, sidecar)) = m.role("sidecar") else {
        m.problem("no container runs `agentid sidecar`");
        return;
    };
    let Some(agent) = pod
        .containers()
        .into_iter()
        .find(|c| args_of(c).first().map(String::as_str) == Some("agent"))
    else {
        m.problem(format!(
            "{}: no container runs `agentid agent` next to the sidecar",
            pod.label()
        ));
        return;
    };
    if str_of(&sidecar, "restartPolicy") != "Always"
        || !seq(pod.spec, "initContainers").contains(&sidecar)
    {
        m.problem("the sidecar is not a native sidecar (initContainer with restartPolicy Always)");
    }
    let env = m.env(&sidecar);
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();

    // The token file: projected with the federation audience, exactly where the sidecar reads it.
    if get("AzureAd__ClientCredentials__0__SourceType") != "SignedAssertionFilePath" {
        m.problem("sidecar credential 0 is not SignedAssertionFilePath");
    }
    let token_path = env
        .get("AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath")
        .or(env.get("AzureAd__ClientCredentials__0__SignedAssertionFilePath"))
        .cloned()
        .unwrap_or_default();
    match m.resolve(&pod, &sidecar, &token_path) {
        Ok(Source::Token(aud, exp)) => {
            if aud != TOKEN_AUDIENCE {
                m.problem(format!(
                    "projected token audience {aud} is not the federated credential audience {TOKEN_AUDIENCE}"
                ));
            }
            if !(600..=86400).contains(&exp) {
                m.problem(format!("projected token expirationSeconds {exp} is out of range"));
            }
        }
        Ok(other) => m.problem(format!(
            "sidecar SignedAssertionFileDiskPath {token_path} is {other:?}, not the projected service-account token"
        )),
        Err(e) => m.problem(format!("sidecar SignedAssertionFileDiskPath: {e}")),
    }
    let ca = get("Sidecar__ExtraCaBundlePath");
    m.expect_file(
        &pod,
        &sidecar,
        "sidecar ExtraCaBundlePath",
        &ca,
        ("ConfigMap", "agentid-sts-ca", "ca.crt"),
    );

    // Listeners: token routes on loopback only, probes on the health listener.
    let args = args_of(&sidecar);
    let listen = flag(&args, &["--listen"]).unwrap_or_default();
    if !is_loopback(&host_of(&listen)) {
        m.problem(format!("sidecar --listen {listen} is not loopback"));
    }
    let health = flag(&args, &["--health-listen"]).unwrap_or_default();
    if port_of(&health).map(u64::from) != named_port(&sidecar, "health") {
        m.problem(format!(
            "sidecar --health-listen {health} is not container port `health`"
        ));
    }
    let token_port = port_of(&listen);
    if seq(&sidecar, "ports")
        .iter()
        .any(|p| p.get("containerPort").and_then(Value::as_u64) == token_port.map(u64::from))
    {
        m.problem(
            "the sidecar's token port is declared as a container port (it must stay private)",
        );
    }

    // Identities agree with the tenant file and the STS.
    if let Some(t) = tenant {
        for (k, want) in [
            ("AzureAd__ClientId", &t.blueprint),
            ("AzureAd__TenantId", &t.tenant_id),
            ("Sidecar__AllowedAgentIdentities__0", &t.agent),
        ] {
            if &get(k) != want {
                m.problem(format!(
                    "sidecar {k} = {} but the tenant file says {want}",
                    get(k)
                ));
            }
        }
        let mcp_scope = format!("api://{}/.default", t.mcp_app);
        if get("DownstreamApis__mcp__Scopes__0") != mcp_scope {
            m.problem(format!("sidecar mcp scope is not {mcp_scope}"));
        }
    }
    if let Some(s) = sts {
        if get("AzureAd__Instance") != format!("{}/", s.base) {
            m.problem(format!(
                "sidecar AzureAd__Instance is not the STS {}/",
                s.base
            ));
        }
        if host_of(&get("DownstreamApis__graph__BaseUrl")) != host_of(&s.base) {
            m.problem("sidecar graph BaseUrl is not the STS's Graph-compatible API");
        }
    }
    // Downstream APIs reach the gateway routes that accept their tokens.
    if let Some(g) = gw {
        for api in ["openai", "mcp"] {
            let url = get(&format!("DownstreamApis__{api}__BaseUrl"));
            let scope = get(&format!("DownstreamApis__{api}__Scopes__0"));
            if let Some((_, _, audiences, rules)) =
                gateway_route(m, &format!("sidecar API {api}"), &url, g).cloned()
            {
                let aud = scope.trim_end_matches("/.default");
                if !audiences.iter().any(|a| a == aud) {
                    m.problem(format!(
                        "sidecar API {api}: tokens for {aud} are refused by the gateway route (audiences {audiences:?})"
                    ));
                }
                if api == "mcp"
                    && let Some(t) = tenant
                    && !rules.contains(&t.agent)
                {
                    m.problem("the gateway's MCP rules do not name the pod's agent identity");
                }
            }
        }
    }

    // The agent's own config file.
    let agent_env = m.env(&agent);
    let home = agent_env.get("AGENTID_HOME").cloned().unwrap_or_default();
    let cfg_path = format!("{}/agent.yaml", home.trim_end_matches('/'));
    m.expect_file(
        &pod,
        &agent,
        "agent config",
        &cfg_path,
        ("ConfigMap", "agentid-agent-config", "agent.yaml"),
    );
    let Ok(text) = m.file_text(&pod, &agent, &cfg_path) else {
        return;
    };
    let cfg: Value = serde_yaml_ng::from_str(&text).unwrap_or(Value::Null);
    let sidecar_url = str_of(&cfg, "sidecarUrl");
    if !is_loopback(&host_of(sidecar_url)) || port_of(sidecar_url) != token_port {
        m.problem(format!(
            "agent sidecarUrl {sidecar_url} is not the sidecar's --listen {listen}"
        ));
    }
    if str_of(&cfg, "tokens") != "sidecar" {
        m.problem("agent config does not use the sidecar for tokens");
    }
    if let Some(t) = tenant {
        for (k, want) in [
            ("blueprint", &t.blueprint),
            ("agentId", &t.agent),
            ("tenant", &t.tenant_id),
        ] {
            if str_of(&cfg, k) != want {
                m.problem(format!(
                    "agent config {k} = {} but the tenant file says {want}",
                    str_of(&cfg, k)
                ));
            }
        }
    }
    if let Some(s) = sts
        && str_of(&cfg, "authority").trim_end_matches('/') != s.base
    {
        m.problem(format!("agent config authority is not the STS {}", s.base));
    }
    let llm = &cfg["llm"];
    if !env.contains_key(&format!("DownstreamApis__{}__BaseUrl", str_of(llm, "api"))) {
        m.problem(format!(
            "agent llm.api {} is not a sidecar API",
            str_of(llm, "api")
        ));
    }
    if let Some(g) = gw {
        gateway_route(m, "agent llm.baseUrl", str_of(llm, "baseUrl"), g);
        for s in seq(&cfg, "mcp") {
            gateway_route(m, "agent mcp url", str_of(&s, "url"), g);
            if !env.contains_key(&format!("DownstreamApis__{}__BaseUrl", str_of(&s, "api"))) {
                m.problem(format!(
                    "agent mcp api {} is not a sidecar API",
                    str_of(&s, "api")
                ));
            }
        }
    }
    m.expect_file(
        &pod,
        &agent,
        "agent caFile",
        str_of(&cfg, "caFile"),
        ("ConfigMap", "agentid-sts-ca", "ca.crt"),
    );
    let cache = str_of(&cfg, "tokenCache");
    if m.resolve(&pod, &agent, cache) != Ok(Source::Writable) {
        m.problem(format!(
            "agent tokenCache {cache} is not on a writable emptyDir"
        ));
    }
}

// ---- tests -----------------------------------------------------------------------------------

#[test]
fn manifests_refer_to_each_other_correctly() {
    let d = load();
    let problems = check(&d, &readme());
    assert!(
        problems.is_empty(),
        "deploy/ has problems:\n  {}",
        problems.join("\n  ")
    );
    // The roles the brief asks for, all from the one image.
    let m = Model {
        d: &d,
        problems: Vec::new(),
    };
    for role in ["sts", "gateway", "sidecar", "agent"] {
        assert!(m.role(role).is_some(), "no container runs `agentid {role}`");
    }
}

#[test]
fn readme_explains_how_the_sts_trusts_the_cluster_issuer() {
    let readme = readme();
    let headings: Vec<&str> = readme.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(
        headings.last(),
        Some(&"## Kubernetes"),
        "the Kubernetes section is the README's last"
    );
    let section = &readme[readme.find("## Kubernetes").unwrap()..];
    for needle in [
        "kubectl get --raw /openid/v1/jwks",
        "/.well-known/openid-configuration",
        "system:service-account-issuer-discovery",
        "trustedIssuers",
        CLUSTER_ISSUER,
        TOKEN_AUDIENCE,
    ] {
        assert!(
            section.contains(needle),
            "the Kubernetes section does not mention {needle}"
        );
    }
    for (k, n, _) in EXTERNAL {
        assert!(
            section.contains(n),
            "the Kubernetes section does not say how to create {k} {n}"
        );
    }
}

/// One mutation of the parsed manifests and the problem it must cause.
struct Mistake {
    what: &'static str,
    mutate: fn(&mut Deploy),
    expect: &'static str,
}

fn doc_mut<'a>(d: &'a mut Deploy, k: &str, n: &str) -> &'a mut Value {
    d.docs
        .iter_mut()
        .find(|x| kind(x) == k && name(x) == n)
        .unwrap_or_else(|| panic!("{k} {n}"))
}

fn pod_mut<'a>(d: &'a mut Deploy, n: &str) -> &'a mut Value {
    &mut doc_mut(d, "Deployment", n)["spec"]["template"]["spec"]
}

fn edit_data(d: &mut Deploy, cm: &str, key: &str, from: &str, to: &str) {
    let v = &mut doc_mut(d, "ConfigMap", cm)["data"][key];
    let text = v.as_str().unwrap().to_string();
    assert!(text.contains(from), "{cm}/{key} has no {from}");
    *v = Value::String(text.replacen(from, to, 1));
}

#[test]
fn mistakes_are_caught() {
    let mistakes = [
        Mistake {
            what: "projected token for the wrong audience",
            mutate: |d| {
                pod_mut(d, "agentid-agent")["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
                    ["audience"] = Value::String("api://wrong".into());
            },
            expect: "projected token audience api://wrong",
        },
        Mistake {
            what: "the guide's token path, not the mounted one",
            mutate: |d| {
                doc_mut(d, "ConfigMap", "agentid-agent-sidecar")["data"]["AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath"] =
                    Value::String("/var/run/secrets/tokens/azure-identity-token".into());
            },
            expect: "no volume is mounted at /var/run/secrets/tokens/azure-identity-token",
        },
        Mistake {
            what: "Service targetPort that no container has",
            mutate: |d| {
                doc_mut(d, "Service", "agentid-gateway")["spec"]["ports"][0]["targetPort"] =
                    Value::Number(8080.into());
            },
            expect: "targetPort 8080",
        },
        Mistake {
            what: "gateway config listening on another port",
            mutate: |d| {
                edit_data(
                    d,
                    "agentid-gateway-config",
                    "gateway.yaml",
                    "port: 3000",
                    "port: 8080",
                )
            },
            expect: "gateway binds",
        },
        Mistake {
            what: "one container on another image tag",
            mutate: |d| {
                pod_mut(d, "agentid-sts")["containers"][0]["image"] =
                    Value::String("ghcr.io/agentid/agentid:0.0.9".into());
            },
            expect: "image ghcr.io/agentid/agentid:0.0.9",
        },
        Mistake {
            what: "renamed ConfigMap",
            mutate: |d| {
                doc_mut(d, "ConfigMap", "agentid-gateway-config")["metadata"]["name"] =
                    Value::String("agentid-gw-config".into());
            },
            expect: "ConfigMap agentid-gateway-config does not exist",
        },
        Mistake {
            what: "federated credential for another namespace",
            mutate: |d| {
                edit_data(
                    d,
                    "agentid-tenant",
                    "tenant.yaml",
                    "system:serviceaccount:agentid:agentid-agent",
                    "system:serviceaccount:entra-demo:agentid-agent",
                )
            },
            expect: "0 federated credentials",
        },
        Mistake {
            what: "writable root filesystem",
            mutate: |d| {
                pod_mut(d, "agentid-gateway")["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
                    Value::Bool(false);
            },
            expect: "readOnlyRootFilesystem",
        },
        Mistake {
            what: "gateway config mounted elsewhere than -f says",
            mutate: |d| {
                pod_mut(d, "agentid-gateway")["containers"][0]["volumeMounts"][0]["mountPath"] =
                    Value::String("/config".into());
            },
            expect: "gateway -f",
        },
        Mistake {
            what: "probe on a port the process does not open",
            mutate: |d| {
                pod_mut(d, "agentid-sts")["containers"][0]["readinessProbe"]["httpGet"]["port"] =
                    Value::String("http".into());
            },
            expect: "readinessProbe port http",
        },
        Mistake {
            what: "database URL pointing at a Service that does not exist",
            mutate: |d| {
                let args = &mut pod_mut(d, "agentid-sts")["containers"][0]["args"];
                for a in args.as_sequence_mut().unwrap() {
                    if let Some(s) = a.as_str().filter(|s| s.starts_with("--database=")) {
                        *a = Value::String(s.replace("agentid-postgres.", "postgres."));
                    }
                }
            },
            expect: "is not PostgreSQL's Service",
        },
        Mistake {
            what: "trusted issuer that is not the documented cluster issuer",
            mutate: |d| {
                edit_data(
                    d,
                    "agentid-tenant",
                    "tenant.yaml",
                    "trustedIssuers:\n  - issuer: https://kubernetes.default.svc.cluster.local",
                    "trustedIssuers:\n  - issuer: https://oidc.example.blob.core.windows.net/oidc",
                )
            },
            expect: "no trusted issuer",
        },
        Mistake {
            what: "network policy admitting a workload that does not exist",
            mutate: |d| {
                doc_mut(d, "NetworkPolicy", "agentid-postgres")["spec"]["ingress"][0]["from"][0]
                    ["podSelector"]["matchLabels"]["app.kubernetes.io/name"] =
                    Value::String("sts".into());
            },
            expect: "selects no workload",
        },
        Mistake {
            what: "gateway MCP audience not matching the sidecar's scope",
            mutate: |d| {
                edit_data(
                    d,
                    "agentid-gateway-config",
                    "gateway.yaml",
                    "audiences: [api://ec791040",
                    "audiences: [api://00000000",
                )
            },
            expect: "refused by the gateway route",
        },
    ];
    let readme = readme();
    let pristine = load();
    let baseline = check(&pristine, &readme);
    assert!(
        baseline.is_empty(),
        "the pristine manifests must pass first: {baseline:#?}"
    );
    for mistake in &mistakes {
        let mut d = pristine.clone();
        (mistake.mutate)(&mut d);
        let problems = check(&d, &readme);
        assert!(
            problems.iter().any(|p| p.contains(mistake.expect)),
            "{}: expected a problem containing {:?}, got {problems:#?}",
            mistake.what,
            mistake.expect
        );
    }
}

// ---- the real binary accepts the command lines and configs --------------------------------------

fn agentid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agentid"))
}

fn subcommand_exists(name: &str) -> bool {
    agentid()
        .args([name, "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_binary_accepts_the_manifests_command_lines() {
    let d = load();
    let m = Model {
        d: &d,
        problems: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(
        &ca,
        agentid_testkit::certs::ClientCert::generate("test CA").cert_pem,
    )
    .unwrap();

    // STS: every flag exists and parses (`--help` last: clap still rejects unknown flags first).
    let (_, sts) = m.role("sts").unwrap();
    let out = agentid()
        .args(args_of(&sts))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agentid {:?}: {}",
        args_of(&sts),
        String::from_utf8_lossy(&out.stderr)
    );

    // Sidecar: the ConfigMap's keys are valid configuration (the token file is read lazily).
    let (_, sidecar) = m.role("sidecar").unwrap();
    let mut env = m.env(&sidecar);
    env.insert(
        "Sidecar__ExtraCaBundlePath".into(),
        ca.display().to_string(),
    );
    let out = agentid()
        .args(args_of(&sidecar))
        .arg("--check-config")
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agentid sidecar --check-config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Gateway and agent: checked once their subcommands are part of the binary.
    if subcommand_exists("gateway") {
        let (pod, gw) = m.role("gateway").unwrap();
        let args = args_of(&gw);
        let path = flag(&args, &["-f", "--file"]).unwrap();
        let key = dir.path().join("api-key");
        std::fs::write(&key, "test-key").unwrap();
        let text = m.file_text(&pod, &gw, &path).unwrap().replace(
            "/var/run/secrets/agentid/llm/api-key",
            &key.display().to_string(),
        );
        let file = dir.path().join("gateway.yaml");
        std::fs::write(&file, text).unwrap();
        let out = agentid()
            .args(["gateway", "--validate-only", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gateway --validate-only: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!(
            "`agentid gateway` is not in this build yet: its config is checked structurally only"
        );
    }
    if subcommand_exists("agent") {
        let (pod, agent) = m.role("agent").unwrap();
        let home = m.env(&agent)["AGENTID_HOME"].clone();
        let text = m
            .file_text(&pod, &agent, &format!("{home}/agent.yaml"))
            .unwrap()
            .replace("/etc/agentid/sts-ca/ca.crt", &ca.display().to_string())
            .replace("/var/lib/agentid/", &format!("{}/", dir.path().display()));
        std::fs::write(dir.path().join("agent.yaml"), text).unwrap();
        let out = agentid()
            .args(["agent", "config"])
            .env("AGENTID_HOME", dir.path())
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "agent config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!(
            "`agentid agent` is not in this build yet: its config is checked structurally only"
        );
    }
}

// ---- the identity chain the manifests configure, against the real STS and sidecar ---------------

/// The tenant file and the sidecar ConfigMap exactly as deployed, with only what a test cannot
/// have replaced: the STS's address (loopback instead of the Service name), its CA, and the
/// projected token (minted by an emulated cluster issuer that signs as the documented issuer).
/// The pod's service-account token must get the blueprint a T1 for the allow-listed agent, and
/// the agent's token must be one the gateway's MCP route accepts (issuer form and audience).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_identity_chain_gets_tokens_the_gateway_accepts() {
    use agentid_testkit::{Db, KubeIssuer, TestSts, claims, sts::Options};

    let d = load();
    let m = Model {
        d: &d,
        problems: Vec::new(),
    };
    let (pod, sidecar) = m.role("sidecar").unwrap();
    let service_account = scalar(&pod.spec["serviceAccountName"]);
    let cm_env = m.env(&sidecar);
    let token_path = &cm_env["AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath"];
    let Ok(Source::Token(audience, _)) = m.resolve(&pod, &sidecar, token_path) else {
        panic!("the sidecar's token path is not the projected token");
    };
    let tenant_yaml = m.object("ConfigMap", "agentid-tenant").unwrap()["data"]["tenant.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let sts_config: Value = serde_yaml_ng::from_str(
        m.object("ConfigMap", "agentid-sts-config").unwrap()["data"]["sts.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let deployed_base = str_of(&sts_config["server"], "public_base_url").to_string();
    let gateway_cfg: Value = serde_yaml_ng::from_str(
        m.object("ConfigMap", "agentid-gateway-config").unwrap()["data"]["gateway.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mcp_route = seq(&gateway_cfg["binds"][0]["listeners"][0], "routes")
        .into_iter()
        .find(|r| str_of(r, "name") == "mcp")
        .expect("the gateway has an mcp route");
    let mcp_jwt = &mcp_route["policies"]["jwtAuth"];

    // The cluster: its issuer string is the documented one; its keys are the stored JWKS.
    let mut kube = KubeIssuer::start().await;
    kube.issuer = CLUSTER_ISSUER.to_string();
    let dir = TestSts::prepare_dir();
    std::fs::write(dir.path().join("cluster-jwks.json"), kube.jwks_json()).unwrap();
    let require_trusted = sts_config["federation"]["require_trusted_issuer"]
        .as_bool()
        .unwrap_or(false);
    let sts = TestSts::start_in(
        dir,
        Db::Sqlite,
        &tenant_yaml,
        Options {
            tls: true,
            configure: Box::new(move |s| s.require_trusted_issuer = require_trusted),
        },
    )
    .await;

    // The sidecar with the deployed ConfigMap; the token file is what kubelet would project.
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("azure-identity-token");
    kube.write_token_file(&token_file, NAMESPACE, &service_account, &audience);
    let mut env = cm_env.clone();
    env.insert("AzureAd__Instance".into(), format!("{}/", sts.base()));
    env.insert(
        "AzureAd__ClientCredentials__0__SignedAssertionFileDiskPath".into(),
        token_file.display().to_string(),
    );
    env.insert(
        "Sidecar__ExtraCaBundlePath".into(),
        sts.ca_file().display().to_string(),
    );
    env.insert("Sidecar__ListenUrl".into(), "http://127.0.0.1:0".into());
    env.insert("Sidecar__HealthListenUrl".into(), "off".into());
    let vars: Vec<(String, String)> = env.into_iter().collect();
    let config = agentid_sidecar::config::load(&agentid_sidecar::ConfigSources::from_vars(&vars))
        .expect("the deployed sidecar configuration loads");
    let running = agentid_sidecar::start(config)
        .await
        .expect("sidecar starts");

    let agent = &cm_env["Sidecar__AllowedAgentIdentities__0"];
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/AuthorizationHeaderUnauthenticated/mcp?AgentIdentity={agent}&optionsOverride.RequestAppToken=true",
            running.url()
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(
        status, 200,
        "the agent's MCP token through the sidecar: {body}"
    );
    let token = body["authorizationHeader"]
        .as_str()
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("a bearer authorization header");
    let c = claims(token);
    assert_eq!(
        c["appid"],
        serde_json::json!(agent),
        "the token is the agent's: {c:?}"
    );
    // What the gateway's MCP route checks, with the deployed base URL mapped to the test STS.
    let issuer = str_of(mcp_jwt, "issuer").replacen(&deployed_base, sts.base(), 1);
    assert_eq!(
        c["iss"],
        serde_json::json!(issuer),
        "the gateway's issuer form"
    );
    assert!(
        seq(mcp_jwt, "audiences")
            .iter()
            .any(|a| serde_json::json!(scalar(a)) == c["aud"]),
        "the gateway's MCP audiences {:?} accept aud {}",
        mcp_jwt["audiences"],
        c["aud"]
    );
    let jwks = str_of(&mcp_jwt["jwks"], "url").replacen(&deployed_base, sts.base(), 1);
    let (status, keys) = sts.get_json(&jwks).await;
    assert_eq!(status, 200, "the gateway's JWKS URL is served: {jwks}");
    assert!(keys["keys"].as_array().is_some_and(|k| !k.is_empty()));

    // Another service account of the cluster is not the blueprint.
    let other = kube.mint(NAMESPACE, "someone-else", &audience, 3600);
    let (status, err) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cm_env["AzureAd__ClientId"]),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &other),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", agent),
        ])
        .await;
    assert_eq!(status, 401, "{err}");
    assert!(
        err["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("AADSTS700213")),
        "{err}"
    );
    running.shutdown();
}
