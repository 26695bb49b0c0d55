//! Building the agent's parts from an [`AgentConfig`].

use crate::agent::Agent;
use crate::config::{AgentConfig, ConfigError, TokenMode};
use crate::http::HttpError;
use crate::llm::LlmClient;
use crate::mcp::{McpServer, ServerSpec, Toolbox};
use crate::signin::{SignInError, SignInSettings, UserSession};
use crate::tokens::{Api, BlueprintCredential, DirectProvider, SidecarProvider, TokenProvider};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    SignIn(#[from] SignInError),
    #[error("{0}")]
    Credential(String),
}

/// How the user is signed in when no valid sign-in is cached.
#[derive(Debug, Clone, Default)]
pub struct SignInOptions {
    /// Ignore (and delete) the cached sign-in.
    pub force_login: bool,
    /// Password grant instead of device code (scripts and tests).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Never start an interactive sign-in; fail with "not signed in" instead.
    pub no_prompt: bool,
}

/// The user's token source for this configuration (nothing is fetched yet).
pub fn session(cfg: &AgentConfig) -> Result<Arc<UserSession>, SetupError> {
    let http = crate::http::client(cfg.ca_file.as_deref())?;
    Ok(Arc::new(UserSession::new(
        http,
        SignInSettings {
            token_endpoint: cfg.token_endpoint(),
            device_endpoint: cfg.device_endpoint(),
            client_id: cfg.client_id.clone(),
            scope: cfg.user_scope()?,
            cache_file: cfg.token_cache.clone(),
        },
    )))
}

/// Makes sure the user is signed in: cached or refreshed silently, else the password grant
/// (when a username and password are given), else the device-code flow, whose instructions
/// go to `out` (stderr in the CLI).
pub async fn sign_in(
    user: &UserSession,
    opts: &SignInOptions,
    out: &mut (dyn std::io::Write + Send),
) -> Result<String, SetupError> {
    if opts.force_login {
        user.reset().await;
        user.forget()?;
    } else {
        match user.token().await {
            Ok(t) => return Ok(t),
            Err(SignInError::NotSignedIn) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let (Some(u), Some(p)) = (&opts.username, &opts.password) {
        return Ok(user.login_password(u, p).await?);
    }
    if opts.no_prompt {
        return Err(SignInError::NotSignedIn.into());
    }
    let code = user.start_device().await?;
    let _ = writeln!(
        out,
        "To sign in, open {} and enter the code {}",
        code.verification_uri, code.user_code
    );
    if let Some(c) = &code.verification_uri_complete {
        let _ = writeln!(out, "(or open {c})");
    }
    let _ = out.flush();
    Ok(user.poll_device(&code).await?)
}

/// The blueprint credential for direct mode, from the configuration.
pub fn blueprint_credential(cfg: &AgentConfig) -> Result<BlueprintCredential, SetupError> {
    if let Some(s) = &cfg.blueprint_secret {
        return Ok(BlueprintCredential::Secret(s.clone()));
    }
    if let Some(cert) = &cfg.certificate_file {
        let key = cfg.certificate_key_file.as_ref().unwrap_or(cert);
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map_err(|e| SetupError::Credential(format!("cannot read {}: {e}", p.display())))
        };
        return Ok(BlueprintCredential::Certificate {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        });
    }
    if let Some(f) = &cfg.federated_token_file {
        return Ok(BlueprintCredential::FederatedTokenFile(f.clone()));
    }
    Err(SetupError::Credential(
        "direct mode needs a blueprint credential: blueprintSecret, certificateFile or federatedTokenFile".into(),
    ))
}

/// The token provider for the configured (or overridden) mode. `user` None = autonomous.
pub fn provider(
    cfg: &AgentConfig,
    mode: TokenMode,
    user: Option<Arc<UserSession>>,
) -> Result<Arc<dyn TokenProvider>, SetupError> {
    let http = crate::http::client(cfg.ca_file.as_deref())?;
    let agent = cfg.agent_for(user.is_none())?;
    Ok(match mode {
        TokenMode::Sidecar => Arc::new(SidecarProvider::new(http, &cfg.sidecar_url, &agent, user)),
        TokenMode::Direct => {
            let bp = cfg.blueprint.as_deref().ok_or_else(|| {
                ConfigError::Missing("`blueprint` is needed for direct mode".into())
            })?;
            Arc::new(DirectProvider::new(
                http,
                &cfg.token_endpoint(),
                bp,
                blueprint_credential(cfg)?,
                &agent,
                user,
            ))
        }
    })
}

/// The configured MCP servers (not yet connected).
pub fn mcp_servers(
    cfg: &AgentConfig,
    tokens: &Arc<dyn TokenProvider>,
) -> Result<Vec<Arc<McpServer>>, SetupError> {
    let http = crate::http::mcp_client(cfg.ca_file.as_deref())?;
    Ok(cfg
        .mcp
        .iter()
        .map(|m| {
            Arc::new(McpServer::new(
                ServerSpec {
                    name: m.name.clone(),
                    url: m.url.clone(),
                    api: Api {
                        name: m.api.clone(),
                        scope: m.scope.clone(),
                    },
                },
                http.clone(),
                tokens.clone(),
            ))
        })
        .collect())
}

/// The agent: MCP tools discovered (unreachable servers recorded and skipped), model client.
pub async fn agent(cfg: &AgentConfig, tokens: Arc<dyn TokenProvider>) -> Result<Agent, SetupError> {
    let servers = mcp_servers(cfg, &tokens)?;
    let toolbox = Toolbox::discover(servers).await;
    let llm = match &cfg.llm {
        Some(l) => Some(LlmClient::new(
            crate::http::client(cfg.ca_file.as_deref())?,
            l.clone(),
        )),
        None => None,
    };
    Ok(Agent::new(
        tokens,
        llm,
        toolbox,
        cfg.max_iterations,
        cfg.system_prompt.clone(),
    ))
}
