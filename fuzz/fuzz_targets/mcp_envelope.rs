//! An MCP JSON-RPC request body as the gateway reads it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = agentid_gateway::mcp::envelope::parse(data);
});
