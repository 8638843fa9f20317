DROP TABLE admin_audit_events;
DROP TABLE admin_role_grants;
DROP TABLE admin_sessions;
DROP TABLE admin_accounts;
