-- OIDC login (issue 4).
-- The ID token, kept (encrypted, AES-256-GCM bound to the session id) as `id_token_hint` for
-- RP-initiated logout; when the session's claims were last read from the IdP.
ALTER TABLE sessions ADD COLUMN id_token_enc BYTEA;
ALTER TABLE sessions ADD COLUMN claims_at TIMESTAMPTZ;
CREATE INDEX sessions_refresh_due ON sessions ((COALESCE(refreshed_at, created_at)))
    WHERE revoked_at IS NULL AND refresh_token_enc IS NOT NULL;
-- A pending login is bound to the browser that started it (hash of a cookie it was given).
ALTER TABLE login_states ADD COLUMN browser_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX login_states_expiry ON login_states (expires_at);
CREATE INDEX devices_user ON devices (user_id);
