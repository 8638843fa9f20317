DROP INDEX jobs_queued_app_idx;
DROP INDEX jobs_queued_idx;
CREATE INDEX jobs_queued_idx ON jobs (created_at) WHERE status = 'queued';
