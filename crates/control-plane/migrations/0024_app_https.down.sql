ALTER TABLE apps DROP COLUMN hsts, DROP COLUMN https_redirect;
