-- The security team's questions at 10 million rows (docs/audit.md gives each question's
-- time and the index that serves it; docs/performance.md the write cost).

-- The primary key (time, id) already serves every range scan on time.
DROP INDEX audit_events_time;

-- The spool-replay dedupe (same columns, so the same uniqueness) now leads with the request
-- id: "what decided request X" is an index probe per partition instead of a full scan.
DROP INDEX audit_events_dedupe;
CREATE UNIQUE INDEX audit_events_request ON audit_events (request_id, time, kind);

-- Each search filter's index ends in (time, id), the order of every page (newest first,
-- keyset pagination), so the first page of a filter matching millions of rows reads one page.
DROP INDEX audit_events_email_time;
CREATE INDEX audit_events_email ON audit_events (email, time, id);
DROP INDEX audit_events_route_time;
CREATE INDEX audit_events_route ON audit_events (route, time, id);
DROP INDEX audit_events_decision_time;
CREATE INDEX audit_events_decision ON audit_events (decision, time, id);
CREATE INDEX audit_events_tenant ON audit_events (tenant, time, id);

-- Narrow questions get small partial indexes that hold their answer's columns.
-- Denials by path (a prefix such as '/admin/%'; text_pattern_ops serves LIKE in any collation).
CREATE INDEX audit_events_denied_path ON audit_events (path text_pattern_ops, time)
    WHERE decision = 'deny';
-- Unauthenticated requests by time, answered from the index alone.
CREATE INDEX audit_events_unauthenticated ON audit_events (time) INCLUDE (client_ip, reason)
    WHERE decision = 'unauthenticated';
-- Failed logins.
CREATE INDEX audit_events_failed_logins ON audit_events (time) INCLUDE (email)
    WHERE kind = 'login' AND decision <> 'allow';

-- Daily rollups kept by the partition job (gatehouse_audit_rollup, hourly): the views below
-- read them for the days rolled up and audit_events only after `through`.
CREATE TABLE audit_rollup_state (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    through    TIMESTAMPTZ NOT NULL          -- rows before this time are in the rollups
);
INSERT INTO audit_rollup_state (through) VALUES ('-infinity');

-- Decisions per policy version per UTC day.
CREATE TABLE audit_daily_versions (
    policy_version  TEXT NOT NULL,
    day             DATE NOT NULL,
    decisions       BIGINT NOT NULL,
    PRIMARY KEY (policy_version, day)
);

-- Requests and denials per user per UTC day.
CREATE TABLE audit_daily_users (
    email       TEXT NOT NULL,
    day         DATE NOT NULL,
    requests    BIGINT NOT NULL,
    denials     BIGINT NOT NULL,
    first_seen  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (email, day)
);

-- Recounts the UTC days from `from_day` (and any not yet rolled up) up to `upto`, then
-- marks `upto` as rolled up. Recounting whole days keeps the rollup exact for rows that
-- arrive late (a replayed spool) as long as they land within the days recounted; the job
-- recounts yesterday and today on its first run of each UTC day. One UTC day at a time, so
-- each aggregate fits in memory (5,000 users a day) instead of sorting the whole range.
-- Replicas serialize on the state row.
CREATE FUNCTION gatehouse_audit_rollup(from_day DATE, upto TIMESTAMPTZ) RETURNS VOID AS $$
DECLARE
    done TIMESTAMPTZ;
    day_start TIMESTAMPTZ;
    day_end TIMESTAMPTZ;
BEGIN
    SELECT through INTO done FROM audit_rollup_state FOR UPDATE;
    day_start := LEAST(done, from_day::timestamp AT TIME ZONE 'UTC');
    IF upto <= day_start THEN
        RETURN;
    END IF;
    IF day_start = '-infinity' THEN
        -- The first run: from the oldest row.
        SELECT min(time) INTO day_start FROM audit_events;
        IF day_start IS NULL THEN
            UPDATE audit_rollup_state SET through = upto;
            RETURN;
        END IF;
    END IF;
    DELETE FROM audit_daily_versions WHERE day >= from_day;
    DELETE FROM audit_daily_users WHERE day >= from_day;
    -- Days before from_day that were rolled up only in part (`through` fell within them)
    -- are completed by adding their rows from `through` on.
    WHILE day_start < upto LOOP
        day_end := LEAST(upto,
            (date_trunc('day', day_start AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC');
        -- One scan of the day feeds both rollups.
        WITH day_rows AS (
            SELECT email, policy_version, count(*) AS n,
                   count(*) FILTER (WHERE decision = 'deny') AS denials,
                   min(time) AS first_seen, max(time) AS last_seen
            FROM audit_events
            WHERE time >= day_start AND time < day_end
            GROUP BY email, policy_version
        ), versions AS (
            INSERT INTO audit_daily_versions (policy_version, day, decisions)
                SELECT policy_version, (day_start AT TIME ZONE 'UTC')::date, sum(n)
                FROM day_rows WHERE policy_version IS NOT NULL
                GROUP BY policy_version
            ON CONFLICT (policy_version, day) DO UPDATE
                SET decisions = audit_daily_versions.decisions + EXCLUDED.decisions
        )
        INSERT INTO audit_daily_users (email, day, requests, denials, first_seen, last_seen)
            SELECT email, (day_start AT TIME ZONE 'UTC')::date, sum(n), sum(denials),
                   min(first_seen), max(last_seen)
            FROM day_rows WHERE email IS NOT NULL
            GROUP BY email
        ON CONFLICT (email, day) DO UPDATE
            SET requests = audit_daily_users.requests + EXCLUDED.requests,
                denials = audit_daily_users.denials + EXCLUDED.denials,
                first_seen = LEAST(audit_daily_users.first_seen, EXCLUDED.first_seen),
                last_seen = GREATEST(audit_daily_users.last_seen, EXCLUDED.last_seen);
        day_start := day_end;
    END LOOP;
    UPDATE audit_rollup_state SET through = upto;
END;
$$ LANGUAGE plpgsql;

-- Per user and UTC day: requests, denials, first and last seen (rollup + rows since).
DROP VIEW audit_user_activity;
CREATE VIEW audit_user_activity AS
    SELECT email, day, sum(requests)::BIGINT AS requests, sum(denials)::BIGINT AS denials,
           min(first_seen) AS first_seen, max(last_seen) AS last_seen
    FROM (
        SELECT email, day::timestamp AT TIME ZONE 'UTC' AS day, requests, denials,
               first_seen, last_seen
        FROM audit_daily_users
        UNION ALL
        SELECT email, date_trunc('day', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*),
               count(*) FILTER (WHERE decision = 'deny'), min(time), max(time)
        FROM audit_events
        WHERE email IS NOT NULL AND time >= (SELECT through FROM audit_rollup_state)
        GROUP BY 1, 2
    ) parts
    GROUP BY email, day;

-- Decisions per policy version since the rollups' `through`. A function, so that the query
-- is planned knowing that time (an index range on the newest partition): in a view, the
-- subquery's bound is unknown at planning, estimated at a third of the table, and today's
-- partition is scanned whole.
CREATE FUNCTION gatehouse_audit_versions_since_rollup()
RETURNS TABLE (policy_version TEXT, decisions BIGINT) AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT policy_version, count(*) FROM audit_events
         WHERE policy_version IS NOT NULL AND time >= $1 GROUP BY 1'
        USING (SELECT through FROM audit_rollup_state);
END;
$$ LANGUAGE plpgsql STABLE;

-- Which policy bundle versions were live when, and how many decisions each made: one
-- grouped join over the rollup and the rows since (it was a full count per version).
DROP VIEW audit_policy_changes;
CREATE VIEW audit_policy_changes AS
    SELECT v.version, v.first_loaded_at, v.last_loaded_at, v.files,
           COALESCE(d.decisions, 0)::BIGINT AS decisions
    FROM policy_versions v
    LEFT JOIN (
        SELECT policy_version, sum(decisions) AS decisions
        FROM (
            SELECT policy_version, decisions FROM audit_daily_versions
            UNION ALL
            SELECT policy_version, decisions FROM gatehouse_audit_versions_since_rollup()
        ) parts
        GROUP BY policy_version
    ) d ON d.policy_version = v.version;
