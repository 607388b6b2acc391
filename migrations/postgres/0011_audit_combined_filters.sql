-- Audit searches that combine correlated filters, at 10 million rows (docs/audit.md,
-- "Searching"; the plans are in docs/performance.md). A user's tenant is always the same and
-- a route's denials cluster, so the planner, multiplying each filter's selectivity as if
-- they were independent, expected ~1 row a partition for `--user --route --decision deny
-- --tenant` (there were ~100), fetched every row of the route from the heap and sorted them:
-- 110–790 ms on 10 M rows.

-- 1. Two more (…, time, id) indexes, so a route searched together with a user, or with a
--    decision, is one ordered walk that stops at the page's end, like a single filter.
CREATE INDEX audit_events_email_route ON audit_events (email, route, time, id);
CREATE INDEX audit_events_route_decision ON audit_events (route, decision, time, id);

-- 2. Extended statistics on each partition (statistics on the partitioned parent are not
--    used to plan the partitions): the most common (email, tenant, route, decision)
--    combinations and the dependencies between them, so a search's row estimate is near
--    the truth and the planner walks an index in page order instead of sorting everything.
--    A larger list than the default (300 → a 90,000-row sample) is what makes a heavy
--    user's denials on one route appear in it; ANALYZE of a partition takes ~4 s instead of
--    ~0.3 s (autovacuum runs it as a partition fills).
CREATE OR REPLACE FUNCTION gatehouse_audit_partition_statistics(part TEXT) RETURNS VOID AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_statistic_ext WHERE stxname = part || '_filters') THEN
        EXECUTE format('CREATE STATISTICS %I (dependencies, mcv) ON email, tenant, route, decision FROM %I',
                       part || '_filters', part);
        EXECUTE format('ALTER STATISTICS %I SET STATISTICS 300', part || '_filters');
    END IF;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION gatehouse_audit_ensure_partitions(start_day DATE, days INTEGER) RETURNS VOID AS $$
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
        PERFORM gatehouse_audit_partition_statistics(name);
    END LOOP;
END;
$$ LANGUAGE plpgsql;

-- The partitions that exist already, the default one included; they are analyzed so the
-- statistics exist from now on rather than from their next autovacuum.
DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'audit_events' LOOP
        PERFORM gatehouse_audit_partition_statistics(r.relname);
        EXECUTE format('ANALYZE %I', r.relname);
    END LOOP;
END;
$$;

-- 3. audit_user_activity: the rows since the rollups' `through` were bounded by a subquery,
--    unknown when the view is planned, so the planner expected a third of the user's rows,
--    costed the plan past `jit_above_cost`, and JIT compilation took 125 of the 150 ms. A
--    STABLE function is evaluated for the estimate and for partition pruning: the plan
--    touches only the partitions since `through` and costs what it reads (1.5 ms).
CREATE FUNCTION gatehouse_audit_rollup_through() RETURNS TIMESTAMPTZ AS $$
    SELECT through FROM audit_rollup_state
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE VIEW audit_user_activity AS
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
        WHERE email IS NOT NULL AND time >= gatehouse_audit_rollup_through()
        GROUP BY 1, 2
    ) parts
    GROUP BY email, day;
