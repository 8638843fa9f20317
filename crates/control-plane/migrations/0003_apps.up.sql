-- Apps, their deployments, env vars and domains (SPEC §6-8).
CREATE TABLE apps (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id               BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    slug                  TEXT NOT NULL UNIQUE,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'created'
                          CHECK (status IN ('created', 'deploying', 'running', 'stopped', 'crashed', 'failed', 'deleting')),
    repo_url              TEXT NOT NULL,
    branch                TEXT NOT NULL DEFAULT 'main',
    framework             TEXT NOT NULL DEFAULT 'dockerfile',
    dockerfile_path       TEXT,
    port                  INTEGER NOT NULL DEFAULT 8080 CHECK (port BETWEEN 1 AND 65535),
    zone                  TEXT,
    worker_id             BIGINT REFERENCES workers (id) ON DELETE SET NULL,
    current_deployment_id BIGINT,
    host_port             INTEGER,
    auto_deploy           BOOLEAN NOT NULL DEFAULT TRUE,
    webhook_uuid          TEXT NOT NULL UNIQUE DEFAULT md5(random()::text || clock_timestamp()::text),
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX apps_user_id_idx ON apps (user_id);
CREATE INDEX apps_worker_id_idx ON apps (worker_id);

CREATE TABLE deployments (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id       BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    status       TEXT NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'cloning', 'building', 'starting', 'health_checking',
                                   'running', 'superseded', 'failed', 'cancelled')),
    branch       TEXT NOT NULL,
    commit_sha   TEXT,
    image_id     TEXT,
    container_id TEXT,
    host_port    INTEGER,
    error        TEXT,
    build_log    TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX deployments_app_id_idx ON deployments (app_id, id DESC);

ALTER TABLE apps ADD CONSTRAINT apps_current_deployment_fk
    FOREIGN KEY (current_deployment_id) REFERENCES deployments (id) ON DELETE SET NULL;

CREATE TABLE env_vars (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id       BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (name ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    value_sealed TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (app_id, name)
);

CREATE TABLE domains (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id             BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hostname           TEXT NOT NULL UNIQUE,
    verification_token TEXT NOT NULL,
    verified_at        TIMESTAMPTZ,
    cloudflare_id      TEXT,
    cloudflare_status  TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX domains_app_id_idx ON domains (app_id);
