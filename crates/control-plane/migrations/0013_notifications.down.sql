DROP INDEX deployments_unannounced;
ALTER TABLE deployments DROP COLUMN announced;
DROP TABLE notification_emails;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
