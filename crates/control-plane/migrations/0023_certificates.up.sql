-- Certificates for verified custom domains from an ACME CA (SPEC §14.7): the installation's
-- account per directory (credentials sealed), and per domain where its certificate stands.
CREATE TABLE acme_accounts (
    directory_url       TEXT PRIMARY KEY,
    -- Sealed (AAD: acme_accounts/credentials_sealed/<directory_url>).
    credentials_sealed  TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE domain_certificates (
    domain_id        BIGINT PRIMARY KEY REFERENCES domains (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'failed')),
    not_after        TIMESTAMPTZ,
    error            TEXT,
    chain_pem        TEXT,
    -- Sealed (AAD: domain_certificates/key_sealed/<domain id>).
    key_sealed       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX domain_certificates_due ON domain_certificates (next_attempt_at);
