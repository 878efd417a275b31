#!/usr/bin/env bash
# Checks the ops/ configuration without Docker: Prometheus config and alert rules (promtool),
# the alert rules' unit tests, the Grafana dashboard JSON and provisioning, the compose file.
# promtool comes from Debian's `prometheus` package: only the binary is unpacked (no service is
# installed or started), into $RESERVA_TOOLS/bin, where later runs find it.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${RESERVA_TOOLS:-/tmp/reserva-tools}
mkdir -p "$tools/bin"
export PATH="$tools/bin:$PATH"

if ! command -v promtool >/dev/null; then
  echo "ops: unpacking promtool from Debian's prometheus package"
  work=$(mktemp -d)
  (
    cd "$work"
    apt-get download prometheus >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get download prometheus >/dev/null; }
    dpkg-deb -x prometheus_*.deb root
  )
  install -m 0755 "$work/root/usr/bin/promtool" "$tools/bin/promtool"
  rm -rf "$work"
fi

echo "ops: $(promtool --version 2>&1 | head -n 1)"
promtool check config ops/prometheus/prometheus.yml
promtool check rules ops/prometheus/alerts.yml
promtool test rules ops/prometheus/tests/alerts_test.yml

python3 -m json.tool ops/grafana/dashboards/reserva.json >/dev/null
echo "ops: ops/grafana/dashboards/reserva.json is valid JSON"
python3 - <<'PY'
import json, sys

try:
    import yaml
except ImportError:
    print("ops: YAML files not parsed (python3-yaml is not installed)")
    sys.exit(0)

files = [
    "ops/compose.yaml",
    "ops/grafana/provisioning/datasources/prometheus.yml",
    "ops/grafana/provisioning/dashboards/reserva.yml",
]
docs = {f: yaml.safe_load(open(f)) for f in files}
compose = docs["ops/compose.yaml"]
missing = {"postgres", "reserva", "prometheus", "grafana"} - set(compose["services"])
assert not missing, f"compose.yaml lacks {missing}"
assert compose["services"]["reserva"]["depends_on"]["postgres"]["condition"] == "service_healthy"

# Every panel queries the provisioned data source, and every query names a reserva_ metric or up.
uid = docs["ops/grafana/provisioning/datasources/prometheus.yml"]["datasources"][0]["uid"]
dashboard = json.load(open("ops/grafana/dashboards/reserva.json"))
panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
for panel in panels:
    assert panel["datasource"]["uid"] == uid, panel["title"]
    for target in panel["targets"]:
        assert "reserva_" in target["expr"] or "up{" in target["expr"], (panel["title"], target["expr"])
ids = [p["id"] for p in dashboard["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
print(f"ops: {len(files)} YAML files parse; dashboard has {len(panels)} panels on data source {uid!r}")
PY
echo "ops: checks passed"
