-- One schema for SQLite and PostgreSQL: only TEXT and BIGINT columns, JSON kept as TEXT,
-- binary values as base64 TEXT, times as Unix seconds. Booleans are BIGINT 0/1.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    domains TEXT NOT NULL,
    allow_password_grant BIGINT NOT NULL DEFAULT 1,
    user_consent_allowed BIGINT NOT NULL DEFAULT 1,
    pairwise_secret TEXT NOT NULL,
    user_code_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tenant_domains (
    domain_lower TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    upn TEXT NOT NULL,
    upn_lower TEXT NOT NULL,
    display_name TEXT NOT NULL,
    given_name TEXT,
    surname TEXT,
    mail TEXT,
    account_enabled BIGINT NOT NULL DEFAULT 1,
    password_hash TEXT,
    identity_parent_id TEXT,
    roles TEXT NOT NULL DEFAULT '[]',
    sessions_revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, upn_lower)
);

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT,
    identifier_uris TEXT NOT NULL DEFAULT '[]',
    scopes TEXT NOT NULL DEFAULT '[]',
    app_roles TEXT NOT NULL DEFAULT '[]',
    access_token_version BIGINT,
    is_public_client BIGINT NOT NULL DEFAULT 0,
    redirect_uris TEXT NOT NULL DEFAULT '[]',
    required_resource_access TEXT NOT NULL DEFAULT '[]',
    optional_claims TEXT,
    inheritable_permissions TEXT NOT NULL DEFAULT '[]',
    owners TEXT NOT NULL DEFAULT '[]',
    sponsors TEXT NOT NULL DEFAULT '[]',
    signing_alg TEXT NOT NULL DEFAULT 'RS256',
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, app_id)
);

-- Identifier URIs, normalised (lowercase, one trailing slash removed), unique per tenant.
CREATE TABLE identifier_uris (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    uri_norm TEXT NOT NULL,
    app_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, uri_norm)
);

-- Service principals of every kind: ordinary, blueprint principals, agent identities, built-ins.
CREATE TABLE service_principals (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    display_name TEXT NOT NULL,
    account_enabled BIGINT NOT NULL DEFAULT 1,
    blueprint_app_id TEXT,
    sponsors TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, app_id)
);
CREATE INDEX service_principals_blueprint ON service_principals (tenant_id, blueprint_app_id);

CREATE TABLE password_credentials (
    key_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    display_name TEXT,
    hint TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL
);

CREATE TABLE key_credentials (
    key_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    display_name TEXT,
    cert_der TEXT NOT NULL,
    thumbprint_sha1 TEXT NOT NULL,
    thumbprint_sha256 TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL
);

CREATE TABLE federated_credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    audience TEXT NOT NULL,
    description TEXT,
    UNIQUE (application_id, name_lower),
    UNIQUE (application_id, issuer, subject)
);

CREATE TABLE oauth2_permission_grants (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES service_principals(id) ON DELETE CASCADE,
    consent_type TEXT NOT NULL,
    principal_key TEXT NOT NULL,
    resource_id TEXT NOT NULL REFERENCES service_principals(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    UNIQUE (client_id, resource_id, consent_type, principal_key)
);

CREATE TABLE app_role_assignments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    principal_type TEXT NOT NULL,
    resource_id TEXT NOT NULL REFERENCES service_principals(id) ON DELETE CASCADE,
    app_role_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (principal_id, resource_id, app_role_id)
);

CREATE TABLE trusted_issuers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    jwks TEXT,
    allow_http BIGINT NOT NULL DEFAULT 0,
    description TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, issuer)
);

CREATE TABLE signing_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kid TEXT NOT NULL,
    alg TEXT NOT NULL,
    private_key_enc TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    cert_der TEXT NOT NULL,
    publish_at BIGINT NOT NULL,
    activate_at BIGINT NOT NULL,
    retired_at BIGINT,
    last_signed_at BIGINT,
    remove_after BIGINT,
    PRIMARY KEY (tenant_id, kid)
);

CREATE TABLE tls_material (
    name TEXT PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    key_enc TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE assertion_replay (
    tenant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    assertion_sha256 TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, client_id, jti)
);

CREATE TABLE refresh_tokens (
    token_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    amr TEXT NOT NULL DEFAULT '[]',
    issued_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    superseded_at BIGINT,
    revoked BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE signin_failures (
    tenant_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT,
    PRIMARY KEY (tenant_id, subject)
);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    tenant_id TEXT,
    replica TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    grant_type TEXT,
    client_id TEXT,
    client_kind TEXT,
    agent_id TEXT,
    blueprint_id TEXT,
    user_id TEXT,
    user_principal_name TEXT,
    credential_type TEXT,
    credential_id TEXT,
    federated_issuer TEXT,
    federated_subject TEXT,
    resource TEXT,
    audience TEXT,
    scopes_requested TEXT,
    scopes_granted TEXT,
    roles TEXT,
    result TEXT NOT NULL,
    error TEXT,
    error_code BIGINT,
    token_id TEXT,
    token_expires_at BIGINT,
    refresh_family_id TEXT,
    source_ip TEXT,
    user_agent TEXT,
    correlation_id TEXT,
    trace_id TEXT
);
CREATE INDEX audit_events_time ON audit_events (time);

-- What the tenant file last applied: file handles (`name`) of objects and a hash of their spec,
-- so a second apply of the same file finds every object again and changes nothing.
CREATE TABLE tenant_file_objects (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    handle TEXT NOT NULL,
    object_id TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, handle)
);
