-- Core identity, session and policy tables (DESIGN §9).
-- Ids are text (UUIDs) and times are timestamptz, so the same queries serve SQLite.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    subject     TEXT UNIQUE,                 -- the IdP's `sub`; NULL for users made by `session create`
    email       TEXT NOT NULL UNIQUE,        -- stored lower-case
    name        TEXT,
    username    TEXT,
    claims      JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Groups from the IdP's groups claim (source 'idp') and groups assigned in the store
-- (source 'store'); a user's groups are the union of both.
CREATE TABLE user_groups (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_name  TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('idp', 'store')),
    PRIMARY KEY (user_id, group_name, source)
);

CREATE TABLE user_roles (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenant_members (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT 'member',
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX tenant_members_user ON tenant_members (user_id);

CREATE TABLE devices (
    id                TEXT PRIMARY KEY,
    user_id           TEXT REFERENCES users(id) ON DELETE SET NULL,
    cookie_hash       TEXT UNIQUE,           -- SHA-256 of the device cookie's random id
    cert_fingerprint  TEXT UNIQUE,           -- 'sha256:<hex>' of an mTLS client certificate
    registered        BOOLEAN NOT NULL DEFAULT FALSE,
    managed           BOOLEAN NOT NULL DEFAULT FALSE,
    trust             TEXT NOT NULL DEFAULT 'low' CHECK (trust IN ('low', 'medium', 'high')),
    posture           JSONB NOT NULL DEFAULT '{}',
    created_at        TIMESTAMPTZ NOT NULL,
    last_seen_at      TIMESTAMPTZ
);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    token_hash         TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the 256-bit token; the token itself is never stored
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id          TEXT REFERENCES devices(id) ON DELETE SET NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    last_seen_at       TIMESTAMPTZ NOT NULL,
    auth_time          TIMESTAMPTZ NOT NULL,
    amr                JSONB NOT NULL DEFAULT '[]',
    ip                 TEXT,
    user_agent         TEXT,
    idp_sid            TEXT,
    idp_claims         JSONB NOT NULL DEFAULT '{}',
    refresh_token_enc  BYTEA,
    refreshed_at       TIMESTAMPTZ,
    revoked_at         TIMESTAMPTZ,
    revoke_reason      TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_idp_sid ON sessions (idp_sid) WHERE idp_sid IS NOT NULL;
CREATE INDEX sessions_active ON sessions (expires_at) WHERE revoked_at IS NULL;

CREATE TABLE login_states (
    state_hash     TEXT PRIMARY KEY,
    nonce          TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    redirect_to    TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE policy_versions (
    version          TEXT PRIMARY KEY,
    files            JSONB NOT NULL,
    first_loaded_at  TIMESTAMPTZ NOT NULL,
    last_loaded_at   TIMESTAMPTZ NOT NULL
);
