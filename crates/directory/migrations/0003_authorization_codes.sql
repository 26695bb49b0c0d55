-- Authorization code + PKCE (sts.md §7.8, §11.3): the pending request rides on the browser
-- flow; issued codes are stored only as SHA-256.

ALTER TABLE browser_flows ADD COLUMN authorize_request TEXT;

CREATE TABLE auth_codes (
    code_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    user_id TEXT NOT NULL,
    nonce TEXT,
    auth_time BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    redeemed BIGINT NOT NULL DEFAULT 0
);
