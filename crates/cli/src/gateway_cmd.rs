//! `agentid gateway`: the identity-aware LLM/MCP gateway (docs/gateway.md §1).

use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    #[command(subcommand)]
    command: Option<GatewayCommand>,
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
    /// Threads serving the binds, each with its own connections and upstream pool (default: one
    /// per core; 0 serves on one shared work-stealing runtime). docs/gateway.md §1.1.
    #[arg(long, env = "AGENTID_GATEWAY_SERVING_THREADS")]
    serving_threads: Option<usize>,
}

#[derive(clap::Subcommand)]
enum GatewayCommand {
    /// Measure what the gateway adds: throughput ratio, added latency, memory (docs/gateway.md §14, docs/performance.md §2).
    Bench(crate::gateway_bench::BenchArgs),
}

/// Exit codes: 0 clean shutdown, 1 invalid config or bind error, 2 usage error.
pub fn run(args: GatewayArgs) -> i32 {
    if let Some(GatewayCommand::Bench(b)) = args.command {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build();
        return match rt
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(crate::gateway_bench::run(b)))
        {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("agentid gateway bench: {e:#}");
                1
            }
        };
    }
    let source = match (&args.file, &args.config) {
        (Some(f), None) => agentid_gateway::Source::File(f.clone()),
        (None, Some(c)) => agentid_gateway::Source::Inline(c.clone()),
        _ => {
            eprintln!("agentid gateway: give the config with -f FILE or -c TEXT");
            return 2;
        }
    };
    if args.validate_only || args.print_effective {
        // Outside any tokio runtime: compiling starts no JWKS fetch, so this touches no network.
        return match agentid_gateway::serve::load_offline(&source, &args.ca_file) {
            Ok(snap) => {
                if args.print_effective {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&snap.effective).unwrap_or_default()
                    );
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
    let serving_threads = args
        .serving_threads
        .unwrap_or_else(agentid_listener::threads::default_count);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if serving_threads > 0 {
        // The control runtime (admin servers, reload, revocation polls, audit shipping) is
        // light once the binds have threads of their own.
        runtime.worker_threads(1);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentid gateway: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let running = match agentid_gateway::start(agentid_gateway::Options {
            source,
            extra_roots: args.ca_file.clone(),
            ephemeral_ports: false,
            serving_threads,
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
        crate::signal::terminate().await;
        tracing::info!("shutting down: draining for up to {}s", deadline.as_secs());
        running.shutdown(deadline).await;
        0
    })
}
