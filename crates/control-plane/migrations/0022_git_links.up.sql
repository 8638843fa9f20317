-- Linked git provider accounts (SPEC §14.8): one per user and provider, tokens sealed; the
-- `state` of each link begun, bound to the session that began it; apps cloned with a link.
CREATE TABLE git_links (
    user_id               BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider              TEXT NOT NULL CHECK (provider IN ('github', 'gitlab', 'bitbucket', 'codeberg')),
    login                 TEXT NOT NULL,
    -- Sealed (AAD: git_links/access_token_sealed/<user id>:<provider>, and likewise).
    access_token_sealed   TEXT NOT NULL,
    refresh_token_sealed  TEXT,
    -- When the access token stops working; null for tokens that do not expire.
    expires_at            TIMESTAMPTZ,
    linked_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshed_at          TIMESTAMPTZ,
    PRIMARY KEY (user_id, provider)
);

CREATE TABLE git_link_states (
    -- SHA-256 of the `state` sent to the provider.
    state_hash  TEXT PRIMARY KEY,
    session_id  BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    provider    TEXT NOT NULL CHECK (provider IN ('github', 'gitlab', 'bitbucket', 'codeberg')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX git_link_states_created ON git_link_states (created_at);

-- The linked account whose token clones the app's repository (instead of a token of its own).
ALTER TABLE apps ADD COLUMN git_provider TEXT
    CHECK (git_provider IN ('github', 'gitlab', 'bitbucket', 'codeberg'));
