-- The revocation feed's state per tenant (docs/sts.md §17): a version that every write which
-- disables an agent identity or blueprint, revokes a user's sessions, deletes a consent or
-- revokes a token bumps in its own transaction.
CREATE TABLE revocation_state (
    tenant_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Explicitly revoked tokens (by uti) and refresh-token families, kept until the longest token
-- they can stand for has expired.
CREATE TABLE revoked_tokens (
    tenant_id TEXT NOT NULL,
    uti TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, uti)
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
