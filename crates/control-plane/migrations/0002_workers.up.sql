-- Worker hosts (SPEC §4.1, §11). Only the sha256 hex of the raw API key is stored, for look-up;
-- the envelope MAC key is stored sealed, so a dump alone cannot forge frames.
CREATE TABLE workers (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    zone              TEXT,
    api_key_hash      TEXT NOT NULL UNIQUE CHECK (api_key_hash ~ '^[0-9a-f]{64}$'),
    mac_key_sealed    TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'online', 'offline', 'disabled')),
    version           TEXT,
    capacity_cpus     INTEGER,
    capacity_memory_mb BIGINT,
    wg_public_key     TEXT,
    wg_ip             INET,
    last_heartbeat_at TIMESTAMPTZ,
    registered_at     TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
