ALTER TABLE deployments DROP COLUMN rollback_of;
