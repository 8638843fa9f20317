-- Back to one row per hostname: keep the verified claim, else the oldest; the other pending
-- claims are dropped (they would be refused under the old rule).
DELETE FROM domains d WHERE EXISTS (
    SELECT 1 FROM domains o WHERE o.hostname = d.hostname AND o.id <> d.id
      AND (o.verified_at IS NOT NULL AND d.verified_at IS NULL
           OR (o.verified_at IS NULL) = (d.verified_at IS NULL) AND o.id < d.id));
DROP INDEX domains_pending_created_idx;
DROP INDEX domains_hostname_idx;
DROP INDEX domains_app_hostname_idx;
DROP INDEX domains_verified_hostname_idx;
ALTER TABLE domains ADD CONSTRAINT domains_hostname_key UNIQUE (hostname);
