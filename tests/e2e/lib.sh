# shellcheck shell=bash
# The set-up shared by the end-to-end tests and the fault scenarios: the calculator mesh
# of ./ops/demo.sh (ops/lib/topology.sh) on free loopback ports, in a temporary run
# directory with its own Consul dev agent (and Prometheus when asked), stopped by PID on
# every exit path. Source it after setting COROMESH_SCRIPT; then:
#
#   e2e_mesh_up BIN_DIR [--prometheus]   checks the tools, starts everything, waits until
#                                        ready; sets $work, $frontend, TOPO_* and
#                                        $platform_consul_addr ($platform_prometheus_addr)
#   fail MESSAGE / pass MESSAGE          a failed check (exit 1) / a passed one
#   compute BODY                         POSTs BODY to the frontend: "STATUS RESPONSE-BODY"
#   consul_registered_ids                the IDs of every service registered on the agent
#
# E2E_MODE=secure: the topology of `./ops/demo.sh up --secure`: Consul with ACLs on and
# default policy deny, default-deny intentions plus one allow per caller, a token per
# service and per sidecar, all in $work/acl (ops/lib/acl.sh).
#
# On a failure the last lines of every log are printed before the run directory goes.
_e2e_lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../ops/lib/common.sh
source "$_e2e_lib/../../ops/lib/common.sh"
# shellcheck source=../../ops/lib/platform.sh
source "$COROMESH_ROOT/ops/lib/platform.sh"
# shellcheck source=../../ops/lib/topology.sh
source "$COROMESH_ROOT/ops/lib/topology.sh"

work=""
_e2e_cleanup() {
  local status=$?
  trap - EXIT
  # Whatever the caller started on its own (load generators), stopped by PID first.
  [ "$(type -t e2e_on_exit)" != function ] || e2e_on_exit || true
  if [ -n "$work" ]; then
    if [ "$status" -ne 0 ]; then
      echo "--- failed; the last lines of every log:" >&2
      for log in "$work"/*.log; do
        [ -f "$log" ] || continue
        echo "--- $(basename "$log")" >&2
        tail -n 5 "$log" >&2
      done
    fi
    [ -z "${TOPO_CONSUL_ADDR:-}" ] || topology_stop >/dev/null || true
    platform_stop "$work" || true
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
  fi
  exit "$status"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
pass() { echo "ok: $*"; }

e2e_mesh_up() {
  export TOPO_BIN="${1:-$COROMESH_ROOT/build/bin}"
  local with_prometheus=0 tool
  [ "${2:-}" != --prometheus ] || with_prometheus=1
  for tool in consul curl jq python3 "$TOPO_BIN/coromesh-sidecar" "$TOPO_BIN/frontend" \
    "$TOPO_BIN/add-svc" "$TOPO_BIN/sub-svc" "$TOPO_BIN/mul-svc" "$TOPO_BIN/div-svc" \
    "$TOPO_BIN/mod-svc"; do
    command -v "$tool" >/dev/null || die "missing $tool (./ops/setup.sh installs the tools; build the binaries)"
  done
  [ "$with_prometheus" -eq 0 ] || command -v prometheus >/dev/null ||
    die "missing prometheus (./ops/setup.sh installs it)"

  work=$(mktemp -d "${TMPDIR:-/tmp}/coromesh-${COROMESH_SCRIPT:-e2e}.XXXXXX")
  export TOPO_DIR="$work"
  case "${E2E_MODE:-}" in
    "") ;;
    secure)
      export PLATFORM_ACL=1 TOPO_ACL_RUN="$work"
      # Intentions are checked when a connection is set up: a short idle timeout makes
      # the frontend's next call to an operator after a pause a new connection, so a
      # removed allow shows within a second.
      export COROMESH_HTTP_IDLE_TIMEOUT=300ms
      ;;
    *) die "E2E_MODE=$E2E_MODE: expected secure or nothing" ;;
  esac
  trap _e2e_cleanup EXIT
  trap 'exit 130' INT TERM

  step "platform"
  platform_start_consul "$work" 0
  local detail="consul $platform_consul_addr"
  if [ "$with_prometheus" -eq 1 ]; then
    platform_start_prometheus "$work" 0 "$platform_consul_addr" 1s
    detail+=", prometheus $platform_prometheus_addr"
  fi
  step_done "$detail"
  export TOPO_CONSUL_ADDR="$platform_consul_addr" TOPO_CHECK_INTERVAL=1s
  export TOPO_PROXY="${TOPO_PROXY:-coromesh}"
  step "services and sidecars"
  topology_up
  topology_wait_ready 90
  frontend=$(topology_frontend_addr)
  step_done "$(topology_rows | wc -l) processes passing; frontend $frontend"
}

compute() {
  local out
  out=$(curl -sS --max-time 30 -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' \
    -d "$1" "http://$frontend/api/v1/compute") || out=$'\n000'
  echo "${out##*$'\n'} ${out%$'\n'*}"
}

consul_registered_ids() {
  _topology_consul_curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/services" |
    jq -r 'keys[]'
}
