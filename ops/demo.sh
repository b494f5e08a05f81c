#!/usr/bin/env bash
# The one-command demo.
#   ./ops/demo.sh up       set up, build, start Consul (:8500) and Prometheus (:9090)
#   ./ops/demo.sh status   what is running
#   ./ops/demo.sh down     stop everything the demo started
# The calculator services and their sidecars join `up` as they are built (see README).
set -euo pipefail
COROMESH_SCRIPT=demo
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

state="$COROMESH_ROOT/ops/.demo"
consul_addr=127.0.0.1:8500
prometheus_addr=127.0.0.1:9090

pid_alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

# start NAME cmd...: runs cmd in the background with its log in ops/.demo/NAME.log.
start() {
  local name="$1"
  shift
  if pid_alive "$name"; then
    echo "[demo] $name already running (pid $(cat "$state/$name.pid"))"
    return
  fi
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

# wait_http NAME URL: waits up to 30s for URL to answer 200.
wait_http() {
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then
      return 0
    fi
    if ! pid_alive "$1"; then
      tail -20 "$state/$1.log" >&2
      die "$1 exited during start-up (log: $state/$1.log)"
    fi
    sleep 0.2
  done
  die "$1 did not answer $2 within 30s (log: $state/$1.log)"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_up() {
  "$COROMESH_ROOT/ops/setup.sh"
  mkdir -p "$state"

  step "build"
  local cxx
  cxx=$(coromesh_cxx)
  cmake -S "$COROMESH_ROOT" -B "$COROMESH_ROOT/build" -G Ninja \
    -DCMAKE_CXX_COMPILER="$cxx" >"$state/configure.log" 2>&1 \
    || die "cmake configure failed (log: $state/configure.log)"
  cmake --build "$COROMESH_ROOT/build" -j 2 >"$state/build.log" 2>&1 \
    || die "build failed (log: $state/build.log)"
  step_done

  step "consul agent -dev on $consul_addr"
  if ! pid_alive consul && port_busy 8500; then
    die "port 8500 is taken by another process; stop it first"
  fi
  start consul consul agent -dev -bind 127.0.0.1 -client 127.0.0.1 -log-level warn
  wait_http consul "http://$consul_addr/v1/status/leader"
  step_done

  step "prometheus on $prometheus_addr"
  if ! pid_alive prometheus && port_busy 9090; then
    die "port 9090 is taken by another process; stop it first"
  fi
  sed -e "s/__CONSUL_ADDR__/$consul_addr/" -e "s/__SCRAPE_INTERVAL__/5s/g" \
    -e "s#__RULES_DIR__#$COROMESH_ROOT/ops/prometheus/rules#g" \
    "$COROMESH_ROOT/ops/prometheus/prometheus.yml.in" >"$state/prometheus.yml"
  start prometheus prometheus --config.file="$state/prometheus.yml" \
    --storage.tsdb.path="$state/prometheus-data" \
    --web.listen-address="$prometheus_addr" --log.level=warn
  wait_http prometheus "http://$prometheus_addr/-/ready"
  step_done

  step "hello-svc (framework example)"
  start hello "$COROMESH_ROOT/build/bin/hello-svc" --consul "$consul_addr" --port 0 \
    --consul-check-interval 2s
  for _ in $(seq 1 100); do
    hello_port=$(curl -fsS "http://$consul_addr/v1/agent/services" 2>/dev/null \
      | jq -r '[.[] | select(.Service == "hello")][0].Port // empty')
    [ -n "$hello_port" ] && break
    pid_alive hello || die "hello-svc exited during start-up (log: $state/hello.log)"
    sleep 0.1
  done
  [ -n "${hello_port:-}" ] || die "hello-svc did not register in Consul (log: $state/hello.log)"
  step_done "127.0.0.1:$hello_port"

  cat <<MSG
[demo] up: Consul UI http://$consul_addr/ui   Prometheus API http://$prometheus_addr/api/v1/query?query=up
[demo] hello-svc: curl 'http://127.0.0.1:$hello_port/api/v1/hello?name=mesh'
[demo] Prometheus scrapes every Consul service tagged 'metrics' (ops/prometheus/prometheus.yml.in).
[demo] greet's QoS, changed live without a restart (delete the key to restore it):
[demo]   consul kv put coromesh/qos/hello/greet '{"rate_limit": {"permits": 2, "period": "1s"}}'
[demo]   (Consul binary: $COROMESH_ROOT/ops/.tools/bin/consul; or curl -X PUT --data ... http://$consul_addr/v1/kv/coromesh/qos/hello/greet)
[demo] The calculator services and sidecars are not part of the demo yet: this starts the
[demo] platform and the framework's hello example. './ops/demo.sh down' stops it.
MSG
}

cmd_status() {
  for name in consul prometheus hello; do
    if pid_alive "$name"; then
      echo "[demo] $name: running (pid $(cat "$state/$name.pid"), log $state/$name.log)"
    else
      echo "[demo] $name: stopped"
    fi
  done
  if pid_alive consul; then
    echo "[demo] services in Consul: $(curl -fsS "http://$consul_addr/v1/catalog/services" | jq -c 'keys')"
    # The declared QoS each instance published, and where to override it live.
    curl -fsS "http://$consul_addr/v1/agent/services" \
      | jq -r '.[] | select(.Meta.qos_overrides != null) | .ID as $id | .Meta
               | to_entries[] | select(.key | startswith("qos_"))
               | "[demo] \($id) \(.key): \(.value)"' || true
  fi
  if pid_alive prometheus; then
    echo "[demo] prometheus targets up: $(curl -fsS "http://$prometheus_addr/api/v1/query?query=up" \
      | jq -c '[.data.result[] | {job: .metric.job, instance: .metric.instance, up: .value[1]}]')"
  fi
}

cmd_down() {
  # The service first, so it deregisters from a still-running Consul.
  for name in hello prometheus consul; do
    if pid_alive "$name"; then
      local pid
      pid=$(cat "$state/$name.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -KILL "$pid" 2>/dev/null || true
      echo "[demo] stopped $name"
    fi
    rm -f "$state/$name.pid"
  done
}

case "${1:-}" in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *)
    echo "usage: $0 up|status|down" >&2
    exit 2
    ;;
esac
