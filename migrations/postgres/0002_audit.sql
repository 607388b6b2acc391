-- Audit trail (DESIGN §9, §10): one row per decision, login, logout, revocation and admin
-- change. Partitioned by day so retention drops whole partitions; Gatehouse creates
-- partitions ahead of time (gatehouse_audit_ensure_partitions) and drops old ones.

CREATE TABLE audit_events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY,
    time            TIMESTAMPTZ NOT NULL,
    request_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,          -- verify | login | logout | revoke | admin
    user_id         TEXT,
    email           TEXT,
    tenant          TEXT,
    device_id       TEXT,
    route           TEXT,
    host            TEXT,
    method          TEXT,
    path            TEXT,
    decision        TEXT NOT NULL,          -- allow | deny | unauthenticated | error | public | bad_request
    status          INTEGER NOT NULL,
    reason          TEXT,
    policy_version  TEXT,
    latency_us      BIGINT NOT NULL DEFAULT 0,
    client_ip       TEXT,
    PRIMARY KEY (time, id)
) PARTITION BY RANGE (time);

-- Rows outside every daily partition (clock skew, a late replay) still land somewhere.
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_email_time ON audit_events (email, time);
CREATE INDEX audit_events_route_time ON audit_events (route, time);
CREATE INDEX audit_events_decision_time ON audit_events (decision, time);
-- A replayed spool never duplicates a row: inserts use ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX audit_events_dedupe ON audit_events (time, request_id, kind);

-- Creates the daily partitions from `start_day` for `days` days; idempotent.
CREATE FUNCTION gatehouse_audit_ensure_partitions(start_day DATE, days INTEGER) RETURNS VOID AS $$
DECLARE
    d DATE;
    name TEXT;
BEGIN
    FOR i IN 0..days - 1 LOOP
        d := start_day + i;
        name := 'audit_events_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                           name, d::timestamptz, (d + 1)::timestamptz);
        END IF;
    END LOOP;
END;
$$ LANGUAGE plpgsql;

-- Drops daily partitions older than `keep_days`; returns how many were dropped.
CREATE FUNCTION gatehouse_audit_drop_partitions(keep_days INTEGER) RETURNS INTEGER AS $$
DECLARE
    r RECORD;
    dropped INTEGER := 0;
    cutoff TEXT := 'audit_events_' || to_char(current_date - keep_days, 'YYYYMMDD');
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'audit_events' AND c.relname ~ '^audit_events_[0-9]{8}$'
               AND c.relname < cutoff LOOP
        EXECUTE format('DROP TABLE %I', r.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END;
$$ LANGUAGE plpgsql;

SELECT gatehouse_audit_ensure_partitions(current_date - 1, 9);

CREATE TABLE admin_actions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    detail      JSONB NOT NULL DEFAULT '{}'
);

-- Denials of the last 7 days, newest first.
CREATE VIEW audit_denials_recent AS
    SELECT time, email, tenant, route, host, method, path, decision, status, reason, policy_version, client_ip, request_id
    FROM audit_events
    WHERE decision IN ('deny', 'unauthenticated', 'error')
      AND time > now() - interval '7 days';

-- Per user and day: requests, denials, first and last seen.
CREATE VIEW audit_user_activity AS
    SELECT email, date_trunc('day', time) AS day,
           count(*) AS requests,
           count(*) FILTER (WHERE decision = 'deny') AS denials,
           min(time) AS first_seen, max(time) AS last_seen
    FROM audit_events
    WHERE email IS NOT NULL
    GROUP BY email, date_trunc('day', time);

-- Which policy bundle versions were live when, and how many decisions each made.
CREATE VIEW audit_policy_changes AS
    SELECT v.version, v.first_loaded_at, v.last_loaded_at, v.files,
           (SELECT count(*) FROM audit_events e WHERE e.policy_version = v.version) AS decisions
    FROM policy_versions v;
