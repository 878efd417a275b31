#!/usr/bin/env bash
# What a NOTIFY inside the appending transaction would cost: pgbench on an events-shaped table,
# one INSERT per transaction with and without `NOTIFY` in the same transaction. NOTIFY takes a
# cluster-wide lock at commit, serializing concurrent committers; Reserva therefore notifies
# after commit, from one task (commands/src/feed/relay.rs).
#
# Usage: ops/bench/notify_cost.sh [ADMIN_URL] [seconds] [clients...]
set -euo pipefail
ADMIN_URL=${1:-postgres://postgres@127.0.0.1:5432/postgres}
SECS=${2:-5}; shift $(( $# > 2 ? 2 : $# )) || true
CLIENTS=${*:-1 8 32}
DB=reserva_notify_cost
URL="${ADMIN_URL%/*}/$DB"
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
tmp=$(mktemp -d)
trap 'psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
psql -Xq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null 2>&1
psql -Xq "$URL" -c "CREATE TABLE events (aggregate_id text NOT NULL, payload json NOT NULL,
  global_position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id());
  CREATE INDEX ON events (transaction_id, global_position);" >/dev/null
cat >"$tmp/plain.sql" <<'SQL'
INSERT INTO events (aggregate_id, payload) VALUES (gen_random_uuid()::text, '{"StockRestocked":{"quantity":1}}');
SQL
cat >"$tmp/notify.sql" <<'SQL'
BEGIN;
INSERT INTO events (aggregate_id, payload) VALUES (gen_random_uuid()::text, '{"StockRestocked":{"quantity":1}}');
NOTIFY reserva_events;
COMMIT;
SQL
printf '%-8s %8s %12s\n' pattern clients tps
for c in $CLIENTS; do
  for p in plain notify; do
    tps=$("$PGBENCH" -n -c "$c" -j "$c" -T "$SECS" -f "$tmp/$p.sql" "$URL" 2>/dev/null |
      awk '/^tps/ {print $3; exit}')
    printf '%-8s %8s %12s\n' "$p" "$c" "$tps"
  done
done
