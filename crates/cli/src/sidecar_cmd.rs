//! `agentid sidecar`: the token sidecar (a thin wrapper over `agentid_sidecar`).

use agentid_sidecar::ConfigSources;
use std::path::PathBuf;

/// What `agentid --help` and `agentid sidecar --help` say the sidecar is.
pub const ABOUT: &str =
    "The token sidecar: the Entra SDK sidecar's HTTP contract, secure by default";

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SidecarArgs {
    #[command(subcommand)]
    command: Option<SidecarCommand>,
    /// JSON config file in the shape of upstream's appsettings.json (default:
    /// $AGENTID_SIDECAR_CONFIG, else ./appsettings.json if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Main listener: http://host:port or unix:/path (default http://127.0.0.1:5000 and [::1]:5000).
    #[arg(long)]
    listen: Option<String>,
    /// Listener for /healthz and /metrics only, or "off" (default http://0.0.0.0:5001).
    #[arg(long = "health-listen")]
    health_listen: Option<String>,
    /// Print the effective configuration (secrets as ***) and exit: 0 if valid, 2 if not.
    #[arg(long)]
    check_config: bool,
}

#[derive(clap::Subcommand)]
enum SidecarCommand {
    /// Exit 0 if GET <url> answers 200 (for exec probes in images without a shell).
    Probe { url: String },
    /// Measure cached /AuthorizationHeader latency, throughput and memory.
    Bench(crate::sidecar_bench::BenchArgs),
}

pub fn run(args: SidecarArgs) -> i32 {
    match args.command {
        Some(SidecarCommand::Probe { url }) => probe(&url),
        Some(SidecarCommand::Bench(b)) => {
            crate::init_tracing("warn");
            match crate::runtime().and_then(|rt| rt.block_on(crate::sidecar_bench::run(b))) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("agentid sidecar bench: {e:#}");
                    1
                }
            }
        }
        None => serve(args),
    }
}

fn serve(args: SidecarArgs) -> i32 {
    let sources = ConfigSources::from_process(args.config, args.listen, args.health_listen);
    let config = match agentid_sidecar::config::load(&sources) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentid sidecar: {e}");
            return 2;
        }
    };
    if args.check_config {
        println!(
            "{}",
            serde_json::to_string_pretty(&config.describe()).unwrap_or_default()
        );
        return 0;
    }
    agentid_sidecar::logging::init(&config);
    agentid_sidecar::logging::config_notes(&config);
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentid sidecar: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let running = match agentid_sidecar::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("agentid sidecar: {e}");
                return 2;
            }
        };
        crate::signal::terminate().await;
        tracing::info!(event = "stopping", "draining");
        running
            .drain(running.state.config.sidecar.drain_timeout)
            .await;
        running.wait().await;
        0
    })
}

fn probe(url: &str) -> i32 {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    let ok = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .ok()?;
        let r = client.get(url).send().await.ok()?;
        Some(r.status() == reqwest::StatusCode::OK)
    });
    if ok == Some(true) { 0 } else { 1 }
}
