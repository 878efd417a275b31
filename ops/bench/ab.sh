#!/usr/bin/env bash
# Two builds of `reserva` side by side, alternating, on the same fresh database each time: the
# way to tell a change from this machine's run-to-run noise (±15 %). Per round and build it runs
# stock-item GETs (reserva-http-load), restocks (reserva-load) and saga latency at 16 customers
# (reserva-saga-latency), each SECS seconds.
#
# Usage: ops/bench/ab.sh BIN_A BIN_B [ROUNDS]
#   BIN_A, BIN_B  two `reserva` binaries (e.g. copies of target/release/reserva before and
#                 after a change)
#   ROUNDS        default 2
#   env ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres; a scratch database
#       reserva_ab is created there and dropped after), SECS (default 8), CLIENTS (default "8,32"),
#       PORT (default 18083), PARTS (default "restock get saga": which measures to run)
# The load drivers come from this checkout's release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { sed -n '2,15p' "$0"; exit 2; }
A=$1
B=$2
ROUNDS=${3:-2}
ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_URL="${ADMIN_URL%/*}/reserva_ab"
SECS=${SECS:-8}
CLIENTS=${CLIENTS:-8,32}
PORT=${PORT:-18083}
PARTS=${PARTS:-restock get saga}
URL=http://127.0.0.1:$PORT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/reserva-target}
BIN=$CARGO_TARGET_DIR/release
cargo build --release -q -p load

server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS reserva_ab WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

run() { # binary label
  psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS reserva_ab WITH (FORCE)" -c "CREATE DATABASE reserva_ab" 2>/dev/null
  DATABASE_URL=$DB_URL RESERVA_HTTP__PORT=$PORT RESERVA_RATE_LIMIT__ENABLED=false \
    RESERVA_GATEWAY__SIMULATED_DELAY_MS=0 RUST_LOG=error "$1" serve 2>/dev/null &
  server=$!
  for _ in $(seq 150); do curl -sf "$URL/health/ready" >/dev/null && break; sleep 0.2; done
  echo "== $2 ($1)"
  # The GETs read the items the restock driver registers, so `get` runs it too.
  if [[ " $PARTS " == *" restock "* || " $PARTS " == *" get "* ]]; then
    "$BIN/reserva-load" --url "$URL" --skus 4000 --clients "$CLIENTS" --seconds "$SECS" | sed 's/^/restock /'
  fi
  if [[ " $PARTS " == *" get "* ]]; then
    "$BIN/reserva-http-load" --label get --url "$URL/api/v1/stock-items/{id}" --ids 4000 --id-prefix LOAD- \
      --clients "$CLIENTS" --seconds "$SECS"
  fi
  if [[ " $PARTS " == *" saga "* ]]; then
    "$BIN/reserva-saga-latency" --url "$URL" --database-url "$DB_URL" --customers 16 --seconds "$SECS" \
      --poll-ms 5 --max-polls 1000 | grep -A1 '^customers' | sed 's/^/saga /'
  fi
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
}

for round in $(seq "$ROUNDS"); do
  echo "### round $round"
  run "$A" A
  run "$B" B
done
