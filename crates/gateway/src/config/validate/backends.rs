//! Backends, their upstream policies and TLS, and MCP targets (docs/gateway.md §4, §5.5, §9).

use super::common::{Result, V, canonical_path, header_modifier, rules};
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw;
use crate::config::upstream_tls;
use crate::request_path::CanonicalPath;
use std::collections::HashSet;
use std::sync::Arc;

impl V<'_> {
    pub(super) fn upstream_policy(
        &mut self,
        headers: Option<&raw::HeaderModifier>,
        tls: Option<&raw::BackendTls>,
        auth: Option<&raw::BackendAuth>,
        path: &str,
    ) -> Result<UpstreamPolicy> {
        Ok(UpstreamPolicy {
            headers: headers
                .map(|h| header_modifier(h, &format!("{path}.requestHeaderModifier")).map(Arc::new))
                .transpose()?,
            tls: tls
                .map(|t| self.tls(t, &format!("{path}.backendTLS")).map(Arc::new))
                .transpose()?,
            auth: auth
                .map(|a| {
                    self.backend_auth(a, &format!("{path}.backendAuth"))
                        .map(Arc::new)
                })
                .transpose()?,
        })
    }

    pub(super) fn tls(&mut self, t: &raw::BackendTls, path: &str) -> Result<TlsPolicy> {
        let root = t
            .root
            .as_ref()
            .map(|r| self.readable(&format!("{path}.root"), r))
            .transpose()?;
        let cert = t
            .cert
            .as_ref()
            .map(|r| self.readable(&format!("{path}.cert"), r))
            .transpose()?;
        let key = t
            .key
            .as_ref()
            .map(|r| self.readable(&format!("{path}.key"), r))
            .transpose()?;
        if cert.is_some() != key.is_some() {
            return Err(ConfigError::at(path, "cert and key go together"));
        }
        if let Some(h) = &t.hostname
            && rustls::pki_types::ServerName::try_from(h.as_str()).is_err()
        {
            return Err(ConfigError::at(
                format!("{path}.hostname"),
                format!("{h:?} is not a DNS name or IP address"),
            ));
        }
        if t.insecure.unwrap_or(false) || t.insecure_host.unwrap_or(false) {
            self.warnings.push(format!(
                "{path}: certificate verification is weakened (insecure)"
            ));
        }
        Ok(TlsPolicy {
            root,
            hostname: t.hostname.clone(),
            cert,
            key,
            insecure: t.insecure.unwrap_or(false),
            insecure_host: t.insecure_host.unwrap_or(false),
        })
    }

    /// `route_tls`: the route's `backendTLS`, which MCP targets inherit (`upstream_tls`).
    pub(super) fn backend(
        &mut self,
        b: &raw::RouteBackend,
        path: &str,
        route_tls: Option<&Arc<TlsPolicy>>,
    ) -> Result<Backend> {
        let kinds = [b.host.is_some(), b.mcp.is_some(), b.ai.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if kinds != 1 {
            return Err(ConfigError::at(
                path,
                "exactly one of host, mcp, ai is required",
            ));
        }
        let (policies, mcp_authorization) = match &b.policies {
            Some(p) => (
                self.upstream_policy(
                    p.request_header_modifier.as_ref(),
                    p.backend_tls.as_ref(),
                    p.backend_auth.as_ref(),
                    &format!("{path}.policies"),
                )?,
                p.mcp_authorization
                    .as_ref()
                    .map(|r| rules(r, &format!("{path}.policies.mcpAuthorization")))
                    .transpose()?,
            ),
            None => (UpstreamPolicy::default(), None),
        };
        let weight = b.weight.unwrap_or(1);
        if let Some(host) = &b.host {
            let (h, p) = host_port(host).ok_or_else(|| {
                ConfigError::at(format!("{path}.host"), "expected \"<host>:<port>\"")
            })?;
            return Ok(Backend {
                weight,
                name: host.clone(),
                kind: BackendKind::Host { host: h, port: p },
                policies,
                mcp_authorization,
            });
        }
        if let Some(m) = &b.mcp {
            return Ok(Backend {
                weight,
                name: "mcp".into(),
                kind: BackendKind::Mcp(Arc::new(self.mcp(
                    m,
                    &format!("{path}.mcp"),
                    &[route_tls, policies.tls.as_ref()],
                )?)),
                policies,
                mcp_authorization,
            });
        }
        let ai = b.ai.clone().unwrap_or_default();
        let apath = format!("{path}.ai");
        let provider = match &ai.provider {
            Some(raw::AiProvider {
                open_ai: Some(o),
                azure: None,
            }) => AiProvider::OpenAi {
                model: o.model.clone(),
            },
            Some(raw::AiProvider {
                open_ai: None,
                azure: Some(a),
            }) => {
                match a.resource_type.as_deref().unwrap_or("openAI") {
                    "openAI" => {}
                    other => {
                        return Err(ConfigError::at(
                            format!("{apath}.provider.azure.resourceType"),
                            format!(
                                "\"{other}\" is an agentgateway feature that agentid does not support (only openAI)"
                            ),
                        ));
                    }
                }
                AiProvider::Azure {
                    resource_name: a.resource_name.clone(),
                    api_version: a.api_version.clone().unwrap_or_else(|| "v1".into()),
                    model: a.model.clone(),
                }
            }
            _ => {
                return Err(ConfigError::at(
                    format!("{apath}.provider"),
                    "exactly one of openAI, azure is required",
                ));
            }
        };
        let host_override = ai
            .host_override
            .as_ref()
            .map(|h| {
                host_port(h).ok_or_else(|| {
                    ConfigError::at(
                        format!("{apath}.hostOverride"),
                        "expected \"<host>:<port>\"",
                    )
                })
            })
            .transpose()?;
        let ai_policies = match &ai.policies {
            Some(p) => self.upstream_policy(
                p.request_header_modifier.as_ref(),
                p.backend_tls.as_ref(),
                p.backend_auth.as_ref(),
                &format!("{apath}.policies"),
            )?,
            None => UpstreamPolicy::default(),
        };
        Ok(Backend {
            weight,
            name: ai.name.clone().unwrap_or_else(|| "ai".into()),
            kind: BackendKind::Ai(Arc::new(AiBackend {
                name: ai.name.clone().unwrap_or_else(|| "ai".into()),
                provider,
                host_override,
                path_override: ai
                    .path_override
                    .as_deref()
                    .map(|p| {
                        canonical_path(&format!("{apath}.pathOverride"), p).map(|c| c.to_string())
                    })
                    .transpose()?,
            })),
            policies: policies.overlay(&ai_policies),
            mcp_authorization,
        })
    }

    /// `inherited_tls`: the route's and the backend's `backendTLS`, least specific first.
    pub(super) fn mcp(
        &mut self,
        m: &raw::McpBackend,
        path: &str,
        inherited_tls: &[Option<&Arc<TlsPolicy>>; 2],
    ) -> Result<McpBackend> {
        if m.targets.is_empty() {
            return Err(ConfigError::at(
                format!("{path}.targets"),
                "at least one target is required",
            ));
        }
        let name_re = regex::Regex::new("^[A-Za-z][A-Za-z0-9.-]{0,63}$").expect("static regex");
        let mut names = HashSet::new();
        let mut targets = Vec::new();
        for (i, t) in m.targets.iter().enumerate() {
            let tpath = format!("{path}.targets[{i}]");
            if !name_re.is_match(&t.name) {
                return Err(ConfigError::at(
                    format!("{tpath}.name"),
                    format!(
                        "{:?} is not a valid target name: a letter, then letters, digits, '.' or '-' (no '_', which separates target and tool)",
                        t.name
                    ),
                ));
            }
            if !names.insert(t.name.clone()) {
                return Err(ConfigError::at(
                    format!("{tpath}.name"),
                    format!("target name {:?} is used twice", t.name),
                ));
            }
            let kinds = [t.mcp.is_some(), t.sse.is_some(), t.stdio.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if kinds != 1 {
                return Err(ConfigError::at(
                    &tpath,
                    "exactly one of mcp, sse, stdio is required",
                ));
            }
            let policies = match &t.policies {
                Some(p) => {
                    if t.stdio.is_some() {
                        return Err(ConfigError::at(
                            format!("{tpath}.policies"),
                            "stdio targets take no policies",
                        ));
                    }
                    self.upstream_policy(
                        p.request_header_modifier.as_ref(),
                        p.backend_tls.as_ref(),
                        p.backend_auth.as_ref(),
                        &format!("{tpath}.policies"),
                    )?
                }
                None => UpstreamPolicy::default(),
            };
            let [route_tls, backend_tls] = *inherited_tls;
            let composed = upstream_tls::compose(&[route_tls, backend_tls, policies.tls.as_ref()]);
            let mut endpoint = |h: &raw::TargetHost, kind: &str| -> Result<TargetEndpoint> {
                let kpath = format!("{tpath}.{kind}");
                let (endpoint, upgraded) =
                    upstream_tls::endpoint(target_url(h, &kpath)?, composed.clone());
                if upgraded && h.host.starts_with("http://") {
                    self.warnings.push(format!(
                        "{kpath}.host: backendTLS applies to this target, so it is called over TLS (https) although its URL says http"
                    ));
                }
                Ok(endpoint)
            };
            let transport = if let Some(h) = &t.mcp {
                TargetTransport::Http(endpoint(h, "mcp")?)
            } else if let Some(h) = &t.sse {
                TargetTransport::Sse(endpoint(h, "sse")?)
            } else {
                let s = t.stdio.clone().unwrap_or_default();
                if s.cmd.trim().is_empty() {
                    return Err(ConfigError::at(
                        format!("{tpath}.stdio.cmd"),
                        "cmd is empty",
                    ));
                }
                TargetTransport::Stdio {
                    cmd: s.cmd,
                    args: s.args,
                    env: s.env,
                    clear_env: s.clear_env,
                }
            };
            targets.push(McpTarget {
                name: t.name.clone(),
                transport,
                policies,
            });
        }
        let prefix_mode = match m.prefix_mode.as_deref().unwrap_or("conditional") {
            "conditional" => PrefixMode::Conditional,
            "always" => PrefixMode::Always,
            "never" => PrefixMode::Never,
            other => {
                return Err(ConfigError::at(
                    format!("{path}.prefixMode"),
                    format!("{other:?} is not conditional, always or never"),
                ));
            }
        };
        if prefix_mode == PrefixMode::Never && targets.len() > 1 {
            self.warnings.push(format!(
                "{path}: prefixMode never with several targets: tool names must be unique across targets"
            ));
        }
        let stateless = match m.stateful_mode.as_deref().unwrap_or("stateful") {
            "stateful" => false,
            "stateless" => true,
            other => {
                return Err(ConfigError::at(
                    format!("{path}.statefulMode"),
                    format!("{other:?} is not stateful or stateless"),
                ));
            }
        };
        let fail_closed = match m.failure_mode.as_deref().unwrap_or("failOpen") {
            "failOpen" => false,
            "failClosed" => true,
            other => {
                return Err(ConfigError::at(
                    format!("{path}.failureMode"),
                    format!("{other:?} is not failOpen or failClosed"),
                ));
            }
        };
        Ok(McpBackend {
            targets,
            stateless,
            prefix_mode,
            fail_closed,
            dns_rebinding_protection: m.dns_rebinding_protection.unwrap_or(false),
        })
    }
}

/// The URL a target's config names, with the scheme it writes (`http` for the `host:port`
/// forms: TLS is `upstream_tls`'s decision, never guessed from the host name).
pub(super) fn target_url(h: &raw::TargetHost, path: &str) -> Result<url::Url> {
    let text = match (h.port, &h.path) {
        (None, None) if h.host.starts_with("http://") || h.host.starts_with("https://") => {
            h.host.clone()
        }
        (None, None) => match host_port(&h.host) {
            Some((host, port)) => format!("http://{}/", crate::host::authority(&host, port)),
            None => {
                return Err(ConfigError::at(
                    format!("{path}.host"),
                    "expected an http(s):// URL, host:port, or host with port and path",
                ));
            }
        },
        (Some(port), p) => {
            let target_path = match p.as_deref() {
                None | Some("") => CanonicalPath::root(),
                Some(p) => canonical_path(&format!("{path}.path"), p)?,
            };
            format!(
                "http://{}{target_path}",
                crate::host::authority(&h.host, port)
            )
        }
        (None, Some(_)) => {
            return Err(ConfigError::at(format!("{path}.port"), "path needs a port"));
        }
    };
    url::Url::parse(&text)
        .map_err(|e| ConfigError::at(format!("{path}.host"), format!("not a valid URL: {e}")))
}

pub(super) fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() {
        return None;
    }
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}
