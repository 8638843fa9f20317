-- A deploy's fifth phase (SPEC §4.3), `switching`, is shown like the other four.
ALTER TABLE deployments DROP CONSTRAINT deployments_status_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check
    CHECK (status IN ('queued', 'cloning', 'building', 'starting', 'health_checking', 'switching',
                      'running', 'superseded', 'failed', 'cancelled'));
