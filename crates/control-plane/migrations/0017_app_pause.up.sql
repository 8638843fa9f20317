-- Operators (the admin console's support role) may pause an app: it is stopped, and its owner
-- cannot start, restart or redeploy it until it is unpaused.
ALTER TABLE apps ADD COLUMN paused_at TIMESTAMPTZ;
ALTER TABLE apps ADD COLUMN paused_reason TEXT NOT NULL DEFAULT '';
