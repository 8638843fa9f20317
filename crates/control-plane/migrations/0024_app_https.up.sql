-- HTTPS per app at the edge router (SPEC §14.7): plain requests for a host with a certificate
-- are redirected to HTTPS unless the app turns it off; HSTS is opt-in.
ALTER TABLE apps
    ADD COLUMN https_redirect BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN hsts BOOLEAN NOT NULL DEFAULT FALSE;
