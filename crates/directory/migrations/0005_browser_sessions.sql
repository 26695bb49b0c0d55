-- Browser single sign-on (sts.md §11.1): the cookie `agentid_session` names a row here (hashed).
CREATE TABLE browser_sessions (
    id_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
