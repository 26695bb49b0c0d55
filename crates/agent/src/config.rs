//! The agent's configuration: a file (YAML, or TOML by extension) plus `AGENTID_AGENT_*`
//! environment variables, the environment winning over the file.
//!
//! The file is the one `agentid up` writes to `.agentid/agent.yaml`; its schema is
//! [`FileConfig`] (camelCase keys, unknown keys refused so that a typo is an error, not a
//! silently ignored setting). See the crate documentation for an example.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Graph command-line tools' public client, which users sign in with (as in the guide).
pub const DEFAULT_CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
/// Default cap on chat → tools → chat rounds per question.
pub const DEFAULT_MAX_ITERATIONS: u32 = 8;
/// The token-exchange resource every T1 is issued for.
pub const TOKEN_EXCHANGE_SCOPE: &str = "api://AzureADTokenExchange/.default";
/// Azure OpenAI's resource: what the LLM leg's agent token is for by default.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("the configuration is incomplete: {0}")]
    Missing(String),
    #[error("the configuration is not valid: {0}")]
    Invalid(String),
}

/// How the agent gets its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TokenMode {
    /// Through the token sidecar (`GET /AuthorizationHeader/{api}`), as in Kubernetes.
    #[default]
    Sidecar,
    /// The agent holds the blueprint credential and runs T1 → T2 itself.
    Direct,
}

impl std::str::FromStr for TokenMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sidecar" => Ok(Self::Sidecar),
            "direct" => Ok(Self::Direct),
            other => Err(format!("`{other}` is neither `sidecar` nor `direct`")),
        }
    }
}

/// The two request shapes of OpenAI-compatible chat completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum LlmKind {
    /// `{baseUrl}/chat/completions`, with `model` in the body.
    #[default]
    Openai,
    /// `{baseUrl}/openai/deployments/{deployment}/chat/completions?api-version=…`.
    Azure,
}

/// How the LLM call authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum LlmAuth {
    /// `Authorization: Bearer <agent token>` (for the LLM's API).
    #[default]
    AgentToken,
    /// `api-key: <apiKey>` (Azure OpenAI keys) or `Authorization: Bearer <apiKey>` (OpenAI).
    ApiKey,
    /// Nothing (a local server).
    None,
}

/// `llm:` in the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmFile {
    pub kind: Option<LlmKind>,
    pub base_url: Option<String>,
    pub deployment: Option<String>,
    pub api_version: Option<String>,
    pub model: Option<String>,
    pub auth: Option<LlmAuth>,
    pub api_key: Option<String>,
    /// Sidecar API name for the LLM's token (default `openai`).
    pub api: Option<String>,
    /// Scope of the LLM's token in direct mode (default Cognitive Services).
    pub scope: Option<String>,
}

/// One entry of `mcp:` in the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpFile {
    pub name: String,
    pub url: String,
    /// Sidecar API name for this server's token (default `mcp`).
    pub api: Option<String>,
    /// Scope of this server's token in direct mode (`api://{mcp app}/.default`).
    pub scope: Option<String>,
}

/// The configuration file's schema (what `agentid up` writes to `.agentid/agent.yaml`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// Authority host (`https://127.0.0.1:8443`, `https://login.microsoftonline.com`); with no
    /// `tenant`, the full authority including the tenant.
    pub authority: Option<String>,
    /// Tenant id or domain.
    pub tenant: Option<String>,
    /// Public client the user signs in with (default the Graph command-line tools).
    pub client_id: Option<String>,
    /// The agent identity blueprint's app id (the user token is for `api://{blueprint}`).
    pub blueprint: Option<String>,
    /// The agent identity acting for the user.
    pub agent_id: Option<String>,
    /// The agent identity used with `--autonomous` (default `agentId`).
    pub autonomous_agent_id: Option<String>,
    pub tokens: Option<TokenMode>,
    pub sidecar_url: Option<String>,
    /// Direct mode: the blueprint's client secret.
    pub blueprint_secret: Option<String>,
    /// Direct mode: the blueprint's certificate (PEM) and its RSA private key (PEM).
    pub certificate_file: Option<PathBuf>,
    pub certificate_key_file: Option<PathBuf>,
    /// Direct mode: a federated token (e.g. a Kubernetes service-account token) used as the
    /// blueprint's client assertion; re-read on every use because it is rotated on disk.
    pub federated_token_file: Option<PathBuf>,
    pub llm: Option<LlmFile>,
    pub mcp: Option<Vec<McpFile>>,
    /// A CA (PEM) added to the system roots for every HTTPS call.
    pub ca_file: Option<PathBuf>,
    /// Where the user's refresh token is kept (mode 0600).
    pub token_cache: Option<PathBuf>,
    pub max_iterations: Option<u32>,
    /// The user to sign in with the password grant (scripts and tests only).
    pub username: Option<String>,
    /// A system prompt for the model.
    pub system_prompt: Option<String>,
}

/// The effective LLM settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmConfig {
    pub kind: LlmKind,
    pub base_url: String,
    pub deployment: Option<String>,
    pub api_version: String,
    pub model: String,
    pub auth: LlmAuth,
    #[serde(serialize_with = "redacted")]
    pub api_key: Option<String>,
    pub api: String,
    pub scope: String,
}

/// One MCP server, effective.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct McpConfig {
    pub name: String,
    pub url: String,
    pub api: String,
    pub scope: Option<String>,
}

/// The effective configuration: file and environment merged, defaults applied.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    /// The file that was read, if any.
    pub source: Option<PathBuf>,
    pub authority: String,
    pub tenant: Option<String>,
    pub client_id: String,
    pub blueprint: Option<String>,
    pub agent_id: Option<String>,
    pub autonomous_agent_id: Option<String>,
    pub tokens: TokenMode,
    pub sidecar_url: String,
    #[serde(serialize_with = "redacted")]
    pub blueprint_secret: Option<String>,
    pub certificate_file: Option<PathBuf>,
    pub certificate_key_file: Option<PathBuf>,
    pub federated_token_file: Option<PathBuf>,
    pub llm: Option<LlmConfig>,
    pub mcp: Vec<McpConfig>,
    pub ca_file: Option<PathBuf>,
    pub token_cache: PathBuf,
    pub max_iterations: u32,
    pub username: Option<String>,
    pub system_prompt: Option<String>,
}

fn redacted<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("(set, redacted)"),
        None => s.serialize_none(),
    }
}

impl AgentConfig {
    /// `{authority}/{tenant}` (or the authority alone when it already names the tenant).
    pub fn authority_url(&self) -> String {
        let base = self.authority.trim_end_matches('/');
        match &self.tenant {
            Some(t) => format!("{base}/{t}"),
            None => base.to_string(),
        }
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/v2.0/token", self.authority_url())
    }

    pub fn device_endpoint(&self) -> String {
        format!("{}/oauth2/v2.0/devicecode", self.authority_url())
    }

    /// The scope the user's token (Tc) is requested for.
    pub fn user_scope(&self) -> Result<String, ConfigError> {
        let bp = self.blueprint.as_deref().ok_or_else(|| {
            ConfigError::Missing(
                "`blueprint` (AGENTID_AGENT_BLUEPRINT) is needed to sign in".into(),
            )
        })?;
        Ok(format!(
            "api://{bp}/access_as_user openid profile offline_access"
        ))
    }

    /// The agent identity to act as: the user-facing one, or the autonomous one.
    pub fn agent_for(&self, autonomous: bool) -> Result<String, ConfigError> {
        let pick = if autonomous {
            self.autonomous_agent_id.as_ref().or(self.agent_id.as_ref())
        } else {
            self.agent_id.as_ref()
        };
        pick.cloned()
            .ok_or_else(|| ConfigError::Missing("`agentId` (AGENTID_AGENT_AGENT_ID)".into()))
    }

    /// The effective configuration as YAML, secrets redacted (`agentid agent config`).
    pub fn to_redacted_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

/// Where the configuration comes from: explicit file, `AGENTID_HOME`, current directory, and
/// the environment (passed in, so tests do not touch the process environment).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
}

impl Sources {
    /// The process's own environment and directories.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The file to read: `--config`, else `$AGENTID_HOME/agent.yaml`, else
    /// `./.agentid/agent.yaml` (what `agentid up` writes), else none.
    pub fn config_file(&self) -> Option<PathBuf> {
        if let Some(f) = &self.file {
            return Some(f.clone());
        }
        if let Some(f) = self.var("AGENTID_AGENT_CONFIG") {
            return Some(PathBuf::from(f));
        }
        let mut candidates = Vec::new();
        if let Some(h) = self.var("AGENTID_HOME") {
            candidates.push(PathBuf::from(h).join("agent.yaml"));
        }
        candidates.push(self.cwd.join(".agentid").join("agent.yaml"));
        candidates.into_iter().find(|p| p.is_file())
    }
}

/// Parses a configuration file's text: TOML when the name ends in `.toml`, YAML otherwise.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let parsed = if is_toml {
        toml::from_str::<FileConfig>(text).map_err(|e| e.to_string())
    } else if text.trim().is_empty() {
        Ok(FileConfig::default())
    } else {
        serde_yaml_ng::from_str::<FileConfig>(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Reads the file (if any), applies the environment over it, then the defaults.
pub fn load(src: &Sources) -> Result<AgentConfig, ConfigError> {
    let path = src.config_file();
    let mut file = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            parse_file(p, &text)?
        }
        None => FileConfig::default(),
    };
    apply_env(&mut file, src)?;
    let relative_to = path
        .as_ref()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| src.cwd.clone());
    resolve(file, path, &relative_to, src)
}

fn set_string(slot: &mut Option<String>, src: &Sources, name: &str) {
    if let Some(v) = src.var(name) {
        *slot = Some(v.to_string());
    }
}

fn set_path(slot: &mut Option<PathBuf>, src: &Sources, name: &str) {
    if let Some(v) = src.var(name) {
        *slot = Some(PathBuf::from(v));
    }
}

fn parse_env<T: std::str::FromStr>(src: &Sources, name: &str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    src.var(name)
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| ConfigError::Env {
                name: name.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()
}

/// The environment wins over the file, key by key.
pub fn apply_env(f: &mut FileConfig, src: &Sources) -> Result<(), ConfigError> {
    const P: &str = "AGENTID_AGENT_";
    let n = |k: &str| format!("{P}{k}");
    set_string(&mut f.authority, src, &n("AUTHORITY"));
    set_string(&mut f.tenant, src, &n("TENANT"));
    set_string(&mut f.client_id, src, &n("CLIENT_ID"));
    set_string(&mut f.blueprint, src, &n("BLUEPRINT"));
    set_string(&mut f.agent_id, src, &n("AGENT_ID"));
    set_string(&mut f.autonomous_agent_id, src, &n("AUTONOMOUS_AGENT_ID"));
    if let Some(m) = parse_env::<TokenMode>(src, &n("TOKENS"))? {
        f.tokens = Some(m);
    }
    set_string(&mut f.sidecar_url, src, &n("SIDECAR_URL"));
    set_string(&mut f.blueprint_secret, src, &n("BLUEPRINT_SECRET"));
    set_path(&mut f.certificate_file, src, &n("CERTIFICATE_FILE"));
    set_path(&mut f.certificate_key_file, src, &n("CERTIFICATE_KEY_FILE"));
    set_path(&mut f.federated_token_file, src, &n("FEDERATED_TOKEN_FILE"));
    set_path(&mut f.ca_file, src, "AGENTID_CA_FILE");
    set_path(&mut f.ca_file, src, &n("CA_FILE"));
    set_path(&mut f.token_cache, src, &n("TOKEN_CACHE"));
    if let Some(m) = parse_env::<u32>(src, &n("MAX_ITERATIONS"))? {
        f.max_iterations = Some(m);
    }
    set_string(&mut f.username, src, &n("USERNAME"));
    set_string(&mut f.system_prompt, src, &n("SYSTEM_PROMPT"));

    let llm_keys = [
        "LLM_KIND",
        "LLM_BASE_URL",
        "LLM_DEPLOYMENT",
        "LLM_API_VERSION",
        "LLM_MODEL",
        "LLM_AUTH",
        "LLM_API_KEY",
        "LLM_API",
        "LLM_SCOPE",
    ];
    if llm_keys.iter().any(|k| src.var(&n(k)).is_some()) {
        let llm = f.llm.get_or_insert_with(LlmFile::default);
        if let Some(k) = src.var(&n("LLM_KIND")) {
            llm.kind = Some(match k.to_ascii_lowercase().as_str() {
                "openai" => LlmKind::Openai,
                "azure" => LlmKind::Azure,
                other => {
                    return Err(ConfigError::Env {
                        name: n("LLM_KIND"),
                        message: format!("`{other}` is neither `openai` nor `azure`"),
                    });
                }
            });
        }
        if let Some(k) = src.var(&n("LLM_AUTH")) {
            llm.auth = Some(match k.to_ascii_lowercase().as_str() {
                "agenttoken" | "agent-token" | "token" => LlmAuth::AgentToken,
                "apikey" | "api-key" => LlmAuth::ApiKey,
                "none" => LlmAuth::None,
                other => {
                    return Err(ConfigError::Env {
                        name: n("LLM_AUTH"),
                        message: format!("`{other}` is not agentToken, apiKey or none"),
                    });
                }
            });
        }
        set_string(&mut llm.base_url, src, &n("LLM_BASE_URL"));
        set_string(&mut llm.deployment, src, &n("LLM_DEPLOYMENT"));
        set_string(&mut llm.api_version, src, &n("LLM_API_VERSION"));
        set_string(&mut llm.model, src, &n("LLM_MODEL"));
        set_string(&mut llm.api_key, src, &n("LLM_API_KEY"));
        set_string(&mut llm.api, src, &n("LLM_API"));
        set_string(&mut llm.scope, src, &n("LLM_SCOPE"));
    }
    // One variable names the whole server list: `name=url[,name=url…]` (or a bare URL).
    if let Some(v) = src.var(&n("MCP")) {
        let mut list = Vec::new();
        for (i, item) in v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let (name, url) = match item.split_once('=') {
                Some((a, b)) if !a.contains("://") => (a.trim().to_string(), b.trim().to_string()),
                _ => (
                    format!("mcp{}", if i == 0 { String::new() } else { i.to_string() }),
                    item.to_string(),
                ),
            };
            list.push(McpFile {
                name,
                url,
                api: src.var(&n("MCP_API")).map(str::to_string),
                scope: src.var(&n("MCP_SCOPE")).map(str::to_string),
            });
        }
        f.mcp = Some(list);
    }
    Ok(())
}

fn absolutize(p: Option<PathBuf>, base: &Path) -> Option<PathBuf> {
    p.map(|p| if p.is_relative() { base.join(p) } else { p })
}

fn resolve(
    f: FileConfig,
    source: Option<PathBuf>,
    base: &Path,
    src: &Sources,
) -> Result<AgentConfig, ConfigError> {
    let authority = f
        .authority
        .ok_or_else(|| ConfigError::Missing("`authority` (AGENTID_AGENT_AUTHORITY)".into()))?;
    url::Url::parse(&authority)
        .map_err(|e| ConfigError::Invalid(format!("authority `{authority}`: {e}")))?;
    let llm = match f.llm {
        None => None,
        Some(l) => {
            let kind = l.kind.unwrap_or_default();
            let base_url = l.base_url.ok_or_else(|| {
                ConfigError::Missing("`llm.baseUrl` (AGENTID_AGENT_LLM_BASE_URL)".into())
            })?;
            if kind == LlmKind::Azure && l.deployment.is_none() {
                return Err(ConfigError::Missing(
                    "`llm.deployment` is needed for the Azure OpenAI form".into(),
                ));
            }
            let auth = l.auth.unwrap_or(if l.api_key.is_some() {
                LlmAuth::ApiKey
            } else {
                LlmAuth::AgentToken
            });
            if auth == LlmAuth::ApiKey && l.api_key.is_none() {
                return Err(ConfigError::Missing(
                    "`llm.apiKey` (AGENTID_AGENT_LLM_API_KEY) for `auth: apiKey`".into(),
                ));
            }
            Some(LlmConfig {
                kind,
                base_url: base_url.trim_end_matches('/').to_string(),
                model: l
                    .model
                    .or_else(|| l.deployment.clone())
                    .unwrap_or_else(|| "gpt-4o".into()),
                deployment: l.deployment,
                api_version: l.api_version.unwrap_or_else(|| "2024-10-21".into()),
                auth,
                api_key: l.api_key,
                api: l.api.unwrap_or_else(|| "openai".into()),
                scope: l.scope.unwrap_or_else(|| COGNITIVE_SERVICES_SCOPE.into()),
            })
        }
    };
    let mut mcp = Vec::new();
    for m in f.mcp.unwrap_or_default() {
        if mcp.iter().any(|x: &McpConfig| x.name == m.name) {
            return Err(ConfigError::Invalid(format!(
                "two MCP servers are named `{}`",
                m.name
            )));
        }
        mcp.push(McpConfig {
            name: m.name,
            url: m.url,
            api: m.api.unwrap_or_else(|| "mcp".into()),
            scope: m.scope,
        });
    }
    // The token cache lives next to the state the file came from, else in ~/.agentid.
    let token_cache = match absolutize(f.token_cache, base) {
        Some(p) => p,
        None => match (&source, src.var("AGENTID_HOME")) {
            (Some(_), _) => base.join("agent-tokens.json"),
            (None, Some(h)) => PathBuf::from(h).join("agent-tokens.json"),
            (None, None) => src
                .home
                .clone()
                .unwrap_or_else(|| src.cwd.clone())
                .join(".agentid")
                .join("agent-tokens.json"),
        },
    };
    Ok(AgentConfig {
        source,
        authority,
        tenant: f.tenant,
        client_id: f.client_id.unwrap_or_else(|| DEFAULT_CLIENT_ID.into()),
        blueprint: f.blueprint,
        agent_id: f.agent_id,
        autonomous_agent_id: f.autonomous_agent_id,
        tokens: f.tokens.unwrap_or_default(),
        sidecar_url: f
            .sidecar_url
            .unwrap_or_else(|| "http://127.0.0.1:5000".into())
            .trim_end_matches('/')
            .to_string(),
        blueprint_secret: f.blueprint_secret,
        certificate_file: absolutize(f.certificate_file, base),
        certificate_key_file: absolutize(f.certificate_key_file, base),
        federated_token_file: absolutize(f.federated_token_file, base),
        llm,
        mcp,
        ca_file: absolutize(f.ca_file, base),
        token_cache,
        max_iterations: f.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS).max(1),
        username: f.username,
        system_prompt: f.system_prompt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path, env: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: dir.to_path_buf(),
            home: Some(dir.join("home")),
        }
    }

    #[test]
    fn environment_wins_over_the_file_and_up_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".agentid")).unwrap();
        std::fs::write(
            dir.path().join(".agentid/agent.yaml"),
            "authority: https://127.0.0.1:8443\ntenant: t1\nagentId: a\ntokens: direct\nllm: {kind: azure, baseUrl: 'http://x/', deployment: gpt}\nmcp: [{name: gw, url: 'http://g/mcp', scope: 'api://m/.default'}]\nblueprintSecret: s3cret\n",
        )
        .unwrap();
        let cfg = load(&sources(
            dir.path(),
            &[
                ("AGENTID_AGENT_TENANT", "t2"),
                ("AGENTID_AGENT_TOKENS", "sidecar"),
            ],
        ))
        .unwrap();
        assert_eq!(cfg.tenant.as_deref(), Some("t2"));
        assert_eq!(cfg.tokens, TokenMode::Sidecar);
        assert_eq!(
            cfg.token_endpoint(),
            "https://127.0.0.1:8443/t2/oauth2/v2.0/token"
        );
        assert_eq!(
            cfg.token_cache,
            dir.path().join(".agentid/agent-tokens.json")
        );
        let llm = cfg.llm.as_ref().unwrap();
        assert_eq!(
            (llm.kind, llm.base_url.as_str(), llm.model.as_str()),
            (LlmKind::Azure, "http://x", "gpt")
        );
        assert_eq!(cfg.mcp[0].api, "mcp");
        let shown = cfg.to_redacted_yaml();
        assert!(
            !shown.contains("s3cret") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn toml_and_unknown_keys() {
        let p = Path::new("a.toml");
        let f = parse_file(
            p,
            "authority = \"https://x\"\n[llm]\nbaseUrl = \"http://m\"\n",
        )
        .unwrap();
        assert_eq!(f.llm.unwrap().base_url.as_deref(), Some("http://m"));
        let err = parse_file(Path::new("a.yaml"), "authorty: x\n").unwrap_err();
        assert!(err.to_string().contains("authorty"), "{err}");
    }

    #[test]
    fn no_file_defaults_to_home_cache_and_env_mcp_list() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load(&sources(
            dir.path(),
            &[
                ("AGENTID_AGENT_AUTHORITY", "https://login.example/t"),
                ("AGENTID_AGENT_MCP", "a=http://a/mcp, b=http://b/mcp"),
                ("AGENTID_AGENT_MAX_ITERATIONS", "3"),
            ],
        ))
        .unwrap();
        assert_eq!(
            cfg.token_cache,
            dir.path().join("home/.agentid/agent-tokens.json")
        );
        assert_eq!(cfg.mcp.len(), 2);
        assert_eq!(
            (cfg.mcp[1].name.as_str(), cfg.mcp[1].url.as_str()),
            ("b", "http://b/mcp")
        );
        assert_eq!(cfg.max_iterations, 3);
        assert_eq!(cfg.client_id, DEFAULT_CLIENT_ID);
        let bad = load(&sources(
            dir.path(),
            &[
                ("AGENTID_AGENT_AUTHORITY", "https://x"),
                ("AGENTID_AGENT_TOKENS", "magic"),
            ],
        ));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("AGENTID_AGENT_TOKENS")
        );
    }
}
