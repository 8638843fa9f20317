-- A rollback is a new deployment of an earlier one's image (or its commit, built again).
ALTER TABLE deployments ADD COLUMN rollback_of BIGINT REFERENCES deployments (id) ON DELETE SET NULL;
