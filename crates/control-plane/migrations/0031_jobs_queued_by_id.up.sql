-- The claim reads the oldest queued jobs in id order (`ORDER BY id LIMIT n`): an index of
-- queued jobs by id. (The index by created_at it replaces was read by no query.)
DROP INDEX jobs_queued_idx;
CREATE INDEX jobs_queued_idx ON jobs (id) WHERE status = 'queued';
-- The claim takes only the oldest queued job of each app: "an older queued job of this app?"
-- is one probe here.
CREATE INDEX jobs_queued_app_idx ON jobs (app_id, id) WHERE status = 'queued';
