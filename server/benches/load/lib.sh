# Shared by verify.sh and nginx.sh (sourced, from the repository root): a scratch directory
# removed on exit with everything started in it, free loopback ports, a release
# `gatehouse serve` on SQLite with the example bundle, and the no-op baseline server.

work=$(mktemp -d)
# Processes write their pid to "$work/NAME.pid"; `wait` lets them exit before the removal.
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; wait; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts Gatehouse on free ports ($port for verify, $admin) and waits until it is healthy;
# then sets COOKIE to a session of ann (groups kitchen, finance).
start_gatehouse() {
  port=$(free_port); admin=$(free_port)
  cat > "$work/gatehouse.yaml" <<YAML
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
public_url: http://127.0.0.1:$port
database_url: sqlite://$work/gatehouse.db
policies_dir: $PWD/policies
cookie:
  secure: false
  secret: load-test-cookie-secret-0123456789abcdef
YAML
  GATEHOUSE_LOG=warn ./target/release/gatehouse serve --config "$work/gatehouse.yaml" 2>"$work/log" &
  echo $! > "$work/gatehouse.pid"
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null || { cat "$work/log" >&2; exit 1; }
  COOKIE=$(./target/release/gatehouse session create --config "$work/gatehouse.yaml" \
    --email ann@example.com --groups kitchen,finance 2>/dev/null)
}

# start_noop NAME PORT: the no-op actix server (benches/load/noop_server.rs) on PORT.
start_noop() {
  ./target/release/examples/load-noop-server "127.0.0.1:$2" &
  echo $! > "$work/$1.pid"
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$2/" && return; sleep 0.05; done
  echo "the no-op server $1 did not start on port $2" >&2; exit 1
}
