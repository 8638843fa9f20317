-- HTTP-01 answers waiting at workers' edge routers (SPEC §14.7): kept here rather than in the
-- ordering control plane's memory, so the control plane that holds the worker's link (one of
-- a pair) pushes them, and so a worker that reconnects mid-order gets them again.
CREATE TABLE acme_challenges (
    token             TEXT PRIMARY KEY,
    worker_id         BIGINT NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    key_authorization TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX acme_challenges_worker ON acme_challenges (worker_id);
