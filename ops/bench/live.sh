#!/usr/bin/env bash
# Saga latency with and without 200 server-sent-event clients watching: the cost of live views
# to the flows they watch. Three runs of reserva-saga-latency at 16 customers on one service —
# without clients, with 200 `curl -N` streams on the stock items the orders take, without
# again (the spread of the two runs without is the noise) — beside PostgreSQL's own
# one-event-per-commit rate measured in the same run.
#
# Usage: ops/bench/live.sh [ADMIN_URL] [seconds]   env CLIENTS (200), CUSTOMERS (16)
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN_URL=${1:-postgres://postgres@127.0.0.1:5432/postgres}
SECS=${2:-10}
CLIENTS=${CLIENTS:-200}
CUSTOMERS=${CUSTOMERS:-16}
DB_URL="${ADMIN_URL%/*}/reserva_live_bench"
PORT=${PORT:-18082}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/reserva-target}
cargo build --release -q -p api -p load
psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS reserva_live_bench WITH (FORCE)" -c "CREATE DATABASE reserva_live_bench"
DATABASE_URL=$DB_URL RESERVA_HTTP__PORT=$PORT RESERVA_RATE_LIMIT__ENABLED=false RESERVA_GATEWAY__SIMULATED_DELAY_MS=0 RUST_LOG=error \
  "$CARGO_TARGET_DIR/release/reserva" serve &
server=$!
watchers=()
cleanup() {
  for w in "${watchers[@]}"; do kill "$w" 2>/dev/null || true; done
  kill $server 2>/dev/null; wait $server 2>/dev/null
  psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS reserva_live_bench WITH (FORCE)"
}
trap cleanup EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.2; done
base="http://127.0.0.1:$PORT"
run() {
  echo "== $1"
  "$CARGO_TARGET_DIR/release/reserva-saga-latency" --url "$base" --database-url "$DB_URL" \
    --customers "$CUSTOMERS" --seconds "$SECS" | grep -A2 '^customers'
}
echo "== PostgreSQL reference (shared/bench/pg_limit.sh, ${SECS}s per point)"
bash ../shared/bench/pg_limit.sh "$ADMIN_URL" "$SECS" 1 8
run "saga latency, no live clients (registers the SKUs)"
for i in $(seq 0 $((CLIENTS - 1))); do
  sku=$(printf 'SAGA-%06d' $((i % 1000)))
  curl -sN "$base/api/v1/stock-items/$sku/events" -o /dev/null &
  watchers+=($!)
done
sleep 1
echo "live streams open: $(curl -s "$base/metrics" | awk '/^reserva_live_streams /{print $2}')"
run "saga latency, $CLIENTS live clients watching the stock items the orders take"
echo "dropped as too slow: $(curl -s "$base/metrics" | awk '/^reserva_live_followers_dropped_total /{print $2}')"
for w in "${watchers[@]}"; do kill "$w" 2>/dev/null || true; done
watchers=()
sleep 1
run "saga latency, no live clients again"
