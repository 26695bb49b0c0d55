//! A compact JWS from arbitrary bytes: parsing must return a value or a `JwtError`, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = agentid_claims::UnverifiedJwt::parse(text);
    }
});
