-- Sign-in with an OpenID provider, second factors and API tokens (SPEC §8, §14.1).

-- Users are keyed by their provider's (issuer, subject); the email is updated when it changes.
ALTER TABLE users
    ADD COLUMN oidc_issuer TEXT,
    ADD COLUMN oidc_subject TEXT,
    ADD COLUMN totp_pending_since TIMESTAMPTZ,
    -- Wrong second-factor codes in the minute that began at totp_failures_since.
    ADD COLUMN totp_failures INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN totp_failures_since TIMESTAMPTZ;
UPDATE users SET oidc_issuer = 'https://accounts.google.com', oidc_subject = google_sub WHERE google_sub IS NOT NULL;
ALTER TABLE users DROP COLUMN google_sub;
ALTER TABLE users ADD CONSTRAINT users_oidc_identity_whole CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL));
CREATE UNIQUE INDEX users_oidc_identity_key ON users (oidc_issuer, oidc_subject);

-- A sign-in in flight: its state (hashed), bound to the browser that began it (the hash of
-- the short-lived `wh_oidc` cookie), with its nonce and PKCE verifier. Used once.
CREATE TABLE oidc_logins (
    state_hash    TEXT PRIMARY KEY CHECK (state_hash ~ '^[0-9a-f]{64}$'),
    browser_hash  TEXT NOT NULL CHECK (browser_hash ~ '^[0-9a-f]{64}$'),
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);

-- A sign-in waiting for its second factor (the `wh_2fa` cookie, hashed).
CREATE TABLE login_challenges (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip          TEXT,
    user_agent  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_challenges_user_id_idx ON login_challenges (user_id);

-- Single-use recovery codes, hashed.
CREATE TABLE totp_recovery_codes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL CHECK (code_hash ~ '^[0-9a-f]{64}$'),
    used_at    TIMESTAMPTZ,
    UNIQUE (user_id, code_hash)
);

-- API tokens for scripts and the CLI, hashed; shown once.
CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash   TEXT NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    scopes       TEXT[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'deploy', 'write']),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);
