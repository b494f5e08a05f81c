#!/usr/bin/env bash
# A Prometheus that ops/lib/platform.sh starts again in the same run directory (what
# `./ops/demo.sh down` then `up` does) shows nothing of the previous run. Prometheus
# writes no staleness markers when it stops, so a kept TSDB answered instant queries with
# the old run's last samples for 5 minutes: `up` listed instances that no longer existed,
# and the `up == 0` scraped while `down` stopped the services fired CoromeshInstanceDown
# in the new demo.
#
# A real Consul dev agent and a real Prometheus: Prometheus scrapes itself, registered in
# Consul as `ghost-1` (tag `metrics`, as the framework registers a service), until
# `up{instance="ghost-1"}` is 1; both stop by PID; both start again in the same
# directory, the new Consul without `ghost-1`: Prometheus must not know it.
set -euo pipefail
COROMESH_SCRIPT=prometheus_fresh_start
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../ops/lib" && pwd)/common.sh"
source "$COROMESH_ROOT/ops/lib/platform.sh"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
for tool in consul prometheus curl jq python3; do
  command -v "$tool" >/dev/null || fail "missing $tool (./ops/setup.sh installs it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/coromesh-prometheus-fresh.XXXXXX")
cleanup() {
  local status=$?
  platform_stop "$work" >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    tail -n 20 "$work"/*.log >&2 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# query PROMQL: the instant query's result vector, one JSON line per series.
query() {
  curl -fsS --max-time 5 "http://$platform_prometheus_addr/api/v1/query" \
    --data-urlencode "query=$1" | jq -c '.data.result[]'
}

platform_start_consul "$work" 0
platform_start_prometheus "$work" 0 "$platform_consul_addr" 1s
prometheus_port="${platform_prometheus_addr##*:}"
jq -n --argjson port "$prometheus_port" \
  '{ID: "ghost-1", Name: "ghost", Address: "127.0.0.1", Port: $port, Tags: ["metrics"],
    Meta: {metrics_path: "/metrics"}}' |
  curl -fsS --max-time 5 -X PUT --data-binary @- \
    "http://$platform_consul_addr/v1/agent/service/register" >/dev/null

deadline=$((SECONDS + 60))
until [ "$(query 'up{instance="ghost-1"} == 1' | wc -l)" -eq 1 ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "Prometheus did not scrape ghost-1 within 60 s"
  sleep 0.5
done
echo "ok: the first run's Prometheus scrapes ghost-1 through Consul"

platform_stop "$work"
platform_start_consul "$work" 0
platform_start_prometheus "$work" 0 "$platform_consul_addr" 1s

left=$(query 'count({instance="ghost-1"})' | jq -r '.value[1]')
[ -z "$left" ] || fail "the restarted Prometheus still answers $left series of the previous" \
  "run's ghost-1, among them $(query 'up{instance="ghost-1"}')"
echo "ok: the restarted Prometheus has no series of the previous run"
