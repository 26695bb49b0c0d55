//! Identifiers that are the same in every Entra tenant, and therefore in every agentid tenant.

/// Microsoft Graph.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Azure Cognitive Services (Azure OpenAI).
pub const COGNITIVE_SERVICES_APP_ID: &str = "7d312290-28c8-473c-a0ed-8e53749b6d6d";
/// The token-exchange resource: audience of T1 and T2′.
pub const TOKEN_EXCHANGE_APP_ID: &str = "fb60f99c-7a34-4190-8149-302f77469936";
/// The identifier URI of the token-exchange resource.
pub const TOKEN_EXCHANGE_URI: &str = "api://AzureADTokenExchange";
/// Microsoft Graph Command Line Tools, the public client the guide signs users in with.
pub const GRAPH_CLI_APP_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
/// The tenant that owns Microsoft's first-party applications.
pub const MICROSOFT_TENANT_ID: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";
/// Global Administrator role template id (`wids`).
pub const GLOBAL_ADMIN_ROLE_ID: &str = "62e90394-69f5-4237-9190-012177145e10";
/// The assertion type used for every JWT client assertion.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
