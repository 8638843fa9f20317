DROP INDEX deployments_standby_idx;
ALTER TABLE deployments DROP COLUMN switch_at;
