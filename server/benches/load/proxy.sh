#!/usr/bin/env bash
# Load test of the built-in proxy with wrk: a release build on SQLite, NGINX as the upstream
# (a static 200), 10 s per case, 2 threads, 32 connections, on loopback. Prints requests/s
# and p99 for the upstream alone (the baseline), through the proxy on a public route, and
# through the proxy with a session on a CEL route, and each as a ratio of the baseline.
# Usage: server/benches/load/proxy.sh   (needs wrk and nginx: apt-get install -y wrk nginx)
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx is needed: apt-get install -y nginx" >&2; exit 1; }
cargo build --release -q
work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; kill $(cat "$work/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free); admin=$(free); proxy=$(free); upstream=$(free)
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$upstream; location / { return 200 "ok\n"; } }
}
CONF
"$nginx" -c "$work/nginx.conf"
mkdir -p "$work/policies"
cat > "$work/policies/routes.yaml" <<YAML
default: deny
routes:
  - name: open
    path: /open
    public: true
    upstream: http://127.0.0.1:$upstream
  - name: app
    path: /app
    cel: "'kitchen' in user.groups"
    upstream: http://127.0.0.1:$upstream
YAML
cat > "$work/gatehouse.yaml" <<YAML
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
public_url: http://127.0.0.1:$port
database_url: sqlite://gatehouse.db
policies_dir: policies
cookie:
  secure: false
  secret: load-test-cookie-secret-0123456789abcdef
proxy:
  listen: 127.0.0.1:$proxy
YAML
GATEHOUSE_LOG=warn ./target/release/gatehouse serve --config "$work/gatehouse.yaml" 2>"$work/log" &
echo $! > "$work/pid"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
COOKIE=$(./target/release/gatehouse session create --config "$work/gatehouse.yaml" \
  --email ann@example.com --groups kitchen 2>/dev/null)
export COOKIE
declare -A rps
for case in "upstream:http://127.0.0.1:$upstream/open" "public:http://127.0.0.1:$proxy/open" "session:http://127.0.0.1:$proxy/app"; do
  name=${case%%:*}; url=${case#*:}
  out=$(wrk -t2 -c32 -d10s --latency -s server/benches/load/proxy.lua "$url")
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$name: ${rps[$name]} req/s, p99 $p99${non2xx:+, non-2xx $non2xx}"
done
for name in public session; do
  awk -v a="${rps[$name]}" -v b="${rps[upstream]}" -v n="$name" 'BEGIN { printf "%s through the proxy relative to the upstream alone: %.2fx\n", n, a / b }'
done
