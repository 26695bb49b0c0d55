//! Example files compiled into the binary, so the bench commands need no files on disk.

/// `examples/demo-tenant.yaml`: the guide's Contoso tenant.
pub const DEMO_TENANT: &str = include_str!("../../../examples/demo-tenant.yaml");
