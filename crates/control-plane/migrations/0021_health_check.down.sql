ALTER TABLE apps DROP COLUMN health_check_timeout_secs;
ALTER TABLE apps DROP COLUMN health_check_path;
