//! `agentid demo model` and `agentid demo mcp`: the demo services as standalone processes.

use agentid_demo::{McpSettings, ModelSettings, RunningServer, TokenCheck};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DemoCommand {
    /// The offline OpenAI-compatible model (agentid-offline), for demos without internet or keys.
    Model(ModelArgs),
    /// The demo MCP server: whoami, get_my_profile (on-behalf-of to Graph), add_note, list_notes.
    Mcp(McpArgs),
}

#[derive(Args)]
pub struct ModelArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8002")]
    listen: SocketAddr,
    /// Authority whose tokens are accepted, e.g. https://127.0.0.1:8443/{tenant}.
    #[arg(long, required_unless_present = "no_auth", conflicts_with = "no_auth")]
    authority: Option<String>,
    /// Audience the bearer token must carry.
    #[arg(long, default_value = "https://cognitiveservices.azure.com")]
    audience: String,
    /// Exact issuer to accept (default: the authority's v1 issuer, from its metadata).
    #[arg(long)]
    issuer: Option<String>,
    /// PEM CA certificate trusted in addition to the built-in roots (the STS's `ca.pem`).
    #[arg(long, env = "AGENTID_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Serve without checking bearer tokens.
    #[arg(long)]
    no_auth: bool,
}

#[derive(Args)]
pub struct McpArgs {
    /// Address to listen on; the MCP endpoint is /mcp.
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Authority whose tokens are accepted and that performs the on-behalf-of exchange.
    #[arg(long)]
    authority: String,
    /// The MCP server's application (client) id.
    #[arg(long)]
    client_id: String,
    /// File holding the MCP server's client secret (for its on-behalf-of exchange).
    #[arg(long)]
    client_secret_file: PathBuf,
    /// Audience the bearer token must carry (default: api://{client-id}).
    #[arg(long)]
    audience: Option<String>,
    /// Exact issuer to accept (default: the authority's v1 issuer, from its metadata).
    #[arg(long)]
    issuer: Option<String>,
    /// Base URL of Graph (default: the authority's scheme, host and port, as agentid serves it).
    #[arg(long)]
    graph_base: Option<String>,
    /// PEM CA certificate trusted in addition to the built-in roots (the STS's `ca.pem`).
    #[arg(long, env = "AGENTID_CA_FILE")]
    ca_file: Option<PathBuf>,
}

fn read_ca(path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the CA file {}", p.display()))
        })
        .transpose()
}

async fn check(
    authority: &str,
    audience: String,
    issuer: Option<String>,
    ca_pem: Option<String>,
) -> anyhow::Result<(TokenCheck, String)> {
    let d = agentid_demo::discover(authority, ca_pem.as_deref()).await?;
    Ok((
        TokenCheck {
            jwks_url: d.jwks_url,
            issuer: issuer.unwrap_or(d.issuer),
            audience,
            ca_pem,
        },
        d.token_endpoint,
    ))
}

/// A busy port is the common start-up failure: say which flag changes it.
fn start_error(e: agentid_demo::DemoError) -> anyhow::Error {
    match e {
        agentid_demo::DemoError::Bind { .. } => {
            anyhow::anyhow!("{e} (use --listen to pick another address)")
        }
        e => e.into(),
    }
}

async fn run_until_ctrl_c(server: RunningServer) -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping");
    server.shutdown().await;
    Ok(())
}

pub async fn run(cmd: DemoCommand) -> anyhow::Result<()> {
    match cmd {
        DemoCommand::Model(a) => {
            let check = match &a.authority {
                Some(auth) if !a.no_auth => {
                    let ca = read_ca(&a.ca_file)?;
                    Some(
                        check(auth, a.audience.clone(), a.issuer.clone(), ca)
                            .await?
                            .0,
                    )
                }
                _ => None,
            };
            let described = match &check {
                Some(c) => format!("tokens from {} for {}", c.issuer, c.audience),
                None => "no bearer check".to_string(),
            };
            let server = agentid_demo::start_model(ModelSettings {
                listen: a.listen,
                check,
            })
            .await
            .map_err(start_error)?;
            println!(
                "agentid-offline model: {}/v1 (OpenAI) and {}/openai/deployments/<any>/chat/completions (Azure OpenAI); {described}",
                server.base_url(),
                server.base_url()
            );
            run_until_ctrl_c(server).await
        }
        DemoCommand::Mcp(a) => {
            let ca = read_ca(&a.ca_file)?;
            let secret = std::fs::read_to_string(&a.client_secret_file)
                .with_context(|| {
                    format!(
                        "reading the client secret file {}",
                        a.client_secret_file.display()
                    )
                })?
                .trim()
                .to_string();
            anyhow::ensure!(
                !secret.is_empty(),
                "the client secret file {} is empty",
                a.client_secret_file.display()
            );
            let audience = a
                .audience
                .clone()
                .unwrap_or_else(|| format!("api://{}", a.client_id));
            let (check, token_endpoint) =
                check(&a.authority, audience, a.issuer.clone(), ca.clone()).await?;
            let graph_base = match a.graph_base.clone() {
                Some(g) => g,
                None => {
                    let u = url::Url::parse(&a.authority).context("--authority is not a URL")?;
                    u.origin().ascii_serialization()
                }
            };
            let described = format!("tokens from {} for {}", check.issuer, check.audience);
            let server = agentid_demo::start_mcp(McpSettings {
                listen: a.listen,
                check,
                token_endpoint,
                graph_base,
                client_id: a.client_id.clone(),
                client_secret: secret,
                ca_pem: ca,
            })
            .await
            .map_err(start_error)?;
            println!(
                "agentid demo MCP server: {}/mcp (streamable HTTP); {described}",
                server.base_url()
            );
            run_until_ctrl_c(server).await
        }
    }
}
