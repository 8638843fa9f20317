-- An app's health check: the path a new version must answer (at `/`, anything below 500; at
-- another path, 2xx or 3xx) and how long it has (NULL: the worker's deploy.health_timeout_secs).
ALTER TABLE apps ADD COLUMN health_check_path TEXT NOT NULL DEFAULT '/' CHECK (health_check_path ~ '^/' AND length(health_check_path) <= 200);
ALTER TABLE apps ADD COLUMN health_check_timeout_secs INTEGER CHECK (health_check_timeout_secs BETWEEN 1 AND 600);
