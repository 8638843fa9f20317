-- An alert when a custom domain's certificate keeps failing to be issued or renewed
-- (`certificate_failing`), a default rule of every app.
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_check,
    ADD CONSTRAINT alert_rules_kind_check
        CHECK (kind IN ('cpu', 'memory', 'network', 'restarts', 'offline', 'crashloop', 'deployment_failed', 'certificate_failing'));
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check,
    ADD CONSTRAINT alerts_kind_check
        CHECK (kind IN ('cpu', 'memory', 'network', 'restarts', 'offline', 'crashloop', 'deployment_failed', 'webhook_disabled', 'certificate_failing'));
INSERT INTO alert_rules (app_id, kind, sustain_minutes)
SELECT id, 'certificate_failing', 0 FROM apps
ON CONFLICT (app_id, kind) DO NOTHING;
