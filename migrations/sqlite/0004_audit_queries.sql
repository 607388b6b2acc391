-- SQLite flavour of migrations/postgres/0004_audit_queries.sql: the same lookups, one
-- unpartitioned table, no rollups (a single node's trail is small enough to count).

-- The spool-replay dedupe (same columns, same uniqueness) leads with the request id, so
-- "what decided request X" is an index lookup.
DROP INDEX audit_events_dedupe;
CREATE UNIQUE INDEX audit_events_request ON audit_events (request_id, time, kind);

-- The admin search by tenant; SQLite's indexes end in the rowid (`id`), the page order.
CREATE INDEX audit_events_tenant_time ON audit_events (tenant, time);

-- Narrow questions: partial indexes.
CREATE INDEX audit_events_denied_path ON audit_events (path, time) WHERE decision = 'deny';
CREATE INDEX audit_events_unauthenticated ON audit_events (time, client_ip, reason)
    WHERE decision = 'unauthenticated';
CREATE INDEX audit_events_failed_logins ON audit_events (time, email)
    WHERE kind = 'login' AND decision <> 'allow';
