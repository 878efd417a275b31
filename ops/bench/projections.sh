#!/usr/bin/env bash
# Read-side benchmarks of a release build, each beside a reference measured in the same run:
#   1. rebuild throughput over EVENTS generated events (reserva-fill), per projection and --all,
#      and `projections verify` (fold and compare) per projection, beside a raw sequential read
#      of the events table in feed order (reserva-fill --scan);
#   2. projection lag (append → visible in the read model) under a steady RATE commands/s
#      (reserva-load --rate), from the reserva_projection_lag_seconds histogram, beside
#      PostgreSQL's own one-event-per-commit rate (shared/bench/pg_limit.sh).
#
# Usage: ops/bench/projections.sh [ADMIN_URL]
#   env: EVENTS (1000000) RATE (1000) SECS (20) PORT (18080)
#        SAGAS_REPLAY=1: the lag run's sagas replay the filled history (as before 2026-12-03)
#   A scratch database reserva_bench_read is created on ADMIN_URL's server and dropped after.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN_URL=${1:-postgres://postgres@127.0.0.1:5432/postgres}
EVENTS=${EVENTS:-1000000}
RATE=${RATE:-1000}
SECS=${SECS:-20}
PORT=${PORT:-18080}
DB=reserva_bench_read
export DATABASE_URL="${ADMIN_URL%/*}/$DB"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/reserva-target}
export RUST_LOG=${RUST_LOG:-warn}
BIN=$CARGO_TARGET_DIR/release
cargo build --release -q -p api -p load
tmp=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$BIN/reserva" migrate

echo "== fill: $EVENTS events"
"$BIN/reserva-fill" --events "$EVENTS"
psql -Xq "$DATABASE_URL" -c "VACUUM ANALYZE events"

echo "== reference: raw sequential read of the events table in feed order"
"$BIN/reserva-fill" --scan --runs 3

echo "== rebuild, one projection at a time"
for p in orders bookings stock_items payments; do "$BIN/reserva" rebuild "$p"; done
echo "== rebuild --all (side by side)"
start=$(date +%s.%N)
"$BIN/reserva" rebuild --all
end=$(date +%s.%N)
awk -v n="$EVENTS" -v s="$start" -v e="$end" \
  'BEGIN { printf "rebuild --all: %d events in %.2f s = %.0f events/s\n", n, e - s, n / (e - s) }'

echo "== verify, one projection at a time (fold from the store, compare row by row)"
for p in orders bookings stock_items payments; do "$BIN/reserva" projections verify "$p"; done
start=$(date +%s.%N)
"$BIN/reserva" projections verify --all >/dev/null
end=$(date +%s.%N)
awk -v n="$EVENTS" -v s="$start" -v e="$end" \
  'BEGIN { printf "verify --all: %d events in %.2f s = %.0f events/s\n", n, e - s, n / (e - s) }'

echo "== reference: PostgreSQL one-event-per-commit rate (shared/bench/pg_limit.sh, 5 s per point)"
bash ../shared/bench/pg_limit.sh "$ADMIN_URL" 5 1 8

echo "== projection lag at a steady $RATE commands/s for ${SECS}s"
# The sagas start where a live system's would stand: past the filled history, which they would
# have handled as it happened. Left at the start, they replay a million events (issuing
# commands for every unfinished order) during the measurement. SAGAS_REPLAY=1 keeps that.
if [ "${SAGAS_REPLAY:-0}" != 1 ]; then
  psql -Xq "$DATABASE_URL" -c "
    INSERT INTO subscriptions (name, transaction_id, global_position)
    SELECT saga, head.transaction_id::text::bigint, head.global_position
    FROM unnest(ARRAY['order_saga', 'booking_saga']) AS saga,
         (SELECT transaction_id, global_position FROM events
          ORDER BY transaction_id DESC, global_position DESC LIMIT 1) AS head
    ON CONFLICT (name) DO UPDATE
      SET transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position"
fi
# Client errors (the re-registrations below answer 409) would flood the log at warn.
RUST_LOG=error RESERVA_HTTP__PORT=$PORT RESERVA_RATE_LIMIT__ENABLED=false "$BIN/reserva" serve &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.2; done
# Register the SKUs first (closed loop), so that only the paced run falls between the scrapes.
"$BIN/reserva-load" --url "http://127.0.0.1:$PORT" --skus 2000 --clients 1 --seconds 1 --prefix LAG >/dev/null
sleep 1
curl -s "http://127.0.0.1:$PORT/metrics" >"$tmp/before"
"$BIN/reserva-load" --url "http://127.0.0.1:$PORT" --skus 2000 --prefix LAG --rate "$RATE" --seconds "$SECS"
sleep 1
curl -s "http://127.0.0.1:$PORT/metrics" >"$tmp/after"
python3 ops/bench/lag_quantiles.py "$tmp/before" "$tmp/after"
"$BIN/reserva" projections
