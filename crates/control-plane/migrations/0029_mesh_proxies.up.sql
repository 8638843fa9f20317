-- The central proxy's place in the WireGuard mesh (SPEC §11): like a worker, a stable address
-- of 10.50.0.0/24 given from its public key and one peer on the control plane; it runs no apps.
CREATE TABLE mesh_proxies (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    wg_public_key TEXT NOT NULL,
    wg_ip         INET NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
