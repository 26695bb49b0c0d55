//! `agentid agent`: an AI agent with a real identity.
//!
//! The user signs in (device code; the password grant for scripts and tests), the agent gets
//! agent tokens — through the token sidecar or directly from the blueprint credential (T1 →
//! T2) — and runs an LLM tool loop over MCP tools, each call carrying a token for its own
//! audience. Failures are explained in identity terms.
//!
//! # Configuration file
//!
//! Read from `--config`, else `$AGENTID_HOME/agent.yaml`, else `./.agentid/agent.yaml` (the
//! file `agentid up` writes). YAML, or TOML when the name ends in `.toml`. Every key is
//! optional in the file; `AGENTID_AGENT_*` environment variables override it key by key.
//! Relative paths are relative to the file's directory.
//!
//! ```yaml
//! authority: https://127.0.0.1:8443          # AGENTID_AGENT_AUTHORITY (host; or host/tenant without `tenant`)
//! tenant: 5e7d8166-7876-4755-a1a4-b476d4a344f6 # AGENTID_AGENT_TENANT
//! clientId: 14d82eec-204b-4c2f-b7e8-296a70dab67e # AGENTID_AGENT_CLIENT_ID (public client for sign-in)
//! blueprint: 85075aa5-1d73-42de-812a-95348218e4b2 # AGENTID_AGENT_BLUEPRINT (user token is for api://{blueprint})
//! agentId: f3897825-fd03-45f5-90eb-fdbf26135650  # AGENTID_AGENT_AGENT_ID
//! autonomousAgentId: …                          # AGENTID_AGENT_AUTONOMOUS_AGENT_ID (--autonomous; default agentId)
//! tokens: sidecar                               # AGENTID_AGENT_TOKENS: sidecar | direct
//! sidecarUrl: http://127.0.0.1:5000             # AGENTID_AGENT_SIDECAR_URL
//! # direct mode: one blueprint credential
//! blueprintSecret: …                            # AGENTID_AGENT_BLUEPRINT_SECRET
//! certificateFile: bp.pem                       # AGENTID_AGENT_CERTIFICATE_FILE (+ certificateKeyFile)
//! federatedTokenFile: workload-token            # AGENTID_AGENT_FEDERATED_TOKEN_FILE
//! llm:
//!   kind: openai                                # AGENTID_AGENT_LLM_KIND: openai | azure
//!   baseUrl: http://127.0.0.1:3000/llm/v1       # AGENTID_AGENT_LLM_BASE_URL ({base}/chat/completions)
//!   deployment: gpt-4o                          # azure: {base}/openai/deployments/{deployment}/chat/completions
//!   apiVersion: 2024-10-21                      # azure
//!   model: agentid-offline                      # openai form (default: deployment, else gpt-4o)
//!   auth: agentToken                            # agentToken | apiKey | none
//!   apiKey: …                                   # AGENTID_AGENT_LLM_API_KEY
//!   api: openai                                 # sidecar API name of the model's token
//!   scope: https://cognitiveservices.azure.com/.default # direct-mode scope of the model's token
//! mcp:                                          # AGENTID_AGENT_MCP="name=url,name=url" replaces the list
//!   - name: gateway
//!     url: http://127.0.0.1:3000/mcp
//!     api: mcp                                  # sidecar API name (AGENTID_AGENT_MCP_API)
//!     scope: api://ec791040-…/.default          # direct-mode scope (AGENTID_AGENT_MCP_SCOPE)
//! caFile: ca.pem                                # AGENTID_AGENT_CA_FILE or AGENTID_CA_FILE
//! tokenCache: agent-tokens.json                 # AGENTID_AGENT_TOKEN_CACHE (default next to the file, else ~/.agentid/)
//! maxIterations: 8                              # AGENTID_AGENT_MAX_ITERATIONS
//! username: demo@agentid.local                  # AGENTID_AGENT_USERNAME (+ AGENTID_AGENT_PASSWORD: password grant)
//! systemPrompt: You are a helpful agent.        # AGENTID_AGENT_SYSTEM_PROMPT
//! ```
//!
//! # Entry points
//!
//! [`cli::AgentArgs`] and [`cli::run`] are the whole `agentid agent` command; the pieces
//! ([`setup::session`], [`setup::provider`], [`setup::agent`], [`agent::Agent::ask`]) are
//! public for tests and for `agentid up --demo`.

pub mod agent;
pub mod cli;
pub mod config;
pub mod explain;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod names;
pub mod setup;
pub mod signin;
pub mod tokens;

pub use agent::{Agent, AgentError, Event};
pub use config::{AgentConfig, FileConfig, Sources, TokenMode};
pub use tokens::{AgentToken, Api, TokenProvider};
