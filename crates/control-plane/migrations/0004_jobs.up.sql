-- The job queue (SPEC §5): claimed with FOR UPDATE SKIP LOCKED, fenced by (id, attempt).
CREATE TABLE jobs (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('deploy', 'restart', 'stop', 'start', 'remove')),
    app_id         BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    deployment_id  BIGINT REFERENCES deployments (id) ON DELETE CASCADE,
    worker_id      BIGINT REFERENCES workers (id) ON DELETE SET NULL,
    status         TEXT NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'dispatched', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt        INTEGER NOT NULL DEFAULT 0,
    payload_sealed TEXT,
    error          TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    dispatched_at  TIMESTAMPTZ,
    started_at     TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ
);
CREATE INDEX jobs_queued_idx ON jobs (created_at) WHERE status = 'queued';
CREATE INDEX jobs_app_id_idx ON jobs (app_id);
-- One unfinished job per app at a time.
CREATE UNIQUE INDEX jobs_one_active_per_app ON jobs (app_id) WHERE status IN ('dispatched', 'running');
