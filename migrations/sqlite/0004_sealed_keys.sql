-- 1 when private_key is sealed under the key-encryption key (all keys written from now on).
ALTER TABLE signing_keys ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
