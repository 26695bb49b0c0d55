//! A tenant file's YAML, parsed and validated (no database involved).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = agentid_directory::tenant_file::TenantFile::parse(text, std::path::Path::new("."));
    }
});
