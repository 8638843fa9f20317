-- One usage sample per interval slot and worker, whichever control plane takes it: with two
-- control planes (each sampling the workers connected to it), or one restarted
-- mid-interval, no interval of a worker's apps is counted twice.
CREATE TABLE usage_slots (
    slot       BIGINT NOT NULL,
    worker_id  BIGINT NOT NULL,
    taken_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (slot, worker_id)
);
