-- Which transport asked for a decision (kind = 'verify'): `http`, `proxy` or `grpc`; NULL for
-- other kinds and older rows (see the Postgres migration of the same number).
ALTER TABLE audit_events ADD COLUMN transport TEXT;
