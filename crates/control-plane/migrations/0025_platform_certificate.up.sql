-- The platform's own certificate (SPEC §14.7), for `<slug>.<subdomain_base>` on every worker:
-- imported from files at start, or ordered for `*.<subdomain_base>` by DNS-01. One row.
CREATE TABLE platform_certificate (
    singleton        BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    source           TEXT NOT NULL CHECK (source IN ('file', 'acme')),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'failed')),
    -- The names it is served for (the leaf's DNS names; `*.x` covers one label).
    names            TEXT[] NOT NULL DEFAULT '{}',
    not_after        TIMESTAMPTZ,
    error            TEXT,
    chain_pem        TEXT,
    -- Sealed (AAD: platform_certificate/key_sealed/platform).
    key_sealed       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
