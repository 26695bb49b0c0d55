//! Shipping the gateway's audit events to the STS (docs/audit.md §6): the gateway's own
//! application in the tenant, allowed to write audit events, and the `agentid.audit.ship` block.

use agentid_testkit::TestSts;

pub const GW: &str = "6f1c2b8e-3d4a-4f5b-9c6d-7e8f9a0b1c2d";
pub const GW_SECRET: &str = "gateway-secret-for-tests";

/// The tenant YAML with the gateway's application and its `AuditEvents.Write` role.
pub fn with_gateway_app(yaml: String) -> String {
    yaml.replacen(
        "applications:\n",
        &format!("applications:\n  - name: gw\n    appId: {GW}\n    secrets: [{{value: {GW_SECRET}}}]\n"),
        1,
    )
    .replace(
        "\nappRoleAssignments:",
        "\nappRoleAssignments:\n  - principal: gw\n    resource: graph\n    role: AuditEvents.Write",
    )
}

/// `agentid.audit.ship` (indented for `agentid.audit`), spooling in `spool`.
pub fn ship_block(sts: &TestSts, spool: &std::path::Path) -> String {
    format!(
        "    ship:\n      tokenEndpoint: {base}/{tid}/oauth2/v2.0/token\n      clientId: {GW}\n      \
         clientSecret: {GW_SECRET}\n      url: {base}/agentid/v1/auditEvents\n      spoolDir: {spool}\n      \
         flushInterval: 50ms\n",
        base = sts.base(),
        tid = sts.tenant_id,
        spool = spool.display()
    )
}
