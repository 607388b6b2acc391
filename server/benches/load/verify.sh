#!/usr/bin/env bash
# Load test of /auth/verify with wrk: a release build on SQLite with the example bundle,
# 10 s per case, 2 threads, 32 connections, on loopback. Prints requests/s and latency for
# a public route (the baseline), a Rego route and a CEL route, and each as a ratio of the
# baseline. Usage: server/benches/load/verify.sh   (needs wrk: apt-get install -y wrk)
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q
work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/gatehouse.yaml" <<YAML
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
public_url: http://127.0.0.1:$port
database_url: sqlite://gatehouse.db
policies_dir: $PWD/policies
cookie:
  secure: false
  secret: load-test-cookie-secret-0123456789abcdef
YAML
GATEHOUSE_LOG=warn ./target/release/gatehouse serve --config "$work/gatehouse.yaml" 2>"$work/log" &
echo $! > "$work/pid"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
COOKIE=$(./target/release/gatehouse session create --config "$work/gatehouse.yaml" \
  --email ann@example.com --groups kitchen,finance 2>/dev/null)
export COOKIE
declare -A rps
for case in "public:http://localhost/healthz" "rego:http://localhost/restaurant/orders" "cel:http://localhost/reports"; do
  name=${case%%:*}; export ORIGINAL_URL=${case#*:}
  out=$(wrk -t2 -c32 -d10s --latency -s server/benches/load/verify.lua "http://127.0.0.1:$port/auth/verify")
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$name: ${rps[$name]} req/s, p99 $p99${non2xx:+, non-2xx $non2xx}"
done
for name in rego cel; do
  awk -v a="${rps[$name]}" -v b="${rps[public]}" -v n="$name" 'BEGIN { printf "%s throughput relative to public: %.2fx\n", n, a / b }'
done
