#!/usr/bin/env bash
# 10 000 idle connections against three listeners of a small mesh (four cases), one after the other
# (tests/integration/hostile/idle_connections.py opens them and checks):
#
#   mul-svc's HTTP port          --http-max-connections=12000, --http-header-timeout=5s:
#                                connections that never send a request line
#   its sidecar's public port    TLS (--handshake-timeout=5s): TCP connections that never
#                                send a ClientHello; then connections that send its first
#                                6 bytes and stall (each holding TLS state until shed past
#                                --max-pending-handshakes, or timed out)
#   an upstream listener         the plain, http-mode listener of an upstream-only sidecar
#                                (--idle-timeout=5s; the default is 10 min): keep-alive
#                                connections, each idle after one request answered
#
# Each must keep serving a good request (GET /api/v1/execute?l=6&r=7 = 42, through both
# sidecars for the last two) while they are open, close every one of them at its
# timeout, stay up and grow its RSS by less than the bound. The mesh: a Consul dev agent
# of its own, mul-svc, its coromesh-sidecar, and the upstream-only sidecar, on free
# loopback ports.
#
#   tests/integration/hostile/idle_connections.sh [BIN_DIR=build/bin] [ROWS_FILE]
# ROWS_FILE receives the Markdown rows for RELIABILITY.md. IDLE_CONNECTIONS (10000)
# changes the count, IDLE_RSS_BOUND_MIB (150) the bound; 0 reports RSS without checking
# it (sanitizer builds, whose allocators quarantine freed memory). Registered in ctest as
# integration.idle_connections (about 40 s).
set -euo pipefail
COROMESH_SCRIPT=idle-connections
export COROMESH_SCRIPT
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../../ops/lib/common.sh
source "$here/../../../ops/lib/common.sh"
# shellcheck source=../../../ops/lib/platform.sh
source "$COROMESH_ROOT/ops/lib/platform.sh"

bin="${1:-$COROMESH_ROOT/build/bin}"
rows="${2:-}"
[ -z "$rows" ] || : >"$rows"
count="${IDLE_CONNECTIONS:-10000}"
rss_bound="${IDLE_RSS_BOUND_MIB:-150}"
for tool in consul curl jq python3 "$bin/mul-svc" "$bin/coromesh-sidecar"; do
  command -v "$tool" >/dev/null || die "missing $tool (./ops/setup.sh installs the tools; build the binaries)"
done
[ "$(ulimit -Hn)" -ge $((count + 500)) ] ||
  die "the hard descriptor limit ($(ulimit -Hn)) is below $count connections + 500"
# The processes inherit the raised soft limit: each needs a descriptor per connection.
ulimit -Sn "$(ulimit -Hn)"

work=$(mktemp -d "${TMPDIR:-/tmp}/coromesh-idle.XXXXXX")
cleanup() {
  local status=$?
  trap - EXIT
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "--- $(basename "$log")" >&2
      tail -n 5 "$log" >&2
    done
  fi
  proc_stop "$work" ingress mul-svc-sidecar mul-svc || true
  platform_stop "$work" || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

platform_start_consul "$work" 0
consul_addr="$platform_consul_addr"
read -r svc_port public_port admin_port ingress_admin upstream_port < <(free_ports 5 "$work/ports-given")
# Consul's checks every 2 s, with a 2 s timeout: a connect whose SYN the flood's full
# accept queue dropped is retried by the kernel after 1 s, which a 1 s check's 1 s timeout
# would not wait for, taking the port out of the mesh until its next check.
check_interval=2s

proc_start "$work" mul-svc env COROMESH_SERVICE_NAME=mul-svc COROMESH_INSTANCE_ID=mul-svc-1 \
  COROMESH_BIND_ADDRESS=127.0.0.1 COROMESH_PORT="$svc_port" COROMESH_CONSUL_ADDR="$consul_addr" \
  COROMESH_CONSUL_CHECK_INTERVAL="$check_interval" "$bin/mul-svc" --http-max-connections=12000 \
  --http-header-timeout=5s
mul_pid=$proc_started
proc_start "$work" mul-svc-sidecar "$bin/coromesh-sidecar" --consul "$consul_addr" \
  --port "$admin_port" --consul-check-interval "$check_interval" --service mul-svc --service-id mul-svc-1 \
  --service-addr "127.0.0.1:$svc_port" --listen "127.0.0.1:$public_port" --register \
  --handshake-timeout 5s
sidecar_pid=$proc_started
proc_start "$work" ingress "$bin/coromesh-sidecar" --consul "$consul_addr" \
  --port "$ingress_admin" --service ingress --upstream "mul-svc:$upstream_port:http" \
  --idle-timeout 5s
ingress_pid=$proc_started

through_mesh="http://127.0.0.1:$upstream_port/api/v1/execute?l=6&r=7"
mesh_ready() { [ "$(curl -sS --max-time 2 "$through_mesh" 2>/dev/null)" = 42 ]; }
_platform_wait 60 ingress "$work" mesh_ready

idle() {
  python3 "$here/idle_connections.py" --connections "$count" --close-within 20 \
    ${rows:+--row "$rows"} "$@"
}
failed=0
idle --name mul-svc --port "$svc_port" --pid "$mul_pid" \
  --good-url "http://127.0.0.1:$svc_port/api/v1/execute?l=6&r=7" --expect 42 \
  --rss-bound-mib "$rss_bound" || failed=1
idle --name "coromesh-sidecar public (TLS) port" --port "$public_port" --pid "$sidecar_pid" \
  --good-url "$through_mesh" --expect 42 --rss-bound-mib "$rss_bound" || failed=1
# The first 6 bytes of a ClientHello, then nothing: each has TLS state until it is shed
# (past --max-pending-handshakes, 1024 by default, the oldest goes) or times out.
idle --name "coromesh-sidecar public (TLS) port, each sending 160301020001 (a ClientHello's first bytes) then stalling" \
  --port "$public_port" --pid "$sidecar_pid" --send-first 160301020001 \
  --good-url "$through_mesh" --expect 42 --rss-bound-mib "$rss_bound" || failed=1
idle --name "coromesh-sidecar upstream listener (http mode), keep-alive after one request" \
  --port "$upstream_port" --pid "$ingress_pid" --request-first "/api/v1/execute?l=6&r=7" \
  --good-url "$through_mesh" --expect 42 --rss-bound-mib "$rss_bound" || failed=1
[ "$failed" -eq 0 ] || die "a listener did not hold up under $count idle connections"
echo "PASS"
