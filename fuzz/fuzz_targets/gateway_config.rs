//! The gateway's AgentGateway-shaped config file (the strict serde layer).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = agentid_gateway::config::parse(text);
    }
});
