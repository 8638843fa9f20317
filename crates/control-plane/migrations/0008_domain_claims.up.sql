-- Several users may claim one hostname while it is unverified (issue 10 item 8): the first to
-- verify wins, and only a verified hostname is unique. A claim is one per app and hostname.
ALTER TABLE domains DROP CONSTRAINT domains_hostname_key;
CREATE UNIQUE INDEX domains_verified_hostname_idx ON domains (hostname) WHERE verified_at IS NOT NULL;
CREATE UNIQUE INDEX domains_app_hostname_idx ON domains (app_id, hostname);
CREATE INDEX domains_hostname_idx ON domains (hostname);
CREATE INDEX domains_pending_created_idx ON domains (created_at) WHERE verified_at IS NULL;
