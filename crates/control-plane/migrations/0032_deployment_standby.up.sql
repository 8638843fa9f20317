-- A standby (issue 19): the redeploy of a gone worker's app starts before the reschedule limit
-- and is switched to only at `switch_at` (the limit), unless the worker came back first.
ALTER TABLE deployments ADD COLUMN switch_at TIMESTAMPTZ;
CREATE INDEX deployments_standby_idx ON deployments (switch_at) WHERE switch_at IS NOT NULL AND status = 'switching';
