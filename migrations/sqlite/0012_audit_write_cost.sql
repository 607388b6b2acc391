-- SQLite only (issue 14): the audit writer's cost per row. Migration 0004's dedupe index led
-- with the request id, which is random (a UUID, or the ingress's random $request_id), so each
-- insert landed on a random page of a large index and every transaction rewrote about one
-- page per row into the WAL: half the writer's CPU (59 µs a row against 30 with the index
-- below, measured with all of this table's indexes on 100,000 rows), and on a single node the
-- writer shares its cores with verify.
--
-- The dedupe index leads with the time again, so inserts append; it also serves every range
-- scan on time, so the separate time index goes. A lookup by request id alone now scans the
-- table: bound it by time (docs/audit.md, "Which policy version allowed a request").
DROP INDEX audit_events_request;
DROP INDEX audit_events_time;
CREATE UNIQUE INDEX audit_events_dedupe ON audit_events (time, request_id, kind);
