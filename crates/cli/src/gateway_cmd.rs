//! `agentid gateway`: the identity-aware LLM/MCP gateway (gateway.md §1).

use agentid_gateway::config::{self, ValidateContext};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct GatewayArgs {
    /// Config file (YAML or JSON, AgentGateway's format); watched and hot-reloaded.
    #[arg(short = 'f', long = "file", conflicts_with = "config")]
    file: Option<PathBuf>,
    /// Inline config text (no reload).
    #[arg(short = 'c', long = "config")]
    config: Option<String>,
    /// Parse, validate and compile the config, print `config OK` or the error, and exit.
    #[arg(long)]
    validate_only: bool,
    /// Print the normalized config as JSON (secrets redacted) and exit.
    #[arg(long)]
    print_effective: bool,
    /// A private CA added to the system roots for upstreams and JWKS fetches (repeatable).
    #[arg(long = "ca-file", env = "AGENTID_CA_FILE")]
    ca_file: Vec<PathBuf>,
}

/// Exit codes: 0 clean shutdown, 1 invalid config or bind error, 2 usage error.
pub fn run(args: GatewayArgs) -> i32 {
    let source = match (&args.file, &args.config) {
        (Some(f), None) => agentid_gateway::Source::File(f.clone()),
        (None, Some(c)) => agentid_gateway::Source::Inline(c.clone()),
        _ => {
            eprintln!("agentid gateway: give the config with -f FILE or -c TEXT");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentid gateway: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        if args.validate_only || args.print_effective {
            // Compiling never fetches JWKS: the registry is not started.
            let ctx = ValidateContext {
                jwks: agentid_gateway::serve::jwks_registry(&default_jwt(), &args.ca_file),
            };
            let loaded = match &source {
                agentid_gateway::Source::File(f) => config::load_file(f, &ctx),
                agentid_gateway::Source::Inline(t) => config::load_str(t, std::path::Path::new("."), &ctx),
            };
            return match loaded {
                Ok(snap) => {
                    if args.print_effective {
                        println!("{}", serde_json::to_string_pretty(&snap.effective).unwrap_or_default());
                    } else {
                        println!("config OK");
                    }
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            };
        }
        let running = match agentid_gateway::start(agentid_gateway::Options {
            source,
            extra_roots: args.ca_file.clone(),
            ephemeral_ports: false,
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("agentid gateway: {e}");
                return 1;
            }
        };
        let mut ports: Vec<_> = running.binds.iter().collect();
        ports.sort();
        for (port, addr) in ports {
            tracing::info!("gateway bind {port} listening on {addr}");
        }
        if let Some(a) = running.admin {
            tracing::info!("admin (config_dump, audit/events) on http://{a}");
        }
        let deadline = running.gateway.snapshot().static_cfg.termination_deadline;
        shutdown_signal().await;
        tracing::info!("shutting down: draining for up to {}s", deadline.as_secs());
        running.shutdown(deadline).await;
        0
    })
}

fn default_jwt() -> agentid_gateway::jwt::JwtSettings {
    agentid_gateway::jwt::JwtSettings {
        clock_skew: Duration::from_secs(60),
        jwks_refresh_interval: Duration::from_secs(3600),
        jwks_min_refresh_interval: Duration::from_secs(30),
        jwks_fetch_timeout: Duration::from_secs(5),
        verified_token_cache_size: 10_000,
    }
}

pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
