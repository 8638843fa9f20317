-- How many values each column-encryption key version has sealed, so the per-key limit
-- (random 96-bit nonces) holds across restarts. Written every 30 s and at shutdown.
CREATE TABLE key_usage (
    key_version INTEGER PRIMARY KEY,
    seals       BIGINT NOT NULL CHECK (seals >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
