-- The web console's sessions (console.md §3): the cookie `agentid_console` names a row here
-- (hashed); each session has its own CSRF token, which every console form carries.
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
