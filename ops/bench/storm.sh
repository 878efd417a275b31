#!/usr/bin/env bash
# The storm: reserva-storm's virtual customers against 1 or 3 `reserva serve` release processes
# on one private PostgreSQL cluster, then its audit of the store (exit 1 on any violation).
#
# Usage: ops/bench/storm.sh [CUSTOMERS] [INSTANCES]      (defaults 1000 and 1)
#   env SECS      seconds of load (default 60)
#       CHAOS     share of gateway calls that fail, split evenly across refuse, hang and
#                 malformed (default 0; e.g. CHAOS=0.33 for a third)
#       TTL_SECS  order and booking TTL (default 5, so unpaid holds expire during the run)
#       GATEWAY_TIMEOUT_MS   attempt timeout of the gateway (default 1000, so a hang costs 1 s)
#       COOL_DOWN_MS         how long an open breaker refuses calls (default 2000)
#       STORM_ARGS  more reserva-storm flags (e.g. "--think-ms 500 --products 40")
#       KEEP      set to 1 to keep the temp directory (cluster, server logs)
#       BIN       directory of prebuilt reserva and reserva-storm (default: build them in release)
# The cluster (initdb defaults, trust auth, 127.0.0.1 on a free port, max_connections=300) is
# created in a temp directory and stopped and removed on exit; as root it runs as postgres.
# Every instance runs HTTP and workers (subscriptions, sagas, deadlines); the leases make the
# workers run once across them. Rate limits and auth are off, as the driver needs.
set -euo pipefail
cd "$(dirname "$0")/../.."
CUSTOMERS=${1:-1000}
INSTANCES=${2:-1}
SECS=${SECS:-60}
CHAOS=${CHAOS:-0}
TTL_SECS=${TTL_SECS:-5}
KEEP=${KEEP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/reserva-target}
BIN=${BIN:-$CARGO_TARGET_DIR/release}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
case $INSTANCES in 1|2|3) ;; *) echo "INSTANCES must be 1, 2 or 3" >&2; exit 2 ;; esac

read -r PGPORT P1 P2 P3 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
PORTS=("$P1" "$P2" "$P3")
DB_URL=postgres://postgres@127.0.0.1:$PGPORT/reserva_storm
SECRET=whsec_storm_$(python3 -c 'import secrets; print(secrets.token_hex(16))')
SHARE=$(python3 -c "print(float('$CHAOS') / 3)")

tmp=$(mktemp -d)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$tmp"
servers=()
cleanup() {
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  if [ -f "$tmp/pg/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
  if [ "$KEEP" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

if [ "$BIN" = "$CARGO_TARGET_DIR/release" ]; then
  echo "== building reserva and reserva-storm (release)"
  cargo build --release -q -p api -p load
fi

echo "== private PostgreSQL cluster ($PGBIN) on 127.0.0.1:$PGPORT"
as_pg "$PGBIN/initdb" -D "$tmp/pg" -U postgres --auth=trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$tmp/pg" -l "$tmp/pg.log" -w \
  -o "-p $PGPORT -k $tmp -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
psql -Xq "postgres://postgres@127.0.0.1:$PGPORT/postgres" -c "CREATE DATABASE reserva_storm"
DATABASE_URL=$DB_URL "$BIN/reserva" migrate >/dev/null

urls=()
for i in $(seq 0 $((INSTANCES - 1))); do
  port=${PORTS[$i]}
  DATABASE_URL=$DB_URL RESERVA_HTTP__PORT=$port RESERVA_RATE_LIMIT__ENABLED=false \
    RESERVA_AUTH__JWT_SECRET= RESERVA_STRIPE__WEBHOOK_SECRET=$SECRET \
    RESERVA_DB__MAX_CONNECTIONS=$((60 / INSTANCES)) \
    RESERVA_ORDERS__TTL_SECS=$TTL_SECS RESERVA_BOOKINGS__TTL_SECS=$TTL_SECS \
    RESERVA_DEADLINES__INTERVAL_MS=1000 \
    RESERVA_GATEWAY__TIMEOUT_MS=${GATEWAY_TIMEOUT_MS:-1000} \
    RESERVA_GATEWAY__BREAKER_COOL_DOWN_MS=${COOL_DOWN_MS:-2000} \
    RESERVA_GATEWAY__CHAOS_REFUSE=$SHARE RESERVA_GATEWAY__CHAOS_HANG=$SHARE \
    RESERVA_GATEWAY__CHAOS_MALFORMED=$SHARE RUST_LOG=${RUST_LOG:-error} \
    "$BIN/reserva" serve >"$tmp/reserva-$i.log" 2>&1 &
  servers+=($!)
  urls+=("http://127.0.0.1:$port")
done
for url in "${urls[@]}"; do
  for _ in $(seq 150); do curl -sf -o /dev/null "$url/health/ready" && break; sleep 0.2; done
  curl -sf -o /dev/null "$url/health/ready" || { echo "$url did not start" >&2; tail -20 "$tmp"/reserva-*.log >&2; exit 1; }
done

echo "== reserva-storm: $CUSTOMERS customers, $INSTANCES instance(s), ${SECS}s, chaos $CHAOS (refuse/hang/malformed $SHARE each), TTL ${TTL_SECS}s, commit $(git rev-parse --short HEAD)"
status=0
# shellcheck disable=SC2086 # STORM_ARGS is a list of flags
"$BIN/reserva-storm" --url "$(IFS=,; echo "${urls[*]}")" --database-url "$DB_URL" \
  --customers "$CUSTOMERS" --seconds "$SECS" --webhook-secret "$SECRET" \
  --reserva-bin "$BIN/reserva" ${STORM_ARGS:-} || status=$?
echo "== server log lines at WARN or worse: $(grep -ch 'WARN\|ERROR' "$tmp"/reserva-*.log | paste -sd+ | bc)"
exit $status
