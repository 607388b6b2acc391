#!/usr/bin/env bash
# The audit trail under the maximum sustained verify rate (docs/performance.md, "Audit under
# load"): a release `gatehouse serve` on SQLite, then on Postgres, takes wrk's closed loop (1
# thread, 32 connections) on a Rego route for AUDIT_LOAD_SECS seconds (default 60). Then it
# waits for the queue and the spool to empty and compares the decisions Gatehouse counted
# with the rows in audit_events. Prints, per backend: requests/s, the records written,
# spooled and overflowed, the largest RSS seen, and `lost` = decisions − rows, which must
# be 0 (and so must gatehouse_audit_dropped_total). Exits 1 when any record is missing.
#
#   server/benches/load/audit.sh              # needs wrk, psql and a Postgres at
#                                             # TEST_POSTGRES_URL or 127.0.0.1:5432
set -euo pipefail
cd "$(dirname "$0")/../../.."
for tool in wrk psql curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y ${tool/psql/postgresql-client}" >&2; exit 1; }
done
secs=${AUDIT_LOAD_SECS:-60}
pg_admin=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build --release -q -p gatehouse --bin gatehouse
work=$(mktemp -d)
pg_db="gatehouse_audit_load_$$"
cleanup() {
  kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true
  psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { # sum of a metric's samples
  curl -sf "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
failed=0
for backend in sqlite postgres; do
  port=$(free_port); admin=$(free_port)
  if [ "$backend" = sqlite ]; then
    db_url="sqlite://$work/gatehouse.db"
  else
    psql -q "$pg_admin" -c "CREATE DATABASE $pg_db" >/dev/null
    db_url="${pg_admin%/*}/$pg_db"
  fi
  cat > "$work/gatehouse.yaml" <<YAML
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
public_url: http://127.0.0.1:$port
database_url: $db_url
policies_dir: $PWD/policies
audit:
  spool_dir: $work/spool-$backend
cookie:
  secure: false
  secret: load-test-cookie-secret-0123456789abcdef
YAML
  GATEHOUSE_LOG=warn ./target/release/gatehouse serve --config "$work/gatehouse.yaml" 2>"$work/log-$backend" &
  echo $! > "$work/pid"
  pid=$(cat "$work/pid")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
  COOKIE=$(./target/release/gatehouse session create --config "$work/gatehouse.yaml" \
    --email ann@example.com --groups kitchen 2>/dev/null)
  export COOKIE ORIGINAL_URL=http://localhost/restaurant/orders
  # The largest RSS while loaded and while draining, sampled every half second.
  (max=0; while kill -0 "$pid" 2>/dev/null; do
     rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
     [ "${rss:-0}" -gt "$max" ] && max=$rss && echo "$max" > "$work/rss"
     sleep 0.5; done) &
  sampler=$!
  out=$(wrk -t1 -c32 -d"${secs}s" -s server/benches/load/verify.lua "http://127.0.0.1:$port/auth/verify")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  started=$(date +%s)
  while [ "$(metric gatehouse_audit_queue_depth)" != 0 ] || [ "$(metric gatehouse_audit_spool_pending)" != 0 ]; do
    [ $(( $(date +%s) - started )) -gt 600 ] && { echo "$backend: the audit trail did not drain in 10 minutes" >&2; break; }
    sleep 1
  done
  drained=$(( $(date +%s) - started ))
  decisions=$(metric gatehouse_decisions_total)
  if [ "$backend" = sqlite ]; then
    rows=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM audit_events WHERE kind = '"'verify'"'").fetchone()[0])' "$work/gatehouse.db")
  else
    rows=$(psql -qtA "$db_url" -c "SELECT count(*) FROM audit_events WHERE kind = 'verify'")
  fi
  echo "$backend: ${rps} verify req/s for ${secs} s${non2xx:+ (non-2xx $non2xx)}; decisions $decisions, rows $rows," \
    "lost $((decisions - rows)); written $(metric gatehouse_audit_written_total)," \
    "spooled $(metric gatehouse_audit_spooled_total), overflowed $(metric gatehouse_audit_overflow_total)," \
    "dropped $(metric gatehouse_audit_dropped_total); drained ${drained} s after the load; max RSS $(( $(cat "$work/rss" 2>/dev/null || echo 0) / 1024 )) MiB"
  [ "$decisions" = "$rows" ] && [ "$(metric gatehouse_audit_dropped_total)" = 0 ] || failed=1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
done
exit "$failed"
