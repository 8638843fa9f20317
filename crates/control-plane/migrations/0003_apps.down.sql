DROP TABLE domains;
DROP TABLE env_vars;
ALTER TABLE apps DROP CONSTRAINT apps_current_deployment_fk;
DROP TABLE deployments;
DROP TABLE apps;
