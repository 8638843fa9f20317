-- Outbound webhooks (SPEC §14.3): per-user endpoints and their deliveries, queued here so
-- they survive restarts; and e-mails, the second channel when SMTP is configured.
CREATE TABLE webhook_endpoints (
    id                   BIGSERIAL PRIMARY KEY,
    user_id              BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url                  TEXT NOT NULL CHECK (length(url) <= 2048),
    events               TEXT[] NOT NULL,
    -- The signing secret, sealed (AAD: webhook_endpoints/secret_sealed/<id>).
    secret_sealed        TEXT,
    enabled              BOOLEAN NOT NULL DEFAULT true,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    disabled_reason      TEXT,
    -- One sender at a time per endpoint, across control planes.
    busy_until           TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_by_user ON webhook_endpoints (user_id);

CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    endpoint_id     BIGINT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event           TEXT NOT NULL
                    CHECK (event IN ('alert.fired', 'alert.resolved', 'deployment.succeeded', 'deployment.failed')),
    data            JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    response_status INTEGER,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id DESC);

CREATE TABLE notification_emails (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    leased_until    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX notification_emails_due ON notification_emails (next_attempt_at) WHERE status = 'pending';

-- A finished deployment is announced once (deployment.* webhooks, the deployment_failed
-- alert); rows from before this migration count as announced.
ALTER TABLE deployments ADD COLUMN announced BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE deployments ALTER COLUMN announced SET DEFAULT false;
CREATE INDEX deployments_unannounced ON deployments (id) WHERE NOT announced;
