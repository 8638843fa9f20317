UPDATE deployments SET status = 'health_checking' WHERE status = 'switching';
ALTER TABLE deployments DROP CONSTRAINT deployments_status_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check
    CHECK (status IN ('queued', 'cloning', 'building', 'starting', 'health_checking',
                      'running', 'superseded', 'failed', 'cancelled'));
