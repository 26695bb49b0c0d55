//! `agentid`: one binary for every part of agentid.

mod admin;
mod agent_cmd;
mod bench;
mod bench_tools;
mod decode;
mod demo_cmd;
mod examples;
mod gateway_bench;
mod gateway_cmd;
mod init;
mod operator_cmd;
mod sidecar_bench;
mod sidecar_cmd;
mod signal;
mod sts_cmd;
mod sts_peers;
mod up;

use clap::{Parser, Subcommand};

/// With the `mimalloc` feature, mimalloc: cheap allocation, but the most resident memory
/// (docs/performance.md §6).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With the `jemalloc` feature (the default) and not `mimalloc`, jemalloc: allocation about as
/// cheap as mimalloc's, resident memory close to the system allocator's (docs/performance.md §6).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once when it starts (`_RJEM_MALLOC_CONF` in the environment
/// overrides them): a background thread returns freed pages to the system within a second
/// (`dirty_decay_ms`) instead of on later allocations, and they are released at once
/// (`muzzy_decay_ms:0`, `MADV_DONTNEED`), so memory freed after a burst leaves the resident set.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

#[derive(Parser)]
#[command(
    name = "agentid",
    version,
    about = "Identity for AI agents: an Entra-compatible token service and its tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on one machine: STS, gateway, sidecar, demo MCP server and offline model.
    Up(up::UpArgs),
    /// The token service.
    Sts {
        #[command(subcommand)]
        command: Box<sts_cmd::StsCommand>,
    },
    /// Manage blueprints, agent identities, federated credentials and consents (agentid or Entra).
    Admin(admin::AdminArgs),
    #[command(version, about = sidecar_cmd::ABOUT)]
    Sidecar(sidecar_cmd::SidecarArgs),
    /// The identity-aware gateway for agents' LLM and MCP traffic (AgentGateway's config format).
    Gateway(gateway_cmd::GatewayArgs),
    /// An AI agent with a real identity: sign in, chat, ask, show its tokens.
    Agent(agentid_agent::cli::AgentArgs),
    /// The demo services: the offline model and the demo MCP server.
    Demo {
        #[command(subcommand)]
        command: demo_cmd::DemoCommand,
    },
    /// The Kubernetes operator: blueprints and agents as resources, the sidecar injected.
    Operator {
        #[command(subcommand)]
        command: operator_cmd::OperatorCommand,
    },
    /// Work with tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// `agentid sidecar …` alone: the same arguments as through [`Cli`], without the other commands.
#[derive(Parser)]
#[command(name = "agentid", version)]
struct SidecarCli {
    #[command(subcommand)]
    command: SidecarOnly,
}

#[derive(Subcommand)]
enum SidecarOnly {
    #[command(version, about = sidecar_cmd::ABOUT)]
    Sidecar(sidecar_cmd::SidecarArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Show a token's header and claims and explain who it is for and who acts (no verification).
    Decode(decode::DecodeArgs),
}

/// Logs go to stderr; audit events (target `audit`) are one JSON line each on stdout.
fn init_tracing(default: &str) {
    use tracing_subscriber::filter::{EnvFilter, filter_fn};
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_env("AGENTID_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|m| m.target() != "audit"));
    let audit = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_filter(filter_fn(|m| m.target() == "audit"));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(audit)
        .init();
}

fn main() -> anyhow::Result<()> {
    // The sidecar runs beside every agent: it parses its own arguments only, so that start-up
    // does not build (and fault in the code of) every other command's arguments
    // (docs/performance.md §4.2).
    if std::env::args_os().nth(1).is_some_and(|a| a == "sidecar") {
        let SidecarOnly::Sidecar(args) = SidecarCli::parse().command;
        std::process::exit(sidecar_cmd::run(args));
    }
    let cli = Cli::parse();
    match cli.command {
        // Exit codes matter here: 2 is a configuration error (docs/sidecar.md §12.5).
        Command::Sidecar(args) => std::process::exit(sidecar_cmd::run(args)),
        Command::Token {
            command: TokenCommand::Decode(args),
        } => decode::run(args),
        Command::Admin(args) => runtime()?.block_on(admin::run(args)),
        Command::Operator { command } => {
            init_tracing("info,kube=warn");
            runtime()?.block_on(operator_cmd::run(command))
        }
        Command::Gateway(args) => {
            init_tracing("info");
            std::process::exit(gateway_cmd::run(args))
        }
        Command::Agent(args) => runtime()?.block_on(agent_cmd::run(args)),
        Command::Demo { command } => {
            init_tracing("info");
            runtime()?.block_on(demo_cmd::run(command))
        }
        Command::Up(args) => {
            // One terminal for six parts: warnings only (the gateway's and the STS's audit
            // trails are queryable: /audit/events and `agentid sts audit`).
            init_tracing("warn,audit=off,rmcp=warn");
            runtime()?.block_on(up::run(args))
        }
        Command::Sts { command } => {
            // The benchmark measures the token path, not one stderr line per audit event (nor
            // per wrk connection: wrk sends the IP address as SNI, which rustls warns about).
            init_tracing(if matches!(*command, sts_cmd::StsCommand::Bench(_)) {
                "warn,rustls=error"
            } else {
                "info,sqlx=warn"
            });
            runtime()?.block_on(sts_cmd::run(*command))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
