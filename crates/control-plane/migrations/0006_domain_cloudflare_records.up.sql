-- The validation records Cloudflare for SaaS asks the user to publish (JSON text: a list of
-- {"type", "name", "value"}), and the SSL status next to the hostname status.
ALTER TABLE domains ADD COLUMN cloudflare_records TEXT NOT NULL DEFAULT '[]';
ALTER TABLE domains ADD COLUMN cloudflare_ssl_status TEXT;
