ALTER TABLE admin_accounts DROP COLUMN totp_last_step;
