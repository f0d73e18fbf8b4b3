-- Initial schema for SQLite. Times are INTEGER microseconds since the Unix
-- epoch in UTC, JSON is TEXT, booleans are 0 or 1.

CREATE TABLE requests (
    id                TEXT PRIMARY KEY,
    idempotency_key   TEXT,
    requester         TEXT NOT NULL,
    claims            TEXT NOT NULL,
    principal_id      TEXT NOT NULL,
    principal_type    TEXT NOT NULL,
    pairs             TEXT NOT NULL,
    justification     TEXT NOT NULL,
    duration_ns       INTEGER NOT NULL,
    metadata          TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    backend           TEXT NOT NULL,
    decision          TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled',
                          'active', 'grant_failed', 'revoking', 'revoked', 'revoke_failed')),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    approval_deadline INTEGER,
    granted_at        INTEGER,
    expires_at        INTEGER,
    ended_at          INTEGER,
    error             TEXT NOT NULL DEFAULT '',
    version           INTEGER NOT NULL,
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
CREATE INDEX request_pairs_scope ON request_pairs (scope_key);

CREATE TABLE approvals (
    request_id   TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    approver     TEXT NOT NULL,
    groups       TEXT NOT NULL,
    verdict      TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    comment      TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
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
    pre_existing    INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL CHECK (state IN ('intent', 'active', 'revoking', 'revoked',
                        'revoke_failed', 'grant_failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    claim_owner     TEXT NOT NULL DEFAULT '',
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    granted_at      INTEGER,
    revoked_at      INTEGER,
    verified_at     INTEGER
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
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    released_at INTEGER,
    claim_owner TEXT NOT NULL DEFAULT '',
    claim_until INTEGER,
    UNIQUE (grant_id, request_id)
);
CREATE INDEX leases_expiry ON leases (state, expires_at);
CREATE INDEX leases_request ON leases (request_id);

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    event      TEXT NOT NULL,
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_events_request ON audit_events (request_id);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

-- audit_head is one row: the seq and hash of the last audit event. Appends
-- update it first, which serializes them.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
