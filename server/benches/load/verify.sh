#!/usr/bin/env bash
# /auth/verify over HTTP against its ceiling (issue 14 item 1; docs/performance.md "Over HTTP").
# A release `gatehouse serve` (SQLite, the example bundle) and the baseline, a no-op actix
# server served the same way (benches/load/noop_server.rs), take the same load in one run:
#   1. closed loop: wrk, 1 thread, 32 connections, LOAD_SECS (default 8) seconds per case;
#      prints requests/s, wrk's p99 and each case as a ratio of the no-op server;
#   2. open loop at half of each case's maximum: benches/load/open_loop.rs sends requests
#      at a fixed rate for LOAD_SECS seconds and prints p50/p99/p999 measured from each
#      request's due time (no coordinated omission).
# Everything shares the machine's cores; the ratios are the figures, not the absolutes.
#
#   server/benches/load/verify.sh        (needs wrk: apt-get install -y wrk)
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
secs=${LOAD_SECS:-8}
cargo build --release -q -p gatehouse --bin gatehouse --example load-noop-server --example load-open-loop
. server/benches/load/lib.sh
start_gatehouse
noop=$(free_port); start_noop noop "$noop"
export COOKIE
verify="http://127.0.0.1:$port/auth/verify"
cases=("noop|http://127.0.0.1:$noop/auth/verify|http://localhost/healthz"
  "public|$verify|http://localhost/healthz"
  "rego|$verify|http://localhost/restaurant/orders"
  "cel|$verify|http://localhost/reports")
declare -A rps
echo "closed loop: wrk -t1 -c32 -d${secs}s"
for c in "${cases[@]}"; do
  IFS='|' read -r name target original <<<"$c"
  export ORIGINAL_URL=$original
  out=$(wrk -t1 -c32 -d"${secs}s" --latency -s server/benches/load/verify.lua "$target")
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  awk -v n="$name" -v r="${rps[$name]}" -v b="${rps[noop]}" -v p="$p99" -v x="$non2xx" \
    'BEGIN { printf "  %-7s %9.0f req/s  %.2fx noop  wrk p99 %s%s\n", n, r, r / b, p, (x == "" ? "" : "  non-2xx " x) }'
done
echo "open loop at half of each case's maximum, ${secs}s, 32 connections (latency from the due time)"
for c in "${cases[@]}"; do
  IFS='|' read -r name target original <<<"$c"
  rate=$(awk -v r="${rps[$name]}" 'BEGIN { printf "%d", r / 2 }')
  out=$(./target/release/examples/load-open-loop "$target" "$rate" "$secs" 32 \
    "X-Original-URL: $original" "X-Original-Method: GET" "Cookie: _gatehouse=$COOKIE")
  echo "  $name: $out"
done
