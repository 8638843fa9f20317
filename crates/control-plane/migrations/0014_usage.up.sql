-- Usage per app (SPEC §9, §14.3): hourly rows and daily rollups, and the last cumulative
-- counters seen per source, so a worker's reconnect or restart is never counted twice.
CREATE TABLE usage_counters (
    app_id     BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    -- `c:<container id>` (CPU, network) or `r:<worker id>:<epoch>` (requests).
    source     TEXT NOT NULL,
    cpu_nanos  BIGINT NOT NULL DEFAULT 0,
    rx_bytes   BIGINT NOT NULL DEFAULT 0,
    tx_bytes   BIGINT NOT NULL DEFAULT 0,
    requests   BIGINT NOT NULL DEFAULT 0,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, source)
);

CREATE TABLE usage_hourly (
    app_id            BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    hour              TIMESTAMPTZ NOT NULL,
    cpu_seconds       DOUBLE PRECISION NOT NULL DEFAULT 0,
    mem_gb_hours      DOUBLE PRECISION NOT NULL DEFAULT 0,
    net_rx_bytes      BIGINT NOT NULL DEFAULT 0,
    net_tx_bytes      BIGINT NOT NULL DEFAULT 0,
    container_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    requests          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, hour)
);

CREATE TABLE usage_daily (
    app_id            BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    day               DATE NOT NULL,
    cpu_seconds       DOUBLE PRECISION NOT NULL DEFAULT 0,
    mem_gb_hours      DOUBLE PRECISION NOT NULL DEFAULT 0,
    net_rx_bytes      BIGINT NOT NULL DEFAULT 0,
    net_tx_bytes      BIGINT NOT NULL DEFAULT 0,
    container_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    requests          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, day)
);
