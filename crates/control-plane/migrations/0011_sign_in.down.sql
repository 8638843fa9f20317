DROP TABLE api_tokens;
DROP TABLE totp_recovery_codes;
DROP TABLE login_challenges;
DROP TABLE oidc_logins;
DROP INDEX users_oidc_identity_key;
ALTER TABLE users DROP CONSTRAINT users_oidc_identity_whole;
ALTER TABLE users ADD COLUMN google_sub TEXT UNIQUE;
UPDATE users SET google_sub = oidc_subject WHERE oidc_issuer = 'https://accounts.google.com';
ALTER TABLE users DROP COLUMN oidc_issuer, DROP COLUMN oidc_subject, DROP COLUMN totp_pending_since,
    DROP COLUMN totp_failures, DROP COLUMN totp_failures_since;
