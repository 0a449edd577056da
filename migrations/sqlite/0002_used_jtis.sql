-- Subject-token jtis already exchanged, for issuers with replay protection. Kept until
-- the token could no longer be accepted anyway, then purged.
CREATE TABLE used_jtis (
    issuer  TEXT    NOT NULL,
    jti     TEXT    NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_jtis_expires ON used_jtis (expires);
