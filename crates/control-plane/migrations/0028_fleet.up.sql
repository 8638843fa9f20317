-- The fleet (SPEC §5, §14.5): which control plane holds each worker's link (so a pair of
-- control planes never marks the other's workers offline), since when a worker is offline (for
-- rescheduling its apps), its last load (for placement from either control plane), and the
-- app a deploy moved off a worker (told to remove its copy once the new one runs).
ALTER TABLE workers
    ADD COLUMN connected_to   TEXT,
    ADD COLUMN offline_since  TIMESTAMPTZ,
    ADD COLUMN cpu_pct        DOUBLE PRECISION,
    ADD COLUMN mem_used_mb    BIGINT,
    ADD COLUMN mem_total_mb   BIGINT;
ALTER TABLE apps ADD COLUMN moved_from_worker_id BIGINT REFERENCES workers (id) ON DELETE SET NULL;
