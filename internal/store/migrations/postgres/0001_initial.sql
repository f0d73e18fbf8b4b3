-- Initial schema for PostgreSQL. Times are TIMESTAMPTZ (microseconds), JSON
-- is JSONB except audit_events.detail, which is TEXT so the bytes the hash
-- covers come back unchanged.

CREATE TABLE requests (
    id                TEXT PRIMARY KEY,
    idempotency_key   TEXT,
    requester         TEXT NOT NULL,
    claims            JSONB NOT NULL,
    principal_id      TEXT NOT NULL,
    principal_type    TEXT NOT NULL,
    pairs             JSONB NOT NULL,
    justification     TEXT NOT NULL,
    duration_ns       BIGINT NOT NULL,
    metadata          JSONB NOT NULL,
    request_hash      TEXT NOT NULL,
    backend           TEXT NOT NULL,
    decision          JSONB NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled',
                          'active', 'grant_failed', 'revoking', 'revoked', 'revoke_failed')),
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    approval_deadline TIMESTAMPTZ,
    granted_at        TIMESTAMPTZ,
    expires_at        TIMESTAMPTZ,
    ended_at          TIMESTAMPTZ,
    error             TEXT NOT NULL DEFAULT '',
    version           BIGINT NOT NULL,
    UNIQUE (requester, idempotency_key)
);
CREATE INDEX requests_created ON requests (created_at, id);
CREATE INDEX requests_state ON requests (state, approval_deadline);
CREATE INDEX requests_principal ON requests (principal_id);

-- request_pairs repeats requests.pairs one row per pair, so ListRequests can
-- filter by role and scope prefix with an index.
CREATE TABLE request_pairs (
    request_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    ordinal    INTEGER NOT NULL,
    role_id    TEXT NOT NULL,
    scope_key  TEXT NOT NULL,
    PRIMARY KEY (request_id, ordinal)
);
CREATE INDEX request_pairs_role ON request_pairs (role_id);
CREATE INDEX request_pairs_scope ON request_pairs (scope_key text_pattern_ops);

CREATE TABLE approvals (
    request_id   TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    approver     TEXT NOT NULL,
    groups       JSONB NOT NULL,
    verdict      TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    comment      TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE grants (
    id              TEXT PRIMARY KEY,
    principal_id    TEXT NOT NULL,
    principal_type  TEXT NOT NULL,
    role_id         TEXT NOT NULL,
    scope           TEXT NOT NULL,
    scope_key       TEXT NOT NULL,
    request_id      TEXT NOT NULL REFERENCES requests (id),
    assignment_name TEXT NOT NULL,
    assignment_id   TEXT NOT NULL DEFAULT '',
    backend         TEXT NOT NULL,
    pre_existing    BOOLEAN NOT NULL DEFAULT false,
    state           TEXT NOT NULL CHECK (state IN ('intent', 'active', 'revoking', 'revoked',
                        'revoke_failed', 'grant_failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    claim_owner     TEXT NOT NULL DEFAULT '',
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    granted_at      TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ,
    verified_at     TIMESTAMPTZ
);
-- At most one live grant per principal, role and scope: the states listed
-- are the non-terminal ones.
CREATE UNIQUE INDEX grants_live ON grants (principal_id, role_id, scope_key)
    WHERE state IN ('intent', 'active', 'revoking', 'revoke_failed');
CREATE INDEX grants_retry ON grants (state, next_attempt_at);

CREATE TABLE leases (
    id          TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants (id),
    request_id  TEXT NOT NULL REFERENCES requests (id),
    state       TEXT NOT NULL CHECK (state IN ('active', 'released')),
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    released_at TIMESTAMPTZ,
    claim_owner TEXT NOT NULL DEFAULT '',
    claim_until TIMESTAMPTZ,
    UNIQUE (grant_id, request_id)
);
CREATE INDEX leases_expiry ON leases (state, expires_at);
CREATE INDEX leases_request ON leases (request_id);

CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    time       TIMESTAMPTZ NOT NULL,
    request_id TEXT NOT NULL,
    event      TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_events_request ON audit_events (request_id);
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- audit_head is one row: the seq and hash of the last audit event. Appends
-- update it first, and its row lock serializes them across replicas.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    payload         JSONB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
