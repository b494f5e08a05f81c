#!/usr/bin/env bash
# The calculator mesh scheduled by Nomad, for real: a `consul agent -dev` and a
# `nomad agent -dev` (raw_exec) on free loopback ports, ops/nomad/run.sh up submits
# ops/nomad/calculator.nomad.hcl, the seed's expression (and one using every operator)
# is computed by the frontend at its Nomad-assigned port (through its sidecar and the
# operators' sidecars, which must have counted the answers), then
# run.sh down must leave no registration in Consul and no process behind.
#   nomad_calculator_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
source_dir="$1" build_dir="$2" work="$3"
name=integration.nomad_calculator

fail() {
  echo "$name: FAIL: $*" >&2
  exit 1
}

export PATH="$source_dir/ops/.tools/bin:$PATH"
command -v nomad >/dev/null \
  || fail "nomad not found (ops/.tools/bin or PATH): run ./ops/setup.sh, which builds it (ops/build-nomad.sh)"
command -v consul >/dev/null || fail "consul not found (ops/.tools/bin or PATH): run ./ops/setup.sh"
for tool in curl jq; do
  command -v "$tool" >/dev/null || fail "$tool not found: run ./ops/setup.sh"
done

rm -rf "$work"
mkdir -p "$work"
run_dir="$work/nomad"
runner=("$source_dir/ops/nomad/run.sh")

# free_ports N: N distinct ports in 20000-32000 (below the ephemeral range, as the C++
# fixtures pick them) on which nothing listens on 127.0.0.1.
free_ports() {
  local wanted="$1" port tries=0
  local -a picked=()
  while [ "${#picked[@]}" -lt "$wanted" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 1000 ] || fail "no free loopback ports found"
    port=$((20000 + RANDOM % 12001))
    [[ " ${picked[*]} " != *" $port "* ]] || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      picked+=("$port")
    fi
  done
  echo "${picked[@]}"
}

consul_pid=""
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "--- $name: logs (tail) ---" >&2
    tail -n 30 "$run_dir/nomad.log" 2>/dev/null >&2 || true
    find "$run_dir/data/alloc" -name '*.stderr.0' 2>/dev/null | while read -r log; do
      echo "--- ${log#"$run_dir/data/alloc/"}" >&2
      tail -n 5 "$log" >&2
    done
    tail -n 20 "$work/consul.log" 2>/dev/null >&2 || true
  fi
  "${runner[@]}" down --run-dir "$run_dir" >"$work/down-cleanup.log" 2>&1 || true
  if [ -n "$consul_pid" ]; then
    kill -TERM "$consul_pid" 2>/dev/null || true
    wait "$consul_pid" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT

# 1. Consul, as the project runs it (dev mode: Connect CA, intentions allow).
# start_consul: true once it has a Connect CA root; false if it exited (a port found
# free was taken before it bound it: the caller retries on new ports).
start_consul() {
  local c_dns c_serf_lan c_serf_wan c_server c_grpc c_grpc_tls
  read -r c_http c_dns c_serf_lan c_serf_wan c_server c_grpc c_grpc_tls <<<"$(free_ports 7)"
  consul agent -dev -node=coromesh-nomad-test -bind=127.0.0.1 -client=127.0.0.1 \
    -advertise=127.0.0.1 -http-port="$c_http" -dns-port="$c_dns" \
    -serf-lan-port="$c_serf_lan" -serf-wan-port="$c_serf_wan" -server-port="$c_server" \
    -grpc-port="$c_grpc" -grpc-tls-port="$c_grpc_tls" -log-level=warn \
    >"$work/consul.log" 2>&1 </dev/null &
  consul_pid=$!
  for _ in $(seq 1 300); do
    kill -0 "$consul_pid" 2>/dev/null || { wait "$consul_pid" || true; consul_pid=""; return 1; }
    if curl -fsS "http://127.0.0.1:$c_http/v1/agent/connect/ca/roots" 2>/dev/null | grep -q RootCert; then
      return 0
    fi
    sleep 0.1
  done
  fail "consul agent had no leader and Connect CA root within 30s (log: $work/consul.log)"
}
c_http=""
for attempt in 1 2 3; do
  start_consul && break
  [ "$attempt" -lt 3 ] || fail "consul agent exited at start-up three times (log: $work/consul.log)"
done
consul="127.0.0.1:$c_http"

# 2. Nomad and the job.
read -r n_http n_rpc n_serf <<<"$(free_ports 3)"
COROMESH_NOMAD_TIMEOUT=150 "${runner[@]}" up --run-dir "$run_dir" --consul "$consul" \
  --nomad-ports "$n_http,$n_rpc,$n_serf" --bin "$build_dir/bin" \
  || fail "ops/nomad/run.sh up failed"
frontend=$(cat "$run_dir/frontend.addr")
[[ "$frontend" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "frontend address '$frontend' is not 127.0.0.1:PORT"
echo "$name: the frontend placed by Nomad answers at $frontend"

# 3. The seed's expression through the Nomad-placed services.
# compute EXPRESSION EXPECTED_JSON
compute() {
  local answer
  answer=$(curl -sS --max-time 20 -X POST -H 'Content-Type: application/json' \
    -d "{\"expression\":\"$1\"}" "http://$frontend/api/v1/compute") \
    || fail "POST /api/v1/compute ($1) to $frontend failed"
  [ "$(jq -c . <<<"$answer")" = "$2" ] || fail "'$1' gave '$answer', want $2"
  echo "$name: $1 -> $answer"
}
compute '1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5' '{"result":9}'
# Every operator service, the Python mod-svc included.
compute '(7 % 3) * 4 - 10 / 5' '{"result":2}'

# ... and it went through the frontend's sidecar: its http upstreams counted answered
# requests (2xx) to the operators.
sidecar_admin=$(curl -fsS "http://127.0.0.1:$n_http/v1/service/frontend-sidecar-proxy" \
  | jq -r '.[0] | "\(.Address):\(.Port)"')
for op in add sub mul div mod; do
  count=$(curl -fsS "http://$sidecar_admin/metrics" \
    | awk -v up="$op-svc" '$1 ~ /^coromesh_sidecar_upstream_requests_total\{/ && index($1, "upstream=\"" up "\"") && index($1, "code=\"2xx\"") { sum += $2 }
                           END { print sum + 0 }')
  [ "${count%.*}" -gt 0 ] || fail "the frontend's sidecar counted no 2xx answers from $op-svc"
  echo "$name: the frontend's sidecar counted $count 2xx answers from $op-svc"
done

# 4. Down: nothing registered, nothing running. Stopping the job must stop every task
# and each must deregister itself: down's fallbacks (stopping leftover processes by PID,
# deregistering what is left in Consul) must have had nothing to do.
"${runner[@]}" down --run-dir "$run_dir" >"$work/down.log" 2>&1 \
  || { cat "$work/down.log" >&2; fail "ops/nomad/run.sh down failed"; }
cat "$work/down.log"
grep -q '(0 leftover processes)' "$work/down.log" \
  || fail "tasks were still running after the job was stopped (see down's output above)"
! grep -q 'warning' "$work/down.log" || fail "down had to clean up after the job (see above)"
left=$(curl -fsS "http://$consul/v1/agent/services" | jq -r 'keys[]')
[ -z "$left" ] || fail "still registered in Consul after down: $(tr '\n' ' ' <<<"$left")"
[ ! -f "$run_dir/nomad.pid" ] || fail "run.sh down left $run_dir/nomad.pid"
pattern_file="$work/data-dir.pattern"
printf '%s/\n' "$run_dir/data" >"$pattern_file"
for proc in /proc/[0-9]*; do
  if grep -qsF -f "$pattern_file" "$proc/cmdline" "$proc/environ" 2>/dev/null \
     || [ -n "$(find "$proc/fd" -maxdepth 1 -lname "$run_dir/data/*" 2>/dev/null)" ]; then
    fail "process ${proc#/proc/} ($(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null)) still runs after down"
  fi
done
echo "$name: down left no registration and no process"
echo "$name: PASS"
