-- OIDC login (issue 4): the ID token kept (encrypted, AES-256-GCM bound to the session id)
-- as `id_token_hint` for RP-initiated logout, and lookups the login and refresh paths need.
ALTER TABLE sessions ADD COLUMN id_token_enc BYTEA;
CREATE INDEX sessions_refresh_due ON sessions (refreshed_at)
    WHERE revoked_at IS NULL AND refresh_token_enc IS NOT NULL;
CREATE INDEX login_states_expiry ON login_states (expires_at);
CREATE INDEX devices_user ON devices (user_id);
