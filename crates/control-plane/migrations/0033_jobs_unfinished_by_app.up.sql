-- "An older unfinished job of this app?" (the claim) and "another unfinished job of this app?"
-- (a job's end) are one probe here. Its predicate is implied by no other index's, so the planner
-- cannot answer the probe from `jobs_queued_idx` (a scan of every queued job per probe), as it
-- did with `jobs_queued_app_idx` whenever the statistics predated a burst of queued jobs (both
-- partial indexes then looked empty).
CREATE INDEX jobs_unfinished_app_idx ON jobs (app_id, id) WHERE status IN ('queued', 'dispatched', 'running');
DROP INDEX jobs_queued_app_idx;
