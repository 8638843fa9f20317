-- An admin's second factor: the last TOTP step used, so a code is accepted once.
ALTER TABLE admin_accounts ADD COLUMN totp_last_step BIGINT;
