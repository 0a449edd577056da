-- Revoked broker tokens: one jti, or every token issued under a policy and/or to a subject
-- with `iat` in [issued_since, issued_until]. A row is forgotten after `expires_at`, when
-- every token it could match has expired anyway.
CREATE TABLE revocations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    jti           TEXT,
    policy        TEXT,
    subject       TEXT,
    issued_since  INTEGER NOT NULL,
    issued_until  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    reason        TEXT
);
CREATE INDEX revocations_expiry ON revocations (expires_at);
