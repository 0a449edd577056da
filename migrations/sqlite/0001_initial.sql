-- Policy documents in force, one row per (kind, name).
CREATE TABLE documents (
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Every version ever written; body NULL records a deletion.
CREATE TABLE document_versions (
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    body        TEXT,
    changed_at  INTEGER NOT NULL,
    changed_by  TEXT    NOT NULL,
    PRIMARY KEY (kind, name, version)
);

CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY,
    alg          TEXT    NOT NULL,
    private_key  BLOB    NOT NULL,
    state        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    activated_at INTEGER,
    retired_at   INTEGER
);

-- One row per exchange (allowed or denied) and per admin change. Tokens are never stored.
CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT    NOT NULL,
    time         INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    decision     TEXT,
    reason       TEXT    NOT NULL,
    client_addr  TEXT,
    policy       TEXT,
    inbound_iss  TEXT,
    inbound_sub  TEXT,
    inbound_jti  TEXT,
    issued_jti   TEXT,
    issued_exp   INTEGER,
    detail       TEXT    NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_request ON audit_events (request_id);
