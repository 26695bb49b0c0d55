//! The token endpoint's `application/x-www-form-urlencoded` body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = agentid_sts::form::Form::parse(data);
});
