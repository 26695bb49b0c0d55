//! Link flags of the `agentid` binary.
//!
//! GNU/Linux: the binary's relative relocations are packed (`DT_RELR`, glibc ≥ 2.36, binutils
//! ≥ 2.38; the release image is Debian 12). A position-independent executable this size has some
//! 120,000 of them: as `Elf64_Rela` entries they take 2.9 MiB that the loader reads at every start,
//! a resident cost of every process — the sidecar beside each agent most of all
//! (docs/performance.md §4.2). Packed, they take a few KiB. Nothing else changes: the same
//! addresses are relocated, address-space layout randomisation stays.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
