DELETE FROM alerts WHERE kind = 'certificate_failing';
DELETE FROM alert_rules WHERE kind = 'certificate_failing';
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check,
    ADD CONSTRAINT alerts_kind_check
        CHECK (kind IN ('cpu', 'memory', 'network', 'restarts', 'offline', 'crashloop', 'deployment_failed', 'webhook_disabled'));
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_check,
    ADD CONSTRAINT alert_rules_kind_check
        CHECK (kind IN ('cpu', 'memory', 'network', 'restarts', 'offline', 'crashloop', 'deployment_failed'));
