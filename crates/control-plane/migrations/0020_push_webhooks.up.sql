-- Push webhooks from git providers (SPEC §14.6): one unguessable id and one secret (sealed)
-- per app, and the log of every delivery — what users ask for when a push does nothing.
CREATE TABLE push_hooks (
    app_id        BIGINT PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    uuid          TEXT NOT NULL UNIQUE CHECK (uuid ~ '^[0-9a-f]{32}$'),
    -- Sealed (AAD: push_hooks/secret_sealed/<app id>).
    secret_sealed TEXT NOT NULL,
    auto_deploy   BOOLEAN NOT NULL DEFAULT true,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    rotated_at    TIMESTAMPTZ
);

CREATE TABLE push_deliveries (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id        BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL CHECK (provider IN ('github', 'gitlab', 'bitbucket', 'codeberg')),
    delivery_id   TEXT,
    event         TEXT NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    verified      BOOLEAN NOT NULL,
    -- A second delivery of an id already seen.
    duplicate     BOOLEAN NOT NULL DEFAULT false,
    -- `deployed`, `ignored: <why>` or `refused: <why>`.
    outcome       TEXT NOT NULL,
    deployment_id BIGINT REFERENCES deployments (id) ON DELETE SET NULL
);
-- A delivery id counts once per app and provider.
CREATE UNIQUE INDEX push_deliveries_once ON push_deliveries (app_id, provider, delivery_id)
    WHERE verified AND NOT duplicate AND delivery_id IS NOT NULL;
CREATE INDEX push_deliveries_app ON push_deliveries (app_id, id DESC);
