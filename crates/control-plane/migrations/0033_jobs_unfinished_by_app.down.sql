CREATE INDEX jobs_queued_app_idx ON jobs (app_id, id) WHERE status = 'queued';
DROP INDEX jobs_unfinished_app_idx;
