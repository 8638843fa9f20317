-- Alert rules per app and the alerts they raise (SPEC §9, §14.3).
CREATE TABLE alert_rules (
    id              BIGSERIAL PRIMARY KEY,
    app_id          BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL
                    CHECK (kind IN ('cpu', 'memory', 'network', 'restarts', 'offline', 'crashloop', 'deployment_failed')),
    -- Metric kinds only: cpu and memory in %, network in bytes/s, restarts per hour.
    threshold       DOUBLE PRECISION,
    sustain_minutes INTEGER NOT NULL DEFAULT 5 CHECK (sustain_minutes BETWEEN 0 AND 1440),
    -- The evaluator's state (metric kinds), so a restart of the control plane loses nothing:
    -- since when the value has been over (or under) the threshold, and whether it fired.
    over_since      TIMESTAMPTZ,
    under_since     TIMESTAMPTZ,
    firing          BOOLEAN NOT NULL DEFAULT false,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (app_id, kind),
    CHECK ((kind IN ('cpu', 'memory', 'network', 'restarts')) = (threshold IS NOT NULL))
);

CREATE TABLE alerts (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- NULL for an alert about the user's account (a webhook endpoint turned off).
    app_id          BIGINT REFERENCES apps(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL
                    CHECK (kind IN ('cpu', 'memory', 'network', 'restarts', 'offline', 'crashloop', 'deployment_failed', 'webhook_disabled')),
    status          TEXT NOT NULL DEFAULT 'firing' CHECK (status IN ('firing', 'acknowledged', 'resolved')),
    message         TEXT NOT NULL,
    fired_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    acknowledged_at TIMESTAMPTZ,
    resolved_at     TIMESTAMPTZ,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
-- One open alert per (app, kind): no floods.
CREATE UNIQUE INDEX alerts_one_open ON alerts (user_id, COALESCE(app_id, 0), kind) WHERE status <> 'resolved';
CREATE INDEX alerts_by_user ON alerts (user_id, fired_at DESC);

-- Apps made before alerts existed get the default rules new apps get.
INSERT INTO alert_rules (app_id, kind, sustain_minutes)
SELECT a.id, k.kind, 0 FROM apps a CROSS JOIN (VALUES ('crashloop'), ('deployment_failed'), ('offline')) AS k(kind);
