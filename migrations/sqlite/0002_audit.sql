-- Audit trail, SQLite flavour of migrations/postgres/0002_audit.sql: the same columns,
-- unpartitioned; times are RFC 3339 text.

CREATE TABLE audit_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    time            TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    user_id         TEXT,
    email           TEXT,
    tenant          TEXT,
    device_id       TEXT,
    route           TEXT,
    host            TEXT,
    method          TEXT,
    path            TEXT,
    decision        TEXT NOT NULL,
    status          INTEGER NOT NULL,
    reason          TEXT,
    policy_version  TEXT,
    latency_us      INTEGER NOT NULL DEFAULT 0,
    client_ip       TEXT
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_email_time ON audit_events (email, time);
CREATE INDEX audit_events_route_time ON audit_events (route, time);
CREATE INDEX audit_events_decision_time ON audit_events (decision, time);
-- A replayed spool never duplicates a row: inserts use ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX audit_events_dedupe ON audit_events (time, request_id, kind);

CREATE TABLE admin_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
