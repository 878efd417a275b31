#!/usr/bin/env bash
# Saga latency (POST /orders → COMPLETED, read from the event store) of a release build with the
# simulated gateway at delay 0, beside PostgreSQL's own one-event-per-commit rate
# (shared/bench/pg_limit.sh) measured in the same run.
#
# Usage: ops/bench/saga_latency.sh [ADMIN_URL] [seconds]
#   ADMIN_URL  server to use (default postgres://postgres@127.0.0.1:5432/postgres); a scratch
#              database reserva_saga_bench is created there and dropped afterwards.
#   env CUSTOMERS (default 1,16,64), POLL_MS (default 5), MAX_POLLS (GETs/s in all, default 1000).
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN_URL=${1:-postgres://postgres@127.0.0.1:5432/postgres}
SECS=${2:-10}
DB_URL="${ADMIN_URL%/*}/reserva_saga_bench"
PORT=${PORT:-18081}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/reserva-target}
cargo build --release -q -p api -p load
psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS reserva_saga_bench WITH (FORCE)" -c "CREATE DATABASE reserva_saga_bench"
DATABASE_URL=$DB_URL RESERVA_HTTP__PORT=$PORT RESERVA_RATE_LIMIT__ENABLED=false RESERVA_GATEWAY__SIMULATED_DELAY_MS=0 RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/reserva" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS reserva_saga_bench WITH (FORCE)"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.2; done
echo "== PostgreSQL reference (shared/bench/pg_limit.sh, ${SECS}s per point)"
bash ../shared/bench/pg_limit.sh "$ADMIN_URL" "$SECS" 1 8 32
echo "== reserva saga latency (ops/load reserva-saga-latency, ${SECS}s per point)"
"$CARGO_TARGET_DIR/release/reserva-saga-latency" --url "http://127.0.0.1:$PORT" --database-url "$DB_URL" \
  --customers "${CUSTOMERS:-1,16,64}" --seconds "$SECS" --poll-ms "${POLL_MS:-5}" --max-polls "${MAX_POLLS:-1000}"
