-- The admin subsystem's own identity (SPEC §10): separate from users on purpose — its own
-- accounts, sessions, role grants and audit trail, used only by `wisehosting-admin`.
CREATE TABLE admin_accounts (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE CHECK (username ~ '^[a-z][a-z0-9._-]{2,31}$'),
    -- bcrypt ($2b$, cost ≥ 12).
    password_hash  TEXT NOT NULL CHECK (password_hash ~ '^\$2[ab]\$'),
    -- TOTP secret, sealed (AAD: admin_accounts/totp_sealed/<id>); NULL when not enrolled.
    totp_sealed    TEXT,
    active         BOOLEAN NOT NULL DEFAULT true,
    last_login_at  TIMESTAMPTZ,
    -- Failed sign-ins in a row, for the back-off.
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    last_failed_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE admin_sessions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id      BIGINT NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    token_sha256  TEXT NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    ip            TEXT,
    user_agent    TEXT,
    issued_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- 8 hours after issue at most; 60 minutes idle ends it earlier.
    expires_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);

CREATE TABLE admin_role_grants (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id    BIGINT NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('super_admin', 'support', 'billing', 'read_only')),
    granted_by  TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    -- The grant gives nothing from this instant on.
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
-- One live grant per admin and role.
CREATE UNIQUE INDEX admin_role_grants_live ON admin_role_grants (admin_id, role) WHERE revoked_at IS NULL;

CREATE TABLE admin_audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id    BIGINT REFERENCES admin_accounts (id) ON DELETE SET NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    ip          TEXT,
    detail      JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_events_created_at ON admin_audit_events (created_at DESC);
