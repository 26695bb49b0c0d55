-- What the revocation feed lists beyond what the directory's own rows say (docs/sts.md §17):
-- agent identities and blueprints that were deleted (their rows are gone, their tokens are not),
-- and consents that were deleted (the client's delegated tokens for that user, or for every
-- user, issued before). Each entry is kept until every token it can stand for has expired.
--   kind 'deletedAgent': subject = the deleted agent's or blueprint's appId, principal = ''
--   kind 'revokedGrant': subject = the client's appId, principal = the user's object id, or ''
--                        for an AllPrincipals consent
CREATE TABLE revocation_entries (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    principal TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, subject, principal)
);
CREATE INDEX revocation_entries_expiry ON revocation_entries (expires_at);
