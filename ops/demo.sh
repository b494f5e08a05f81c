#!/usr/bin/env bash
# The one-command demo: the calculator mesh on this machine.
#   ./ops/demo.sh up [--nomad|--native|--secure]
#                        set up, build, then start a Consul dev agent (127.0.0.1:8500),
#                        two instances of add-svc, sub-svc, mul-svc, div-svc and mod-svc
#                        (Python) and one
#                        frontend (127.0.0.1:8080), each behind its coromesh-sidecar, and
#                        a Prometheus (127.0.0.1:9090) that finds every service and sidecar
#                        through Consul; returns once all are passing and scraped.
#                        Running it again is safe (what runs is kept).
#                        --nomad: the same topology as Nomad jobs (ops/nomad/) on a
#                        `nomad agent -dev` (HTTP API http://127.0.0.1:4646; this Nomad is built without its web UI)
#                        --native: the C++ services Connect-native (no sidecars; they
#                        find each other in Consul by name), mod-svc behind its sidecar,
#                        the frontend on 127.0.0.1:8080 through an upstream-only sidecar
#                        --secure: Consul with ACLs on and default policy deny, a
#                        "*" -> "*" deny intention plus frontend -> each operator, one
#                        token per service and per sidecar, Prometheus with its own
#                        read-only token; every token in ops/.demo/acl/ (0600), never
#                        printed (README, "Running with ACLs")
#   ./ops/demo.sh status       each process, its PID, whether it runs, its Consul health
#   ./ops/demo.sh click [EXPR] POST the seed's expression (or EXPR) to the frontend
#   ./ops/demo.sh bench [--duration S] [--rounds N] [--with-tcp]
#                        the seed's wrk scenario against this mesh and, in the same run,
#                        the same topology with `consul connect proxy` as every sidecar
#                        (--with-tcp: and with coromesh-sidecar's tcp upstreams)
#   ./ops/demo.sh down         stop everything (by PID; services before Consul, so they
#                        deregister); leaves no process and no registration
#   ./ops/demo.sh --help       this text
# Logs and PID files: ops/.demo/.
set -euo pipefail
COROMESH_SCRIPT=demo
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$COROMESH_ROOT/ops/lib/platform.sh"
source "$COROMESH_ROOT/ops/lib/topology.sh"

state="$COROMESH_ROOT/ops/.demo"
consul_port=8500
prometheus_port=9090
frontend_port=8080
consul_addr="127.0.0.1:$consul_port"
prometheus_addr="127.0.0.1:$prometheus_port"
frontend_addr="127.0.0.1:$frontend_port"
seed_expression="1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5"

# The demo's processes outlive this script (and its Ctrl-C); `down` stops them by PID.
export PROC_DETACH=1
export TOPO_DIR="$state" TOPO_CONSUL_ADDR="$consul_addr" TOPO_FRONTEND_PORT="$frontend_port"
export TOPO_PROXY=coromesh TOPO_UPSTREAM_MODE=http TOPO_CHECK_INTERVAL=2s
# The frontend's sidecar runs its upstreams in http mode: each operator call is
# balanced on its own across both instances (a tcp upstream pins a keep-alive
# connection, and so every call on it, to one instance), and a GET an instance drops
# is retried on the other one.

nomad_dir="$state/nomad"

# running_mode: how the running demo was started (processes, nomad or secure), or nothing.
running_mode() {
  if [ -f "$state/mode" ]; then cat "$state/mode"; fi
}

# secure mode: the topology's and this script's Consul calls use the bootstrap token;
# Consul and Prometheus start with ACLs (PLATFORM_ACL).
use_secure_mode() {
  export PLATFORM_ACL=1 TOPO_ACL_RUN="$state"
}
[ "$(running_mode)" != secure ] || use_secure_mode

# build: the binaries the topology runs, no more (tests and benchmarks build in test.sh).
build() {
  step "build"
  local cxx
  cxx=$(coromesh_cxx)
  cmake -S "$COROMESH_ROOT" -B "$COROMESH_ROOT/build" -G Ninja \
    -DCMAKE_CXX_COMPILER="$cxx" >"$state/configure.log" 2>&1 ||
    die "cmake configure failed (log: $state/configure.log)"
  cmake --build "$COROMESH_ROOT/build" -j 2 --target add-svc sub-svc mul-svc div-svc mod-svc \
    frontend coromesh-sidecar >"$state/build.log" 2>&1 || die "build failed (log: $state/build.log)"
  step_done
}

# check_fixed_ports: each fixed port is free or held by this demo's own process.
check_fixed_ports() {
  local entry name port
  # 8080 is the frontend's own port, or under --native its ingress sidecar's.
  local frontend_proc=frontend-1
  [ "${1:-}" != native ] || frontend_proc="frontend-ingress"
  for entry in consul:$consul_port prometheus:$prometheus_port $frontend_proc:$frontend_port; do
    name="${entry%%:*}" port="${entry##*:}"
    # Under Nomad the frontend is an allocation of the demo's agent, not a PID of ours.
    [ "$name" != frontend-1 ] || [ "$(running_mode)" != nomad ] || continue
    if ! proc_alive "$state" "$name" && port_busy "$port"; then
      die "port $port ($name) is taken by a process this demo did not start; stop it first"
    fi
  done
}

# wait_prometheus_targets SECONDS: every process with /metrics is an `up` target.
wait_prometheus_targets() {
  local deadline=$((SECONDS + $1)) want have
  want=$(topology_metrics_targets | wc -l)
  while :; do
    have=$(platform_prometheus_targets "$prometheus_addr" 2>/dev/null | awk '$3 == "up"' | wc -l)
    [ "$have" -lt "$want" ] || break
    [ "$SECONDS" -lt "$deadline" ] ||
      die "Prometheus sees $have of $want targets up after ${1}s (http://$prometheus_addr/api/v1/targets)"
    sleep 0.5
  done
  step_done "$have of $want targets up"
}

cmd_up() {
  local runner=processes
  case "${1:-}" in
    "") ;;
    --nomad) runner=nomad ;;
    --native) runner=native ;;
    --secure) runner=secure ;;
    *) die "up: unknown option $1 (--nomad, --native, --secure)" ;;
  esac
  # One topology per run: a second option would be dropped without a word.
  [ $# -le 1 ] || die "up: one option at most (--nomad, --native or --secure), got: $*"
  [ "$runner" != native ] || export TOPO_PROXY=native
  [ "$runner" != secure ] || use_secure_mode
  mkdir -p "$state"
  local running
  running=$(running_mode)
  if [ -n "$running" ] && [ "$running" != "$runner" ]; then
    die "the demo already runs as '$running'; './ops/demo.sh down' first"
  fi
  check_fixed_ports "$runner"
  "$COROMESH_ROOT/ops/setup.sh"
  build

  step "consul agent -dev${PLATFORM_ACL:+ (ACLs on, default deny)}"
  platform_start_consul "$state" "$consul_port"
  step_done "$consul_addr"
  step "prometheus"
  platform_start_prometheus "$state" "$prometheus_port" "$consul_addr" 5s
  step_done "$prometheus_addr"
  if [ "$runner" = nomad ]; then
    echo "$runner" >"$state/mode"
    step "the calculator job on nomad agent -dev (ops/nomad/run.sh)"
    "$COROMESH_ROOT/ops/nomad/run.sh" up --consul "$consul_addr" --frontend-port "$frontend_port" \
      --run-dir "$nomad_dir" >"$state/nomad-up.log" 2>&1 ||
      { tail -20 "$state/nomad-up.log" >&2; die "ops/nomad/run.sh up failed (log: $state/nomad-up.log)"; }
    step_done "every allocation running, all passing in Consul (Nomad API http://127.0.0.1:4646)"
  else
    echo "$runner" >"$state/mode"
    step "services and sidecars"
    topology_up
    topology_wait_ready 120
    step_done "$(topology_rows | wc -l) processes, all passing in Consul"
    step "prometheus finds them"
    wait_prometheus_targets 90
  fi

  local how="each listening on 127.0.0.1 behind its own coromesh-sidecar (mTLS with
certificates from Consul's Connect CA); the frontend reaches the operators through its
sidecar's upstream listeners."
  [ "$runner" != native ] || how="the C++ ones Connect-native (each serves Connect mTLS
itself; the frontend finds the operators in Consul and calls them directly), mod-svc
behind its coromesh-sidecar; 127.0.0.1:$frontend_port is an upstream-only coromesh-sidecar
(frontend-ingress) in front of the frontend's mTLS port."
  cat <<MSG

The calculator mesh is up: add-svc, sub-svc, mul-svc, div-svc, mod-svc (Python), 2
instances each, and a frontend, $how

  frontend     http://$frontend_addr/api/v1/compute
  Consul UI    http://$consul_addr/ui/dc1/services
  Prometheus   http://$prometheus_addr/targets   (every service and sidecar; /alerts: the mesh's alerts)
               http://$prometheus_addr/api/v1/query?query=sum+by+(service,operation,code)(rate(coromesh_http_server_requests_total%5B1m%5D))

  curl -s -XPOST $frontend_addr/api/v1/compute -H 'Content-Type: application/json' \\
       -d '{"expression":"(1+2)*(3+4)-10/2%3"}'

  ./ops/demo.sh click | status | bench | down
MSG
  if [ "$runner" = nomad ]; then
    echo "  Nomad: the job 'calculator' (http://127.0.0.1:4646/v1/job/calculator/allocations); task logs:"
    echo "         ops/.tools/bin/nomad alloc logs -address=http://127.0.0.1:4646 <alloc> service|sidecar"
    echo "  logs: ops/.demo/consul.log, ops/.demo/prometheus.log, ops/.demo/nomad/nomad.log"
  elif [ "$runner" = native ]; then
    # No add-svc-1-sidecar here: an older run's log of that name may still be there.
    echo "  logs: ops/.demo/<process>.log (add-svc-1.log, mod-svc-1-sidecar.log, frontend-1.log, frontend-ingress.log, consul.log, ...)"
  else
    echo "  logs: ops/.demo/<process>.log (add-svc-1.log, add-svc-1-sidecar.log, frontend-1.log, consul.log, ...)"
  fi
  if [ "$runner" = secure ]; then
    echo "  ACLs: default deny; tokens (0600) in ops/.demo/acl/: bootstrap.token (the operator's:"
    echo "        CONSUL_HTTP_TOKEN_FILE=ops/.demo/acl/bootstrap.token consul intention list),"
    echo "        <service>.token and <service>-sidecar.token, prometheus.token"
  fi
}

cmd_status() {
  local any=0 name
  for name in consul prometheus; do
    if proc_alive "$state" "$name"; then
      any=1
      echo "[demo] $name: running (pid $(proc_pid "$state" "$name"), log ops/.demo/$name.log)"
    else
      echo "[demo] $name: stopped"
    fi
  done
  if [ -f "$state/topology.tsv" ]; then
    any=1
    topology_status
  fi
  if [ "$(running_mode)" = nomad ]; then
    any=1
    "$COROMESH_ROOT/ops/nomad/run.sh" status --run-dir "$nomad_dir" || true
  fi
  [ "$any" -eq 1 ] || {
    echo "[demo] not running ('./ops/demo.sh up' starts it)"
    return 0
  }
  if proc_alive "$state" prometheus; then
    local targets
    targets=$(platform_prometheus_targets "$prometheus_addr" 2>/dev/null || true)
    echo "[demo] Prometheus targets: $(awk '$3 == "up"' <<<"$targets" | grep -c . || true) up," \
      "$(awk '$3 != "up"' <<<"$targets" | grep -c . || true) not up"
    awk '$3 != "up" {print "[demo]   not up: " $2 " (" $3 ")"}' <<<"$targets"
  fi
  if proc_alive "$state" consul; then
    # The QoS each service declared (published in its registration's Meta), and where
    # an operator overrides it live.
    _topology_consul_curl -fsS "http://$consul_addr/v1/agent/services" |
      jq -r '[.[] | select(.Meta.qos_overrides != null)] | group_by(.Service)[] | .[0]
             | .Meta.qos_overrides as $kv | .Meta | to_entries[]
             | select(.key | startswith("qos_") and . != "qos_overrides")
             | (.key | ltrimstr("qos_") | sub("^client_"; "client/")) as $op
             | "[demo] QoS \($kv)\($op): \(.value)"' || true
    echo "[demo] (override one live:${TOPO_ACL_RUN:+ CONSUL_HTTP_TOKEN_FILE=ops/.demo/acl/bootstrap.token}" \
      "consul kv put <key> '{\"rate_limit\": {\"permits\": 2, \"period\": \"1s\"}}')"
  fi
}

cmd_click() {
  local expression="${1:-$seed_expression}" body status
  if [ "$(running_mode)" != nomad ]; then
    topology_running || die "the demo is not running: ./ops/demo.sh up"
  fi
  body=$(mktemp)
  status=$(curl -sS -o "$body" -w '%{http_code}' --max-time 30 -X POST \
    -H 'Content-Type: application/json' \
    -d "$(jq -nc --arg e "$expression" '{expression: $e}')" \
    "http://$frontend_addr/api/v1/compute") || status=000
  echo "POST http://$frontend_addr/api/v1/compute {\"expression\":\"$expression\"} -> $status"
  cat "$body"
  echo
  rm -f "$body"
  [ "$status" = 200 ]
}

cmd_down() {
  # What a bench interrupted by SIGKILL left beside the demo.
  source "$COROMESH_ROOT/ops/lib/bench.sh"
  _bench_cleanup
  if [ "$(running_mode)" = nomad ] || [ -f "$nomad_dir/nomad.pid" ]; then
    "$COROMESH_ROOT/ops/nomad/run.sh" down --run-dir "$nomad_dir" || echo "[demo] ops/nomad/run.sh down failed" >&2
  fi
  topology_stop
  platform_stop "$state"
  local left=0 name
  for name in "$state"/*.pid; do
    [ -e "$name" ] || continue
    echo "[demo] still there: $name" >&2
    left=1
  done
  rm -f "$state/ports-given" "$state/mode"
  [ "$left" -eq 0 ] && echo "[demo] stopped; nothing left running (logs kept in ops/.demo/)"
}

case "${1:-}" in
  up) cmd_up "${@:2}" ;;
  status) cmd_status ;;
  click) cmd_click "${@:2}" ;;
  bench)
    # Its peer, `consul connect proxy`, registers "<service>-proxy", which a service
    # identity token does not cover.
    [ "$(running_mode)" != secure ] || die "bench: not on the secure demo yet; './ops/demo.sh down', then 'up'"
    source "$COROMESH_ROOT/ops/lib/bench.sh"
    cmd_bench "${@:2}"
    ;;
  down) cmd_down ;;
  -h | --help | help) print_script_help ;;
  *)
    echo "usage: $0 up [--nomad|--native|--secure] | status | click [EXPRESSION] | bench [--duration S] [--rounds N] [--with-tcp] | down" >&2
    echo "       $0 --help  (what each command does)" >&2
    exit 2
    ;;
esac
