-- OIDC login (issue 4): see migrations/postgres/0003_oidc.sql.
ALTER TABLE sessions ADD COLUMN id_token_enc BLOB;
ALTER TABLE sessions ADD COLUMN claims_at TEXT;
CREATE INDEX sessions_refresh_due ON sessions ((COALESCE(refreshed_at, created_at)))
    WHERE revoked_at IS NULL AND refresh_token_enc IS NOT NULL;
ALTER TABLE login_states ADD COLUMN browser_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX login_states_expiry ON login_states (expires_at);
CREATE INDEX devices_user ON devices (user_id);
