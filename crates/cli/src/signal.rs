//! The one shutdown signal of every long-running command: SIGTERM (what Kubernetes sends a
//! pod's containers) or Ctrl-C. What follows it is the part's drain (docs/architecture.md §7).

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn terminate() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
