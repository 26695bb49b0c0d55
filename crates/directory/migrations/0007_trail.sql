-- The trail (docs/audit.md §2): every issued token records what it was exchanged from, in its own
-- audit row (no second write per token), and the gateways' decision events are stored per tenant.
ALTER TABLE audit_events ADD COLUMN parent_uti TEXT;
ALTER TABLE audit_events ADD COLUMN parent_kind TEXT;
CREATE INDEX audit_events_token_id ON audit_events (token_id);
CREATE INDEX audit_events_parent_uti ON audit_events (parent_uti);

CREATE TABLE gateway_events (
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    time BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    gateway_client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    route TEXT,
    token_id TEXT,
    client_app_id TEXT,
    agent_id TEXT,
    blueprint_id TEXT,
    user_id TEXT,
    user_upn TEXT,
    decision TEXT NOT NULL,
    stage TEXT,
    reason TEXT,
    rule TEXT,
    tool TEXT,
    method TEXT,
    path TEXT,
    status BIGINT,
    upstream_status BIGINT,
    event TEXT NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX gateway_events_token ON gateway_events (tenant_id, token_id);
CREATE INDEX gateway_events_time ON gateway_events (tenant_id, time);
