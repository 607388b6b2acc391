-- Which transport asked for a decision (kind = 'verify'): `http` (/auth/verify from an
-- ingress), `proxy` (the built-in reverse proxy) or `grpc` (Envoy ext_authz). NULL for other
-- kinds and for rows written before this column existed. Numbered 0010 to leave room for
-- the audit-index migrations being written beside it.
ALTER TABLE audit_events ADD COLUMN transport TEXT;
