#!/usr/bin/env bash
# Reserva beside its references, all measured in one run on one private PostgreSQL 15 cluster:
#   - PostgreSQL's own one-event-per-commit rate (shared/bench/pg_limit.sh, insert1);
#   - cqrs-demo (cqrs-es + postgres-es + axum), a peer event-sourced service: DepositMoney
#     commands and GET /account/{id}, driven by the same client as Reserva (reserva-http-load);
#   - Reserva: restock (reserva-load), GET of a stock item and of an order (reserva-http-load),
#     saga latency (reserva-saga-latency);
# and ends with one markdown table of the ratios. Each service runs alone while it is measured.
#
# Usage: ops/bench/compare.sh
#   env SECS              seconds per point (default 10)
#       CLIENTS           client counts (default "8 32")
#       CQRS_DEMO_SRC     git directory (bare or not) or URL of cqrs-demo's source (default: its
#                         GitHub repository); if it cannot be fetched or built, cqrs-demo is
#                         skipped with one line saying why and its columns say `skipped`
#       CQRS_DEMO_TARGET  cqrs-demo's own build directory, kept between runs so that only the
#                         first run builds it (default /tmp/cqrs-demo-target)
#       KEEP              set to 1 to keep the cluster's temp directory (data, logs, outputs)
# The cluster (initdb defaults, trust auth, 127.0.0.1 on a free port, max_connections=300) is
# created in a temp directory and stopped and removed on exit; as root it runs as postgres.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-10}
CLIENTS=${CLIENTS:-8 32}
CLIENT_LIST=${CLIENTS// /,}
CQRS_DEMO_SRC=${CQRS_DEMO_SRC:-https://github.com/serverlesstechnology/cqrs-demo}
CQRS_DEMO_TARGET=${CQRS_DEMO_TARGET:-/tmp/cqrs-demo-target}
KEEP=${KEEP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/reserva-target}
BIN=$CARGO_TARGET_DIR/release
PGBIN=/usr/lib/postgresql/15/bin
SKUS=4000

# Three free ports at once (held open together, so they differ).
read -r PGPORT PORT DEMO_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
ADMIN_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres
DB_URL=postgres://postgres@127.0.0.1:$PGPORT/reserva_compare
DEMO_URL=http://127.0.0.1:$DEMO_PORT
URL=http://127.0.0.1:$PORT

tmp=$(mktemp -d)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$tmp"
server=
demo=
stop_server() { # pid
  if [ -n "$1" ] && kill "$1" 2>/dev/null; then wait "$1" 2>/dev/null || true; fi
}
cleanup() {
  stop_server "$server"
  stop_server "$demo"
  if [ -f "$tmp/pg/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
  if [ "$KEEP" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

wait_http() { # url name: any HTTP answer (curl exit 0) means it is up
  for _ in $(seq 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "$2 did not start" >&2
  return 1
}

echo "== building Reserva (release)"
cargo build --release -q -p api -p load

echo "== private PostgreSQL 15 cluster on 127.0.0.1:$PGPORT"
as_pg "$PGBIN/initdb" -D "$tmp/pg" -U postgres --auth=trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$tmp/pg" -l "$tmp/pg.log" -w \
  -o "-p $PGPORT -k $tmp -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null

echo "== PostgreSQL reference (shared/bench/pg_limit.sh, ${SECS}s per point)"
# shellcheck disable=SC2086 # CLIENTS is a list of words
bash ../shared/bench/pg_limit.sh "$ADMIN_URL" "$SECS" $CLIENTS | tee "$tmp/pg_limit.out"

# cqrs-demo: fetched at the source's HEAD into CQRS_DEMO_TARGET/src-<commit> and patched once
# there, so later runs reuse both source and build. The patch makes its hard-coded database URL
# and bind address read CQRS_DEMO_DB_URL and CQRS_DEMO_ADDR (the originals stay the defaults), so
# the binary does not depend on the ports picked in a run.
demo_skipped=
demo_bin=
prepare_demo() {
  local src=$CQRS_DEMO_SRC rev dir out
  [ -d "$src" ] && src=file://$(realpath "$src")
  if ! out=$(git ls-remote "$src" HEAD 2>&1) || [ -z "$out" ]; then
    demo_skipped="could not fetch its source: $(echo "${out:-no HEAD}" | tail -1)"
    return
  fi
  rev=${out%%[[:space:]]*}
  dir=$CQRS_DEMO_TARGET/src-$rev
  if [ ! -f "$dir/.patched" ]; then
    rm -rf "$dir"
    mkdir -p "$CQRS_DEMO_TARGET"
    if ! out=$(git clone -q --depth 1 "$src" "$dir" 2>&1); then
      demo_skipped="could not fetch its source: $(echo "$out" | tail -1)"
      return
    fi
    sed -i 's|default_postgress_pool("postgresql://demo_user:demo_pass@localhost:5432/demo")|default_postgress_pool(\&std::env::var("CQRS_DEMO_DB_URL").unwrap_or_else(\|_\| "postgresql://demo_user:demo_pass@localhost:5432/demo".into()))|' \
      "$dir/src/state.rs"
    sed -i 's|&"0.0.0.0:3030".parse().unwrap()|\&std::env::var("CQRS_DEMO_ADDR").unwrap_or_else(\|_\| "0.0.0.0:3030".into()).parse().unwrap()|' \
      "$dir/src/main.rs"
    if ! grep -q CQRS_DEMO_DB_URL "$dir/src/state.rs" || ! grep -q CQRS_DEMO_ADDR "$dir/src/main.rs"; then
      demo_skipped="its source at $rev no longer has the database URL or bind address this script patches"
      return
    fi
    touch "$dir/.patched"
  fi
  echo "== building cqrs-demo $rev (release, own lock file and target $CQRS_DEMO_TARGET; minutes the first time)"
  if ! (cd "$dir" && cargo build --release -q --bin cqrs-demo --target-dir "$CQRS_DEMO_TARGET") >"$tmp/cqrs-demo-build.log" 2>&1; then
    demo_skipped="its build failed: $(grep -m1 '^error' "$tmp/cqrs-demo-build.log" || tail -1 "$tmp/cqrs-demo-build.log")"
    return
  fi
  demo_bin=$CQRS_DEMO_TARGET/release/cqrs-demo
  psql -Xq "$ADMIN_URL" -c "CREATE ROLE demo_user LOGIN PASSWORD 'demo_pass'" -c "CREATE DATABASE demo OWNER demo_user"
  # Its tables, created by their owner; the script's own CREATE USER and GRANT are done above.
  grep -vE '^(CREATE USER|GRANT)' "$dir/db/init.sql" |
    psql -Xq -v ON_ERROR_STOP=1 "postgres://demo_user@127.0.0.1:$PGPORT/demo" >/dev/null
}
prepare_demo

if [ -z "$demo_skipped" ]; then
  echo "== cqrs-demo (reserva-http-load, ${SECS}s per point)"
  # Its stdout gets a pretty-printed copy of every event (its SimpleLoggingQuery): discarded.
  CQRS_DEMO_DB_URL=postgresql://demo_user:demo_pass@127.0.0.1:$PGPORT/demo CQRS_DEMO_ADDR=127.0.0.1:$DEMO_PORT \
    "$demo_bin" >/dev/null 2>"$tmp/cqrs-demo.log" &
  demo=$!
  wait_http "$DEMO_URL/account/none" cqrs-demo
  "$BIN/reserva-http-load" --label demo_deposit --url "$DEMO_URL/account/{id}" --ids "$SKUS" --id-prefix ACCT- \
    --setup-body '{"OpenAccount":{"account_id":"{id}"}}' --body '{"DepositMoney":{"amount":1000.0}}' \
    --clients "$CLIENT_LIST" --seconds "$SECS" | tee "$tmp/demo.out"
  "$BIN/reserva-http-load" --label demo_get --url "$DEMO_URL/account/{id}" --ids "$SKUS" --id-prefix ACCT- \
    --clients "$CLIENT_LIST" --seconds "$SECS" | tee -a "$tmp/demo.out"
  stop_server "$demo"
  demo=
else
  echo "cqrs-demo: skipped ($demo_skipped)"
fi

echo "== Reserva on 127.0.0.1:$PORT"
psql -Xq "$ADMIN_URL" -c "CREATE DATABASE reserva_compare"
DATABASE_URL=$DB_URL RESERVA_HTTP__PORT=$PORT RESERVA_RATE_LIMIT__ENABLED=false RESERVA_GATEWAY__SIMULATED_DELAY_MS=0 \
  RUST_LOG=warn "$BIN/reserva" serve 2>"$tmp/reserva.log" &
server=$!
for _ in $(seq 150); do curl -sf "$URL/health/ready" >/dev/null && break; sleep 0.2; done
curl -sf "$URL/health/ready" >/dev/null || { echo "reserva did not become ready" >&2; tail "$tmp/reserva.log" >&2; exit 1; }

echo "== Reserva restock (reserva-load, ${SECS}s per point)"
"$BIN/reserva-load" --url "$URL" --skus "$SKUS" --clients "$CLIENT_LIST" --seconds "$SECS" | tee "$tmp/restock.out"
echo "== Reserva GET /api/v1/stock-items/{sku} over the $SKUS SKUs above (reserva-http-load)"
"$BIN/reserva-http-load" --label stock_get --url "$URL/api/v1/stock-items/{id}" --ids "$SKUS" --id-prefix LOAD- \
  --clients "$CLIENT_LIST" --seconds "$SECS" | tee "$tmp/reads.out"
echo "== Reserva saga latency (reserva-saga-latency, ${SECS}s per point)"
"$BIN/reserva-saga-latency" --url "$URL" --database-url "$DB_URL" --customers 1,16 --seconds "$SECS" \
  --poll-ms 5 --max-polls 1000 | tee "$tmp/saga.out"
echo "== Reserva GET /api/v1/orders/{id} over the saga's orders (reserva-http-load)"
psql -XAt "$DB_URL" -c "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'order' LIMIT $SKUS" >"$tmp/orders"
"$BIN/reserva-http-load" --label order_get --url "$URL/api/v1/orders/{id}" --ids-file "$tmp/orders" \
  --clients "$CLIENT_LIST" --seconds "$SECS" | tee -a "$tmp/reads.out" || echo "order GET: not measured"
stop_server "$server"
server=

# ---- the table -------------------------------------------------------------------------------
# row FILE LABEL CLIENTS FIELD: field FIELD of the first line "LABEL CLIENTS …" (pg_limit.sh and
# reserva-http-load lines); restock FIELD: of reserva-load's line for CLIENTS ($c).
row() { awk -v l="$2" -v c="$3" -v f="$4" '$1 == l && $2 == c { print $f; exit }' "$1"; }
restock() { awk -v c="$c" -v f="$1" '$1 == c && NF == 6 { print $f; exit }' "$tmp/restock.out"; }
# ratio A B: A ÷ B to two decimals, or ? when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "?"; else printf "%.2f", a / b }'; }
# qps VALUE [P99]: "1234 (p99 5.6 ms)", or ? when missing.
qps() { awk -v v="$1" -v p="${2:-}" 'BEGIN { if (v == "") { print "?"; exit } s = sprintf("%.0f", v); if (p != "") s = s sprintf(" (p99 %.1f ms)", p); print s }'; }
# peer LABEL VALUE: the cqrs-demo cell and the ratio VALUE ÷ its req/s, or skipped.
peer() {
  if [ -n "$demo_skipped" ]; then echo "skipped | skipped"; return; fi
  local d; d=$(row "$tmp/demo.out" "$1" "$c" 4)
  echo "$(qps "$d" "$(row "$tmp/demo.out" "$1" "$c" 10)") | $(ratio "$2" "$d")"
}

echo
echo "## Reserva vs references (${SECS}s per point, one run, private PostgreSQL 15 cluster)"
echo
echo "| measure | clients | Reserva | reference | ratio | goal |"
echo "|---|---:|---:|---:|---:|---|"
for c in $CLIENTS; do
  pg=$(row "$tmp/pg_limit.out" insert1 "$c" 4)
  echo "| restock cmds/s ÷ PostgreSQL insert1 tps | $c | $(qps "$(restock 2)" "$(restock 4)") | $(qps "$pg") | $(ratio "$(restock 2)" "$pg") | ≥ 0.5 |"
done
for c in $CLIENTS; do
  echo "| restock cmds/s ÷ cqrs-demo DepositMoney req/s | $c | $(qps "$(restock 2)" "$(restock 4)") | $(peer demo_deposit "$(restock 2)") | – |"
done
for c in $CLIENTS; do
  g=$(row "$tmp/reads.out" stock_get "$c" 4)
  echo "| stock-item GET req/s ÷ cqrs-demo GET /account req/s | $c | $(qps "$g" "$(row "$tmp/reads.out" stock_get "$c" 10)") | $(peer demo_get "$g") | ≥ 1.5 |"
done
for c in $CLIENTS; do
  o=$(row "$tmp/reads.out" order_get "$c" 4)
  echo "| order GET req/s ÷ cqrs-demo GET /account req/s | $c | $(qps "$o" "$(row "$tmp/reads.out" order_get "$c" 10)") | $(peer demo_get "$o") | ≥ 1.5 |"
done
# The summary row of 16 customers has 10 columns (the breakdown's "16 customers, …" line does not).
saga=$(awk 'NF == 10 && $1 == "16" { printf "%.1f ms (%.0f orders/s)", $5, $3; exit }' "$tmp/saga.out")
echo "| saga p95 OrderPlaced → OrderCompleted (orders/s) | 16 | ${saga:-?} | – | – | – |"
