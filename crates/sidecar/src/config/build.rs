//! From sources to a validated [`Config`]: precedence, defaults, and every startup error of
//! sidecar.md §12 (each naming its key).

use super::de::NodeDe;
use super::listen::parse_listen;
use super::raw::{ACQUIRE_TOKEN_OPTIONS_KEYS, AZURE_AD_KEYS, RawApi, RawCredential, RawRoot};
use super::tree::{Node, Tree};
use super::*;
use std::path::Path;

const RANK_WORKLOAD_IDENTITY: u8 = 0;
const RANK_FILE: u8 = 1;
const RANK_ENV: u8 = 2;
const RANK_FLAGS: u8 = 3;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
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

/// Reads and validates the configuration.
pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
    let mut tree = Tree::new();
    // Azure workload-identity variables are defaults (sidecar.md §12.4).
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
    let root = tree.root();
    let raw: RawRoot = serde_path_to_error::deserialize(NodeDe(&root)).map_err(|e| {
        let path = render_path(e.path());
        match e.into_inner() {
            super::de::DeError::UnknownKey(k) => {
                let key = if path.is_empty() {
                    k.clone()
                } else if path.ends_with(&k) {
                    path
                } else {
                    format!("{path}__{k}")
                };
                invalid(key, "unknown key")
            }
            super::de::DeError::Message(m) => invalid(path, m),
        }
    })?;
    let mut warnings: Vec<(String, String)> = tree
        .conflicts
        .iter()
        .map(|c| {
            (
                "config_conflict".to_string(),
                format!(
                    "{} is given both as a list and as a single value; the list is used",
                    c.key
                ),
            )
        })
        .collect();
    let mut ignored_keys = Vec::new();
    if let Some(node) = tree.get(&["AzureAd"]) {
        for k in node.keys() {
            if !AZURE_AD_KEYS.iter().any(|a| a.eq_ignore_ascii_case(k)) {
                ignored_keys.push(format!("AzureAd__{k}"));
            }
        }
    }
    build(sources, &tree, raw, &mut warnings, ignored_keys)
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn build(
    sources: &ConfigSources,
    tree: &Tree,
    raw: RawRoot,
    warnings: &mut Vec<(String, String)>,
    ignored_keys: Vec<String>,
) -> Result<Config, ConfigError> {
    let ad = raw.azure_ad;
    if ad.token_decryption_credentials.is_some() {
        return Err(ConfigError::TokenDecryption);
    }
    let sc = raw.sidecar;
    let allow_insecure_authority = sc.allow_insecure_authority.unwrap_or(false);

    // Instance and tenant, or the combined Authority form.
    let (mut instance, mut tenant_id) = (
        non_empty(ad.instance).unwrap_or_else(|| "https://login.microsoftonline.com/".into()),
        non_empty(ad.tenant_id),
    );
    if let Some(authority) = non_empty(ad.authority) {
        let trimmed = authority.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/v2.0").unwrap_or(trimmed);
        let (base, tenant) = trimmed
            .rsplit_once('/')
            .filter(|(b, t)| !t.is_empty() && b.contains("://"))
            .ok_or_else(|| {
                invalid(
                    "AzureAd__Authority",
                    "expected https://host[/prefix]/{tenant}[/v2.0]",
                )
            })?;
        instance = format!("{base}/");
        tenant_id = Some(tenant.to_string());
    }
    let instance_key = "AzureAd__Instance";
    let mut parsed = url::Url::parse(&instance)
        .map_err(|e| invalid(instance_key, format!("'{instance}' is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_insecure_authority && is_loopback_host(&parsed) => {}
        "http" => {
            return Err(invalid(
                instance_key,
                format!(
                    "'{instance}' must be https (plain http needs Sidecar__AllowInsecureAuthority=true and a loopback host)"
                ),
            ));
        }
        _ => return Err(invalid(instance_key, format!("'{instance}' must be https"))),
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    let mut instance = parsed.to_string();
    if !instance.ends_with('/') {
        instance.push('/');
    }
    let tenant_id = tenant_id.ok_or(ConfigError::Missing {
        key: "AzureAd__TenantId".into(),
    })?;
    let client_id = non_empty(ad.client_id).ok_or(ConfigError::Missing {
        key: "AzureAd__ClientId".into(),
    })?;

    let mut audiences: Vec<String> = non_empty(ad.audience).into_iter().collect();
    audiences.extend(ad.audiences.into_iter().filter_map(|a| non_empty(Some(a))));
    if audiences.is_empty() {
        audiences = vec![format!("api://{client_id}"), client_id.clone()];
    }
    let required_scopes = non_empty(ad.scopes).map(|raw| RequiredScopes {
        any_of: raw.split_whitespace().map(str::to_string).collect(),
        raw,
    });
    let valid_issuers = ad
        .valid_issuers
        .into_iter()
        .filter_map(|i| non_empty(Some(i)))
        .collect();

    let federated_file = sources.var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from);
    let mut credentials = Vec::new();
    for (index, c) in ad.client_credentials.into_iter().enumerate() {
        credentials.push(credential(index, c, federated_file.as_deref(), warnings)?);
    }
    if credentials.is_empty() {
        match &federated_file {
            Some(path) => credentials.push(CredentialConfig::AssertionFile {
                index: 0,
                path: path.clone(),
            }),
            None => return Err(ConfigError::NoCredential),
        }
    }

    let mut apis = Vec::new();
    for (name, api) in raw.downstream_apis {
        let unknown_ato: Vec<String> = tree
            .get(&["DownstreamApis", &name, "AcquireTokenOptions"])
            .map(|n| {
                n.keys()
                    .into_iter()
                    .filter(|k| {
                        !ACQUIRE_TOKEN_OPTIONS_KEYS
                            .iter()
                            .any(|a| a.eq_ignore_ascii_case(k))
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for k in unknown_ato {
            warnings.push((
                "config_key_ignored".into(),
                format!("DownstreamApis__{name}__AcquireTokenOptions__{k} is not supported and is ignored"),
            ));
        }
        let options = api_options(&name, api, warnings)?;
        apis.push((name, options));
    }

    let listen = listen_setting(
        sources,
        sc.listen_url.as_deref(),
        &raw.kestrel.endpoints.http.url,
    )?;
    let health_listen = match tree.get(&["Sidecar", "HealthListenUrl"]) {
        Some(Node::Leaf(v)) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("off") => None,
        Some(Node::Leaf(v)) => {
            Some(parse_listen(v.trim()).map_err(|m| invalid("Sidecar__HealthListenUrl", m))?)
        }
        _ => Some(parse_listen("http://0.0.0.0:5001").expect("valid default")),
    };

    let mut allowed = Vec::new();
    for (i, a) in sc.allowed_agent_identities.iter().enumerate() {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        let id = agentid_claims::guid::parse(a).ok_or_else(|| {
            invalid(
                format!("Sidecar__AllowedAgentIdentities__{i}"),
                format!("'{a}' is not a GUID"),
            )
        })?;
        allowed.push(id.to_string());
    }

    let mut allowed_hosts = Vec::new();
    for (i, h) in sc.allowed_hosts.iter().enumerate() {
        let h = h.trim();
        if h.is_empty() {
            continue;
        }
        let name =
            allowed_host(h).map_err(|m| invalid(format!("Sidecar__AllowedHosts__{i}"), m))?;
        allowed_hosts.push(name);
    }

    let defaults = AllowOverrides::default();
    let ao = sc.allow_overrides;
    let allow_overrides = AllowOverrides {
        get_authorization_header: ao
            .get_authorization_header
            .unwrap_or(defaults.get_authorization_header),
        get_authorization_header_unauthenticated: ao
            .get_authorization_header_unauthenticated
            .unwrap_or(defaults.get_authorization_header_unauthenticated),
        call_downstream_api: ao
            .call_downstream_api
            .unwrap_or(defaults.call_downstream_api),
        call_downstream_api_unauthenticated: ao
            .call_downstream_api_unauthenticated
            .unwrap_or(defaults.call_downstream_api_unauthenticated),
    };

    let extra_ca_bundle = non_empty(sc.extra_ca_bundle_path).map(PathBuf::from);
    let mut extra_ca_pem = Vec::new();
    if let Some(p) = &extra_ca_bundle {
        let pem = std::fs::read(p).map_err(|e| {
            invalid(
                "Sidecar__ExtraCaBundlePath",
                format!("cannot read {}: {e}", p.display()),
            )
        })?;
        if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |c| c.is_empty()) {
            return Err(invalid(
                "Sidecar__ExtraCaBundlePath",
                format!("{} holds no PEM certificate", p.display()),
            ));
        }
        extra_ca_pem.push(pem);
    }
    if let Some(p) = sources.var("SSL_CERT_FILE") {
        match std::fs::read(p) {
            Ok(pem) if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|c| !c.is_empty()) => {
                extra_ca_pem.push(pem)
            }
            _ => warnings.push((
                "config_key_ignored".into(),
                format!("SSL_CERT_FILE={p} holds no readable PEM certificate; ignored"),
            )),
        }
    }

    let log_format = match non_empty(sc.log_format)
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            return Err(invalid(
                "Sidecar__LogFormat",
                format!("'{other}' is not json or text"),
            ));
        }
    };
    let level = match non_empty(raw.logging.log_level.default) {
        None => "info",
        Some(l) => match l.to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "information" => "info",
            "warning" => "warn",
            "error" | "critical" => "error",
            "none" => "off",
            _ => {
                return Err(invalid(
                    "Logging__LogLevel__Default",
                    format!(
                        "'{l}' is not Trace, Debug, Information, Warning, Error, Critical or None"
                    ),
                ));
            }
        },
    };
    let log_filter = sources
        .var("RUST_LOG")
        .map(str::to_string)
        .unwrap_or_else(|| level.to_string());

    let max_entries = sc.token_cache.max_entries.unwrap_or(4096);
    if max_entries == 0 {
        return Err(invalid(
            "Sidecar__TokenCache__MaxEntries",
            "must be at least 1",
        ));
    }
    let positive = |v: Option<u64>, default: u64, key: &str| -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(0) => Err(invalid(key, "must be greater than 0")),
            Some(n) => Ok(n),
        }
    };
    let sidecar = SidecarSettings {
        listen,
        health_listen,
        allow_remote_callers: sc.allow_remote_callers.unwrap_or(false),
        allowed_hosts,
        allow_overrides,
        allowed_agents: (!allowed.is_empty()).then_some(allowed),
        allow_outbound_redirects: sc.allow_outbound_redirects.unwrap_or(false),
        downstream_timeout: Duration::from_secs(positive(
            sc.downstream_timeout_seconds,
            100,
            "Sidecar__DownstreamTimeoutSeconds",
        )?),
        downstream_response_headers: sc
            .downstream_response_headers
            .into_iter()
            .filter_map(|h| non_empty(Some(h)))
            .collect(),
        max_request_body_bytes: positive(
            sc.max_request_body_bytes,
            30_000_000,
            "Sidecar__MaxRequestBodyBytes",
        )?,
        max_response_body_bytes: positive(
            sc.max_response_body_bytes,
            10_485_760,
            "Sidecar__MaxResponseBodyBytes",
        )?,
        authority_timeout: Duration::from_secs(positive(
            sc.authority_timeout_seconds,
            10,
            "Sidecar__AuthorityTimeoutSeconds",
        )?),
        drain_timeout: Duration::from_secs(positive(
            sc.drain_timeout_seconds,
            20,
            "Sidecar__DrainTimeoutSeconds",
        )?),
        cache_max_entries: max_entries as usize,
        extra_ca_bundle,
        extra_ca_pem,
        allow_insecure_authority,
        enable_openapi: sc.enable_open_api.unwrap_or(false),
        log_format,
        log_filter,
    };
    if sidecar.listen.iter().any(|l| !l.is_loopback()) {
        warnings.push((
            "non_loopback_bind".into(),
            "the main listener binds a non-loopback address; remote callers still get 403 unless Sidecar__AllowRemoteCallers=true".into(),
        ));
    }
    Ok(Config {
        instance,
        tenant_id,
        client_id,
        audiences,
        required_scopes,
        valid_issuers,
        send_x5c: ad.send_x5c.unwrap_or(false),
        credentials,
        apis: Apis::new(apis),
        sidecar,
        warnings: std::mem::take(warnings),
        ignored_keys,
    })
}

/// One `Sidecar__AllowedHosts` entry: a host name (or `*.` and a domain), lower-cased. A bare
/// `*` is refused: it would switch off the DNS-rebinding defence for every name.
fn allowed_host(h: &str) -> Result<String, String> {
    let name = h.trim_end_matches('.').to_ascii_lowercase();
    let domain = name.strip_prefix("*.").unwrap_or(&name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name == "*" {
        return Err(
            "'*' would answer any Host and re-open DNS rebinding; list the names callers use"
                .into(),
        );
    }
    if domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(format!(
            "'{h}' is not a host name (give a name such as sidecar.example.internal, without scheme or port)"
        ));
    }
    Ok(name)
}

fn listen_setting(
    sources: &ConfigSources,
    listen_url: Option<&str>,
    kestrel: &Option<String>,
) -> Result<Vec<ListenAddr>, ConfigError> {
    let candidates = [
        ("Sidecar__ListenUrl", listen_url.map(str::to_string)),
        ("Kestrel__Endpoints__Http__Url", kestrel.clone()),
        (
            "ASPNETCORE_URLS",
            sources.var("ASPNETCORE_URLS").map(str::to_string),
        ),
    ];
    for (key, value) in candidates {
        if let Some(v) = non_empty(value) {
            return parse_listen(&v).map_err(|m| invalid(key, m));
        }
    }
    Ok(parse_listen("http://localhost:5000").expect("valid default"))
}

fn credential(
    index: usize,
    c: RawCredential,
    federated_file: Option<&Path>,
    warnings: &mut Vec<(String, String)>,
) -> Result<CredentialConfig, ConfigError> {
    let key = |k: &str| format!("AzureAd__ClientCredentials__{index}__{k}");
    let source = non_empty(c.source_type).ok_or_else(|| ConfigError::Missing {
        key: key("SourceType"),
    })?;
    let is = |name: &str, number: &str| source.eq_ignore_ascii_case(name) || source == number;
    if is("ClientSecret", "6") {
        let secret =
            c.client_secret
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ConfigError::Missing {
                    key: key("ClientSecret"),
                })?;
        return Ok(CredentialConfig::ClientSecret {
            index,
            secret: Secret::new(secret),
        });
    }
    if is("SignedAssertionFilePath", "8") {
        let path = match (
            non_empty(c.signed_assertion_file_disk_path),
            non_empty(c.signed_assertion_file_path),
        ) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(p)) => {
                warnings.push((
                    "config_key_alias".into(),
                    format!(
                        "{} is read as {} (upstream binds it to nothing)",
                        key("SignedAssertionFilePath"),
                        key("SignedAssertionFileDiskPath")
                    ),
                ));
                PathBuf::from(p)
            }
            (None, None) => {
                federated_file
                    .map(Path::to_path_buf)
                    .ok_or_else(|| ConfigError::Missing {
                        key: key("SignedAssertionFileDiskPath"),
                    })?
            }
        };
        return Ok(CredentialConfig::AssertionFile { index, path });
    }
    if is("Path", "3") {
        if non_empty(c.certificate_password).is_some() {
            return Err(ConfigError::CertificatePassword {
                key: key("CertificatePassword"),
            });
        }
        let cert_path = non_empty(c.certificate_disk_path)
            .map(PathBuf::from)
            .ok_or_else(|| ConfigError::Missing {
                key: key("CertificateDiskPath"),
            })?;
        return Ok(CredentialConfig::Certificate {
            index,
            cert_path,
            key_path: non_empty(c.certificate_key_path).map(PathBuf::from),
        });
    }
    Err(ConfigError::UnsupportedSourceType {
        key: key("SourceType"),
        source_type: source,
    })
}

fn valid_method(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn api_options(
    name: &str,
    api: RawApi,
    warnings: &mut Vec<(String, String)>,
) -> Result<ApiOptions, ConfigError> {
    let key = |k: &str| format!("DownstreamApis__{name}__{k}");
    let base_url = match non_empty(api.base_url) {
        None => None,
        Some(b) => {
            let u = url::Url::parse(&b)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    invalid(
                        key("BaseUrl"),
                        format!("'{b}' is not an absolute http(s) URL"),
                    )
                })?;
            Some(u)
        }
    };
    let http_method = non_empty(api.http_method).unwrap_or_else(|| "GET".into());
    if !valid_method(&http_method) {
        return Err(invalid(
            key("HttpMethod"),
            format!("'{http_method}' is not an HTTP method"),
        ));
    }
    let ato = api.acquire_token_options;
    let correlation_id = match non_empty(ato.correlation_id) {
        None => None,
        Some(c) => match agentid_claims::guid::parse(&c).filter(|g| !g.is_nil()) {
            Some(g) => Some(g),
            None => {
                warnings.push((
                    "config_key_ignored".into(),
                    format!(
                        "{} is not a GUID; ignored",
                        key("AcquireTokenOptions__CorrelationId")
                    ),
                ));
                None
            }
        },
    };
    Ok(ApiOptions {
        base_url,
        relative_path: api.relative_path.unwrap_or_default(),
        http_method,
        scopes: api.scopes.map(|s| s.0).unwrap_or_default(),
        request_app_token: api.request_app_token.unwrap_or(false),
        accept_header: non_empty(api.accept_header).unwrap_or_else(|| "application/json".into()),
        content_type: non_empty(api.content_type).unwrap_or_else(|| "application/json".into()),
        extra_headers: api.extra_header_parameters.into_iter().collect(),
        extra_query: api.extra_query_parameters.into_iter().collect(),
        acquire: AcquireTokenOptions {
            tenant: non_empty(ato.tenant),
            claims: non_empty(ato.claims),
            correlation_id,
            force_refresh: ato.force_refresh.unwrap_or(false),
            fmi_path: non_empty(ato.fmi_path),
            pop_public_key: non_empty(ato.pop_public_key),
            long_running_session_key: non_empty(ato.long_running_web_api_session_key),
            managed_identity_client_id: non_empty(ato.managed_identity.user_assigned_client_id),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AzureAd__Instance", "https://login.microsoftonline.com/"),
            ("AzureAd__TenantId", "t1"),
            ("AzureAd__ClientId", "c1"),
            ("AzureAd__ClientCredentials__0__SourceType", "ClientSecret"),
            ("AzureAd__ClientCredentials__0__ClientSecret", "s"),
            ("Sidecar__HealthListenUrl", "off"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut v = base();
        v.extend_from_slice(extra);
        load(&ConfigSources::from_vars(&v))
    }

    #[test]
    fn defaults_and_both_scope_forms() {
        let c = with(&[
            (
                "DownstreamApis__graph__Scopes__0",
                "https://graph.microsoft.com/.default",
            ),
            ("DownstreamApis__graph__RequestAppToken", "TRUE"),
            ("DownstreamApis__mcp__Scopes", "a  b"),
        ])
        .unwrap();
        assert_eq!(c.audiences, vec!["api://c1", "c1"]);
        assert_eq!(
            c.apis.get("GRAPH").unwrap().1.scopes,
            vec!["https://graph.microsoft.com/.default"]
        );
        assert!(c.apis.get("graph").unwrap().1.request_app_token);
        assert_eq!(c.apis.get("mcp").unwrap().1.scopes, vec!["a", "b"]);
        assert_eq!(c.sidecar.listen.len(), 2);
        assert!(c.sidecar.health_listen.is_none());
        assert_eq!(c.sidecar.cache_max_entries, 4096);
        assert!(c.sidecar.allowed_agents.is_none());
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let e = with(&[("DownstreamApis__graph__Scopse", "x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration key DownstreamApis__graph__Scopse: unknown key"
        );
        let e = with(&[("Sidecar__AllowRemoteCaller", "true")]).unwrap_err();
        assert!(e.to_string().contains("Sidecar__AllowRemoteCaller"), "{e}");
        let e = with(&[("Sidecar__AllowOverrides__Nope", "true")]).unwrap_err();
        assert!(
            e.to_string().contains("Sidecar__AllowOverrides__Nope"),
            "{e}"
        );
        let e = with(&[("Sidecar__AllowRemoteCallers", "yes")]).unwrap_err();
        assert!(e.to_string().contains("Sidecar__AllowRemoteCallers"), "{e}");
        // AzureAd keys of Microsoft.Identity.Web that do not apply are ignored.
        let c = with(&[("AzureAd__CallbackPath", "/signin-oidc")]).unwrap();
        assert_eq!(c.ignored_keys, vec!["AzureAd__CallbackPath"]);
    }

    #[test]
    fn startup_errors() {
        let e = with(&[("AzureAd__ClientCredentials__0__SourceType", "KeyVault")]).unwrap_err();
        assert!(
            matches!(e, ConfigError::UnsupportedSourceType { .. }),
            "{e}"
        );
        let e = with(&[
            ("AzureAd__ClientCredentials__1__SourceType", "Path"),
            (
                "AzureAd__ClientCredentials__1__CertificateDiskPath",
                "/c.pem",
            ),
            ("AzureAd__ClientCredentials__1__CertificatePassword", "pw"),
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::CertificatePassword { .. }), "{e}");
        let e = with(&[("AzureAd__Instance", "http://login.example/")]).unwrap_err();
        assert!(e.to_string().contains("AzureAd__Instance"), "{e}");
        assert!(
            with(&[
                ("AzureAd__Instance", "http://127.0.0.1:9/"),
                ("Sidecar__AllowInsecureAuthority", "true")
            ])
            .is_ok()
        );
        let c = with(&[
            ("Sidecar__AllowedHosts__0", "Sidecar.Internal."),
            ("Sidecar__AllowedHosts__1", "*.agents.internal"),
        ])
        .unwrap();
        assert_eq!(
            c.sidecar.allowed_hosts,
            vec!["sidecar.internal", "*.agents.internal"]
        );
        for bad in ["*", "http://x", "x:5000", "a..b", "-a.b", ""] {
            if let Err(e) = with(&[("Sidecar__AllowedHosts__0", bad)]) {
                assert!(e.to_string().contains("Sidecar__AllowedHosts__0"), "{e}");
            } else {
                assert!(bad.is_empty(), "{bad}");
            }
        }
        let e = with(&[("Sidecar__AllowedAgentIdentities__0", "agent")]).unwrap_err();
        assert!(
            e.to_string().contains("Sidecar__AllowedAgentIdentities__0"),
            "{e}"
        );
        let e = with(&[("DownstreamApis__g__BaseUrl", "/relative")]).unwrap_err();
        assert!(e.to_string().contains("DownstreamApis__g__BaseUrl"), "{e}");
        let e = with(&[
            ("DownstreamApis__g__Scopes", "a"),
            ("DownstreamApis__G__BaseUrl", "https://x/"),
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::ApiNameCollision { .. }), "{e}");
        let e =
            with(&[("AzureAd__TokenDecryptionCredentials__0__SourceType", "Path")]).unwrap_err();
        assert!(matches!(e, ConfigError::TokenDecryption), "{e}");
        let e = with(&[("Sidecar__ListenUrl", "https://127.0.0.1:1")]).unwrap_err();
        assert!(e.to_string().contains("Sidecar__ListenUrl"), "{e}");
        let e = load(&ConfigSources::from_vars(&[("AzureAd__TenantId", "t")])).unwrap_err();
        assert!(e.to_string().contains("AzureAd__ClientId"), "{e}");
    }

    #[test]
    fn workload_identity_variables_are_defaults() {
        let c = load(&ConfigSources::from_vars(&[
            ("AZURE_CLIENT_ID", "wi-client"),
            ("AZURE_TENANT_ID", "wi-tenant"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AzureAd__TenantId", "explicit"),
            ("Sidecar__HealthListenUrl", ""),
        ]))
        .unwrap();
        assert_eq!(c.client_id, "wi-client");
        assert_eq!(c.tenant_id, "explicit");
        assert_eq!(c.instance, "https://login.microsoftonline.us/");
        assert_eq!(
            c.credentials,
            vec![CredentialConfig::AssertionFile {
                index: 0,
                path: "/var/run/secrets/azure/tokens/azure-identity-token".into()
            }]
        );
    }

    #[test]
    fn authority_form_and_file_precedence() {
        let dir = std::env::temp_dir().join(format!("sidecar-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("appsettings.json");
        std::fs::write(
            &file,
            r#"{"AzureAd":{"Authority":"https://sts.example/prefix/contoso/v2.0","ClientId":"file-client",
               "ClientCredentials":[{"SourceType":"SignedAssertionFilePath","SignedAssertionFileDiskPath":"/t"}]},
               "DownstreamApis":{"graph":{"Scopes":["x"],"RequestAppToken":true}},
               "Sidecar":{"AllowedAgentIdentities":["F3897825-FD03-45F5-90EB-FDBF26135650"],"HealthListenUrl":"off"},
               "Logging":{"LogLevel":{"Default":"Warning","Microsoft":"Error"}},"AllowedHosts":"*"}"#,
        )
        .unwrap();
        let mut s = ConfigSources::from_vars(&[("AzureAd__ClientId", "env-client")]);
        s.file = Some(file);
        let c = load(&s).unwrap();
        assert_eq!(c.instance, "https://sts.example/prefix/");
        assert_eq!(c.tenant_id, "contoso");
        assert_eq!(c.client_id, "env-client");
        assert_eq!(
            c.sidecar.allowed_agents,
            Some(vec!["f3897825-fd03-45f5-90eb-fdbf26135650".to_string()])
        );
        assert_eq!(c.sidecar.log_filter, "warn");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
