//! Structured logs (docs/sidecar.md §13.2): one JSON object per line (or text), on stderr. Nothing
//! secret is ever passed to a log macro; tokens appear only as `uti` or an 8-hex fingerprint.

use crate::config::{Config, LogFormat};

/// Installs the global subscriber for the `agentid sidecar` process.
pub fn init(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_new(&config.sidecar.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.sidecar.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Logs what configuration loading noticed (after logging is set up).
pub fn config_notes(config: &Config) {
    for (event, message) in &config.warnings {
        tracing::warn!(event = %event, "{message}");
    }
    for key in &config.ignored_keys {
        tracing::debug!(event = "config_key_ignored", key = %key, "configuration key has no effect in agentid-sidecar");
    }
}
