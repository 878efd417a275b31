#!/usr/bin/env bash
# Supply-chain checks with cargo-deny and ops/deny.toml: licenses (permissive only), bans
# (duplicate versions warn) and sources (crates.io only) always; advisories (RustSec) only when
# the advisory database can be fetched, which needs GitHub. No package registry reachable from
# CI carries a copy of that database, so there a clear line says the check was skipped.
# cargo-deny is built once into $RESERVA_TOOLS/bin (a few minutes on two cores) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
tools=${RESERVA_TOOLS:-/tmp/reserva-tools}
deny="$tools/bin/cargo-deny"
if ! "$deny" --version 2>/dev/null | grep -qx "cargo-deny $version"; then
  echo "deny: building cargo-deny $version into $tools (once)"
  CARGO_TARGET_DIR="$tools/build" cargo install --quiet --locked cargo-deny \
    --version "=$version" --root "$tools"
  rm -rf "$tools/build"
fi

config=ops/deny.toml
"$deny" --version
"$deny" --config "$config" --locked check --hide-inclusion-graph --show-stats licenses bans sources

# The advisory database lives in a git repository on GitHub; fetch it (bounded) or say why not.
if timeout 120 "$deny" --config "$config" fetch db >/dev/null 2>&1; then
  "$deny" --config "$config" --locked --offline check advisories
else
  echo "advisories: skipped, the RustSec database is not reachable from here"
fi
