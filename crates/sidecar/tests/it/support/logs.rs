//! Captured logs: the sidecar's events at every level, as JSON lines, for the whole test
//! binary. Tests look up their own requests by correlation id and scan for secrets (§16.P2).

use std::io::Write;
use std::sync::{Arc, Mutex, Once, OnceLock};

fn buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let buf = buffer().clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "warn,agentid_sidecar=trace",
            ))
            .with_writer(move || Capture(buf.clone()))
            .try_init();
    });
}

pub fn all() -> String {
    String::from_utf8_lossy(&buffer().lock().unwrap()).into_owned()
}

/// Log lines (parsed) that mention `needle` (typically a correlation id).
pub fn lines_with(needle: &str) -> Vec<serde_json::Value> {
    all()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether an event named `event` was logged for correlation id `cid`.
pub fn has_event(cid: &str, event: &str) -> bool {
    lines_with(cid).iter().any(|l| l["event"] == event)
}

/// No secret, assertion, token or file content appears anywhere in the captured logs.
pub fn assert_no_secrets(secrets: &[&str]) {
    let logs = all();
    assert!(!logs.is_empty(), "logs were captured");
    for s in secrets {
        if s.len() < 8 {
            continue;
        }
        assert!(
            !logs.contains(s),
            "a secret ({}…) appears in the logs",
            &s[..8]
        );
        // The signature part of a JWT is unique to it: enough to catch a logged token.
        if let Some(sig) = s
            .rsplit('.')
            .next()
            .filter(|x| x.len() > 20 && s.contains('.'))
        {
            assert!(!logs.contains(sig), "a token signature appears in the logs");
        }
    }
}
