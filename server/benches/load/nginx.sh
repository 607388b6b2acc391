#!/usr/bin/env bash
# NGINX auth_request in front of Gatehouse against the same NGINX in front of a no-op auth
# server (issue 14 item 1; docs/performance.md "Behind NGINX"). NGINX runs the shipped
# deploy/nginx/nginx.conf as shipped, only its addresses rewritten to loopback ports (the
# same rewrite as the end-to-end tests); the app behind it is the no-op actix server.
#   1. closed loop: wrk, 1 thread, 32 connections, LOAD_SECS (default 8) seconds per case,
#      GET /restaurant/orders with a session (a Rego route, allowed); prints requests/s and
#      Gatehouse as a ratio of the no-op auth server;
#   2. open loop at half of each case's maximum, latency from each request's due time.
#
#   server/benches/load/nginx.sh       (needs wrk and nginx: apt-get install -y wrk nginx)
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx is needed: apt-get install -y nginx" >&2; exit 1; }
secs=${LOAD_SECS:-8}
cargo build --release -q -p gatehouse --bin gatehouse --example load-noop-server --example load-open-loop
. server/benches/load/lib.sh
start_gatehouse
noop_auth=$(free_port); start_noop noop-auth "$noop_auth"
app=$(free_port); start_noop app "$app"

# The shipped file, addresses rewritten; `grep -q` first so a changed file fails loudly.
start_nginx() { # name auth_port front_port
  local conf="$work/nginx-$1.conf"
  for s in "server gatehouse:4180;" "server restaurant:8080;" "server marketing:8080;" "listen 80;"; do
    grep -qF "$s" deploy/nginx/nginx.conf || { echo "deploy/nginx/nginx.conf no longer contains '$s'" >&2; exit 1; }
  done
  sed -e "s/server gatehouse:4180;/server 127.0.0.1:$2;/" \
    -e "s/server restaurant:8080;/server 127.0.0.1:$app;/" \
    -e "s/server marketing:8080;/server 127.0.0.1:$app;/" \
    -e "s/listen 80;/listen 127.0.0.1:$3;/" deploy/nginx/nginx.conf >"$conf"
  "$nginx" -c "$conf" -g "pid $work/nginx-$1.pid; error_log $work/nginx-$1-error.log;"
  for _ in $(seq 1 50); do [ -s "$work/nginx-$1.pid" ] && break; sleep 0.1; done
}
front_noop=$(free_port); front_gatehouse=$(free_port)
start_nginx noop "$noop_auth" "$front_noop"
start_nginx gatehouse "$port" "$front_gatehouse"

for front in "$front_noop" "$front_gatehouse"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: _gatehouse=$COOKIE" "http://127.0.0.1:$front/restaurant/orders")
  [ "$status" = 200 ] || { echo "GET /restaurant/orders through NGINX on $front answered $status" >&2; cat "$work/log" >&2; exit 1; }
done

cases=("noop-auth|$front_noop" "gatehouse|$front_gatehouse")
declare -A rps
echo "closed loop through NGINX: wrk -t1 -c32 -d${secs}s GET /restaurant/orders"
for c in "${cases[@]}"; do
  IFS='|' read -r name front <<<"$c"
  out=$(wrk -t1 -c32 -d"${secs}s" --latency -H "Cookie: _gatehouse=$COOKIE" "http://127.0.0.1:$front/restaurant/orders")
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  awk -v n="$name" -v r="${rps[$name]}" -v b="${rps[noop-auth]}" -v p="$p99" -v x="$non2xx" \
    'BEGIN { printf "  %-9s %9.0f req/s  %.2fx noop auth  wrk p99 %s%s\n", n, r, r / b, p, (x == "" ? "" : "  non-2xx " x) }'
done
echo "open loop at half of each case's maximum, ${secs}s, 32 connections (latency from the due time)"
for c in "${cases[@]}"; do
  IFS='|' read -r name front <<<"$c"
  rate=$(awk -v r="${rps[$name]}" 'BEGIN { printf "%d", r / 2 }')
  out=$(./target/release/examples/load-open-loop "http://127.0.0.1:$front/restaurant/orders" "$rate" "$secs" 32 \
    "Cookie: _gatehouse=$COOKIE")
  echo "  $name: $out"
done
