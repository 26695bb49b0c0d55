//! The fixed ids of the example tenant files, so tests in every crate name the same objects the
//! same way. `examples/demo-tenant.yaml` is the guide's Contoso tenant; `examples/up-tenant.yaml`
//! is what `agentid up` runs.

/// `examples/demo-tenant.yaml`.
pub const DEMO_TENANT: &str = include_str!("../../../examples/demo-tenant.yaml");
/// The demo blueprint's appId and its client secret.
pub const BLUEPRINT: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
pub const BLUEPRINT_SECRET: &str = "demo-blueprint-secret-change-me";
/// The blueprint's agent identity (`blog-agent`).
pub const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
/// The demo MCP server's application.
pub const MCP_APP: &str = "ec791040-80f8-4129-bf34-96a0e0672c96";
/// Microsoft Graph Command Line Tools, the public client users sign in with.
pub const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
/// alice's object id, user name and password.
pub const ALICE: &str = "0501a526-79e4-46ff-bd07-6605a752287b";
pub const ALICE_UPN: &str = "alice@contoso.test";
pub const ALICE_PASSWORD: &str = "correct-horse-battery";
/// Azure OpenAI's resource (the LLM leg of the guide).
pub const COGNITIVE: &str = "https://cognitiveservices.azure.com";
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The demo tenant plus the grant the guide's LLM leg needs (the agent calls Azure OpenAI for
/// the user).
pub fn demo_tenant_with_llm_grant() -> String {
    assert!(
        DEMO_TENANT.contains("\nappRoleAssignments:"),
        "the demo tenant's grants no longer end where appRoleAssignments start"
    );
    DEMO_TENANT.replace(
        "\nappRoleAssignments:",
        "\n  - client: blog-agent\n    resource: cognitive-services\n    scopes: [user_impersonation]\n\nappRoleAssignments:",
    )
}

/// `examples/up-tenant.yaml`, the tenant of `agentid up`.
pub mod up {
    pub const TENANT_FILE: &str = include_str!("../../../examples/up-tenant.yaml");
    pub const TENANT_ID: &str = "0a1f25a9-15b6-4302-87d7-ef0c38bdedc5";
    pub const BLUEPRINT: &str = "7583752b-1579-41a2-a065-93ba9f14dff5";
    pub const AGENT: &str = "c228e427-7816-4caa-a04f-7353b3a519f7";
    pub const AUTONOMOUS: &str = "290517f2-66f5-45bc-9cf4-2028e972985e";
    pub const MCP_APP: &str = "1bc7902d-ee63-4134-84d4-e2b04e0c42a0";
    pub const MCP_SECRET: &str = "demo-mcp-secret-change-me";
    pub const USER: &str = "demo@agentid.local";
    pub const USER_OID: &str = "f43b2553-e5af-4a55-990c-68f4e4865d2b";
    pub const PASSWORD: &str = "agentid-demo-password";
    /// The console's administrator (role Agent ID Administrator).
    pub const ADMIN: &str = "admin@agentid.local";
    pub const ADMIN_PASSWORD: &str = "agentid-admin-password";
    pub const WORKLOAD_ISSUER: &str = "https://workload.agentid.local";
}
