ALTER TABLE domains DROP COLUMN cloudflare_ssl_status;
ALTER TABLE domains DROP COLUMN cloudflare_records;
