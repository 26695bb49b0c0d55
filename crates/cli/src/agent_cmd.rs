//! `agentid agent`: the command lives in the agentid-agent crate; this only reports errors.

/// Runs `agentid agent …`; logs (AGENTID_LOG) go to stderr so `ask` keeps stdout for the answer.
pub async fn run(args: agentid_agent::cli::AgentArgs) -> anyhow::Result<()> {
    let filter = std::env::var("AGENTID_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
    agentid_agent::cli::run(args).await?;
    Ok(())
}
