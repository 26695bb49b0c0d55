-- MCP clients identified by a client ID metadata document (docs/sts.md §16.4): each tenant's
-- host policy (open unless a row says otherwise), and the public client application created for
-- a document URL on its first use, so consent, audit and the kill switch work as for any app.
CREATE TABLE client_metadata_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    mode TEXT NOT NULL,
    -- JSON arrays of host names (a leading "*." matches subdomains).
    allow_hosts TEXT NOT NULL,
    deny_hosts TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE client_metadata_clients (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    app_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, url)
);

CREATE INDEX client_metadata_clients_app ON client_metadata_clients (tenant_id, app_id);
