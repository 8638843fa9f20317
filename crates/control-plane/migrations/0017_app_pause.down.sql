ALTER TABLE apps DROP COLUMN paused_reason;
ALTER TABLE apps DROP COLUMN paused_at;
