-- MCP clients (docs/sts.md §16): each tenant's dynamic client registration policy (off unless
-- a row says otherwise; the initial access token only as its SHA-256), and the gateway route
-- resources (RFC 8707 `resource` values) registered for an application.
CREATE TABLE client_registration_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    mode TEXT NOT NULL,
    initial_access_token_sha256 TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE protected_resources (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    app_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, resource)
);
