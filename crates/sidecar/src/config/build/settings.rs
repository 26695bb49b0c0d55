//! The sidecar's own settings (docs/sidecar.md §12.5): listeners, who may call, overrides, limits,
//! extra CA certificates, logging and the token cache (`Sidecar__*`, `Kestrel__*`, `Logging__*`).

use super::{Warnings, invalid, non_empty};
use crate::config::listen::parse_listen;
use crate::config::raw::{RawKestrel, RawLogging, RawSidecar};
use crate::config::tree::{Node, Tree};
use crate::config::{
    AllowOverrides, ConfigError, ConfigSources, ListenAddr, LogFormat, SidecarSettings,
};
use std::path::PathBuf;
use std::time::Duration;

/// The `Sidecar` section with the listener, logging and CA settings that live elsewhere.
pub(super) fn settings(
    sources: &ConfigSources,
    tree: &Tree,
    sc: RawSidecar,
    kestrel: RawKestrel,
    logging: RawLogging,
    allow_insecure_authority: bool,
    warnings: &mut Warnings,
) -> Result<SidecarSettings, ConfigError> {
    let listen = listen_setting(
        sources,
        sc.listen_url.as_deref(),
        &kestrel.endpoints.http.url,
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
    let level = match non_empty(logging.log_level.default) {
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
        revocation: revocation(sc.revocation)?,
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
    Ok(sidecar)
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

/// `Sidecar:Revocation` (docs/sidecar.md §18): off unless `Enabled`.
fn revocation(
    r: crate::config::raw::RawRevocation,
) -> Result<Option<crate::config::RevocationSettings>, ConfigError> {
    if r.enabled != Some(true) {
        return Ok(None);
    }
    let interval = r.poll_interval_seconds.unwrap_or(2);
    if !(1..=300).contains(&interval) {
        return Err(invalid(
            "Sidecar__Revocation__PollIntervalSeconds",
            "must be between 1 and 300",
        ));
    }
    let wait = r.long_poll_wait_seconds.unwrap_or(20);
    if wait > 25 {
        return Err(invalid(
            "Sidecar__Revocation__LongPollWaitSeconds",
            "must be at most 25 (0 polls without waiting)",
        ));
    }
    let grace = r.grace_period_seconds.unwrap_or(60);
    if grace > 86_400 || (wait > 0 && grace <= wait) {
        return Err(invalid(
            "Sidecar__Revocation__GracePeriodSeconds",
            "must be longer than LongPollWaitSeconds and at most 86400",
        ));
    }
    let fail_open = match non_empty(r.failure_mode)
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("closed") => false,
        Some("open") => true,
        Some(other) => {
            return Err(invalid(
                "Sidecar__Revocation__FailureMode",
                format!("'{other}' is not open or closed"),
            ));
        }
    };
    Ok(Some(crate::config::RevocationSettings {
        poll: agentid_claims::revocation::PollSettings {
            interval: Duration::from_secs(interval),
            wait: Duration::from_secs(wait),
            fetch_timeout: Duration::from_secs(5),
            skew: Duration::from_secs(300),
        },
        grace: Duration::from_secs(grace),
        fail_open,
    }))
}
