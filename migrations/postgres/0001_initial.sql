-- The whole SQLite schema (migrations/sqlite/0001–0005) in PostgreSQL types. Times are Unix
-- seconds (BIGINT), as on SQLite, so both backends hand the domain the same values.

-- Policy documents in force, one row per (kind, name).
CREATE TABLE documents (
    kind        TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    body        JSONB  NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT   NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Every version ever written; body NULL records a deletion.
CREATE TABLE document_versions (
    kind        TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    body        JSONB,
    changed_at  BIGINT NOT NULL,
    changed_by  TEXT   NOT NULL,
    PRIMARY KEY (kind, name, version)
);

-- private_key is sealed under the key-encryption key when sealed is true.
CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY,
    alg          TEXT    NOT NULL,
    private_key  BYTEA   NOT NULL,
    sealed       BOOLEAN NOT NULL DEFAULT false,
    state        TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    activated_at BIGINT,
    retired_at   BIGINT
);
-- At most one active and one next key, whatever replicas race to create them: the loser's
-- insert conflicts and it reads the winner's key instead.
CREATE UNIQUE INDEX signing_keys_one_per_state ON signing_keys (state)
    WHERE state IN ('active', 'next');

-- One row per exchange (allowed or denied) and per admin change. Tokens are never stored.
CREATE TABLE audit_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   TEXT   NOT NULL,
    time         BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    decision     TEXT,
    reason       TEXT   NOT NULL,
    client_addr  TEXT,
    policy       TEXT,
    inbound_iss  TEXT,
    inbound_sub  TEXT,
    inbound_jti  TEXT,
    issued_jti   TEXT,
    issued_exp   BIGINT,
    detail       JSONB  NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_request ON audit_events (request_id);
CREATE INDEX audit_events_policy ON audit_events (policy, id);
CREATE INDEX audit_events_subject ON audit_events (inbound_sub, id);

-- Subject-token jtis already exchanged, for issuers with replay protection. Kept until
-- the token could no longer be accepted anyway, then purged.
CREATE TABLE used_jtis (
    issuer  TEXT   NOT NULL,
    jti     TEXT   NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_jtis_expires ON used_jtis (expires);

-- Revoked broker tokens: one jti, or every token issued under a policy and/or to a subject
-- with `iat` in [issued_since, issued_until]; forgotten after `expires_at`.
CREATE TABLE revocations (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    jti           TEXT,
    policy        TEXT,
    subject       TEXT,
    issued_since  BIGINT NOT NULL,
    issued_until  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    created_by    TEXT   NOT NULL,
    reason        TEXT
);
CREATE INDEX revocations_expiry ON revocations (expires_at);
