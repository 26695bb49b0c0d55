-- Device authorization (sts.md §7.5) and the browser flows of /devicelogin (§11).

CREATE TABLE device_codes (
    device_code_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    user_code_hmac TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    interval_secs BIGINT NOT NULL,
    last_poll_at BIGINT,
    status TEXT NOT NULL DEFAULT 'pending',
    user_id TEXT,
    auth_time BIGINT
);
CREATE INDEX device_codes_user_code ON device_codes (user_code_hmac);

-- A browser flow: the cookie `agentid_flow` holds a random id; only its hash is stored.
CREATE TABLE browser_flows (
    id_sha256 TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    device_code_sha256 TEXT,
    user_id TEXT,
    failures BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL
);
