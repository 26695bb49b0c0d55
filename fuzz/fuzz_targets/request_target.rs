//! A request line's path and query, put in the gateway's canonical form (docs/gateway-security.md).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(target) = agentid_gateway::request_path::RequestTarget::parse(text) {
            // The canonical form is a fixed point: parsing it again gives it back.
            let again =
                agentid_gateway::request_path::RequestTarget::parse(&target.path_and_query())
                    .expect("the canonical form parses");
            assert_eq!(again.path_and_query(), target.path_and_query());
        }
    }
});
