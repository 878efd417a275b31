#!/usr/bin/env bash
# Costs of the audit tooling on a release build, each beside a reference measured in the same run:
#   1. `audit verify` (recompute every hash chain) over EVENTS generated events, beside a raw
#      sequential read of the events table in feed order (reserva-fill --scan);
#   2. the chain trigger's cost on the append path: pgbench appends to the migrated events table
#      with the `events_chain` trigger on, then disabled, beside shared/bench/pg_limit.sh insert1;
#   3. a cold load of a StockItem with COLD events, with and without its snapshot, beside a raw
#      read of its rows, for a bounded history and one where nothing can be forgotten.
#
# Usage: ops/bench/audit.sh [ADMIN_URL]
#   env: EVENTS (1000000) COLD (100000) SECS (10) CLIENTS ("1 8 32")
#        PARTS ("verify chain cold": which of the three to run)
#   A scratch database reserva_bench_audit is created on ADMIN_URL's server and dropped after.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN_URL=${1:-postgres://postgres@127.0.0.1:5432/postgres}
EVENTS=${EVENTS:-1000000}
COLD=${COLD:-100000}
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-1 8 32}
PARTS=" ${PARTS:-verify chain cold} "
DB=reserva_bench_audit
export DATABASE_URL="${ADMIN_URL%/*}/$DB"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/reserva-target}
export RUST_LOG=${RUST_LOG:-warn}
BIN=$CARGO_TARGET_DIR/release
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
cargo build --release -q -p api -p load
tmp=$(mktemp -d)
cleanup() {
  psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$BIN/reserva" migrate

if [[ $PARTS == *" verify "* ]]; then
echo "== fill: $EVENTS events (chained by the trigger as they are written)"
# One writer: the chain trigger reads each event's predecessor, which must have committed (as
# the bus guarantees); concurrent writers of one history would chain some events from nothing.
"$BIN/reserva-fill" --events "$EVENTS" --writers 1
psql -Xq "$DATABASE_URL" -c "VACUUM ANALYZE events"

echo "== reference: raw sequential read of the events table in feed order"
"$BIN/reserva-fill" --scan --runs 3
echo "== audit verify (every chain recomputed), best of 3"
"$BIN/reserva-audit-bench" verify --runs 3
echo "== the CLI, end to end"
start=$(date +%s.%N)
"$BIN/reserva" audit verify >/dev/null
end=$(date +%s.%N)
awk -v n="$EVENTS" -v s="$start" -v e="$end" \
  'BEGIN { printf "reserva audit verify: %d events in %.2f s = %.0f events/s\n", n, e - s, n / (e - s) }'

fi

if [[ $PARTS == *" chain "* ]]; then
echo "== chain cost on the append path (pgbench, ${SECS}s per point)"
# One event per transaction into the real events table: a new aggregate (insert1, as
# pg_limit.sh) and the next event of the client's own aggregate (append, the trigger reads the
# predecessor's hash). The same statements run with the trigger on and off: they give a
# 32-byte hash of their own, which the trigger overwrites when on (the column is NOT NULL).
PAYLOAD="('{\"StockRestocked\":{\"quantity\":' || :q || ',\"note\":\"$(printf 'x%.0s' $(seq 1 200))\"}}')::json"
HASH="decode(repeat('ab', 32), 'hex')"
META="'{\"correlation_id\":\"00000000-0000-0000-0000-000000000000\",\"actor\":\"bench\"}'::json"
cat >"$tmp/insert1.sql" <<SQL
\set q random(1, 5)
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash)
VALUES ('bench', gen_random_uuid()::text, 1, 'StockRestocked', '1.0', $PAYLOAD, $META, $HASH);
SQL
cat >"$tmp/append.sql" <<SQL
\set q random(1, 5)
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash)
SELECT 'bench', 'client-' || :client_id || '-' || :scale, coalesce(max(sequence), 0) + 1, 'StockRestocked', '1.0', $PAYLOAD, $META, $HASH
  FROM events WHERE aggregate_type = 'bench' AND aggregate_id = 'client-' || :client_id || '-' || :scale;
SQL
point() { # label script clients scale
  "$PGBENCH" -n -T "$SECS" -c "$3" -j "$3" -s "$4" -f "$tmp/$2.sql" "$DATABASE_URL" 2>/dev/null |
    awk -v l="$1" -v p="$2" -v c="$3" '/^tps/ { tps = $3 } /latency average/ { lat = $4 }
      END { printf "%-12s %-8s %3d clients %9.0f tps %7.2f ms\n", l, p, c, tps, lat }'
}
run=0
for c in $CLIENTS; do
  for pattern in insert1 append; do
    run=$((run + 1))
    point "chain on" "$pattern" "$c" "$run"
    psql -Xq "$DATABASE_URL" -c "ALTER TABLE events DISABLE TRIGGER events_chain"
    run=$((run + 1))
    point "chain off" "$pattern" "$c" "$run"
    psql -Xq "$DATABASE_URL" -c "ALTER TABLE events ENABLE TRIGGER events_chain"
  done
done
psql -Xq "$DATABASE_URL" -c "DELETE FROM events WHERE aggregate_type = 'bench'"
echo "== reference: PostgreSQL one-event-per-commit rate (shared/bench/pg_limit.sh, ${SECS}s per point)"
# shellcheck disable=SC2086
bash ../shared/bench/pg_limit.sh "$ADMIN_URL" "$SECS" $CLIENTS

fi

if [[ $PARTS == *" cold "* ]]; then
echo "== cold load of a StockItem of $COLD events, with and without its snapshot"
"$BIN/reserva-audit-bench" coldload --events "$COLD"
fi
