#!/usr/bin/env bash
# Fault scenarios against the calculator mesh (tests/e2e/lib.sh: every process on free
# loopback ports, its own Consul dev agent), each under a steady load of the seed's
# request (tests/e2e/load.py: every request's status, answer and latency recorded):
#
#   kill9           add-svc-1 killed (SIGKILL): zero client-visible errors (the
#                   frontend's retries, the sidecars' http mode), the frontend's sidecar
#                   drops it from its endpoints; restarted 4 s after that, it gets
#                   calls again. With TOPO_PROXY=native the same against Connect-native
#                   services (the frontend's own client retries, ejects and follows
#                   Consul's Connect endpoints)
#   consul-restart  the Consul agent stopped (SIGTERM) for 5 s and started again on the
#                   same port (a -dev agent: empty catalog, a new CA): traffic goes on,
#                   every service and sidecar registers again by itself
#   consul-restart-server  the same with a one-node Consul server whose data (catalog,
#                   CA) is on disk (ops/lib/platform.sh, PLATFORM_CONSUL_MODE=server)
#   hung            add-svc-1 frozen (SIGSTOP) for 8 s, so it accepts and never answers:
#                   zero errors (deadlines and retries), a mul-only probe keeps its latency
#   blackhole       an extra add-svc endpoint registered at a port whose SYNs vanish
#                   (tests/e2e/blackhole.py), its TTL check kept passing for 8 s (the
#                   black hole is between caller and instance: the instance's own agent
#                   sees it alive), then failed: zero errors; the frontend's sidecar's
#                   connect timeout fires and the request goes to a healthy instance, no
#                   request pays the operators' 1 s deadline; a mul-only probe keeps its
#                   latency; the endpoint leaves once its check fails
#   sigterm         SIGTERM, then restart, of an operator (add-svc-1), the Python one
#                   (mod-svc-1), a sidecar (sub-svc-2's) and last the frontend's sidecar,
#                   under a client that retries: zero failed requests, nothing of a
#                   stopped process left registered
#
#   tests/e2e/faults.sh SCENARIO [BIN_DIR=build/bin]
# Prints the numbers (requests, errors, worst latency during the fault, time to recover)
# and exits non-zero when the scenario's assertion fails. FAULT_WORKERS (default 4)
# sets the load's concurrency; E2E_KEEP=1 keeps the run directory.
set -euo pipefail
COROMESH_SCRIPT=faults
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

scenario="${1:-}"
case "$scenario" in
  kill9 | consul-restart | hung | blackhole | sigterm) ;;
  consul-restart-server)
    export PLATFORM_CONSUL_MODE=server
    scenario=consul-restart
    ;;
  *) die "usage: tests/e2e/faults.sh kill9|consul-restart|consul-restart-server|hung|blackhole|sigterm [BIN_DIR]" ;;
esac
workers="${FAULT_WORKERS:-4}"
seed_body='{"expression":"1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5"}'

# ---------------------------------------------------------------- load
load_pids=()
e2e_on_exit() {
  local pid
  for pid in "${load_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${load_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# load_start NAME BODY EXPECTED WORKERS [RETRIES]: a load for at most 120 s, until
# load_stop; its requests in $work/load-NAME.log.
load_start() {
  python3 "$here/load.py" run --url "http://$frontend/api/v1/compute" --body "$2" \
    --expect "$3" --workers "$4" --retries "${5:-0}" --duration 120 --log "$work/load-$1.log" &
  load_pids+=($!)
}
load_count() { if [ -f "$work/load-$1.log" ]; then wc -l <"$work/load-$1.log"; else echo 0; fi; }
# load_wait_requests NAME N: until the load has recorded N requests (60 s at most).
load_wait_requests() {
  local deadline=$((SECONDS + 60))
  until [ "$(load_count "$1")" -ge "$2" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "load $1: fewer than $2 requests in 60 s"
    sleep 0.2
  done
}
load_stop() {
  local log
  # load.py stops when LOG.stop appears, writing out its last requests.
  for log in "$work"/load-*.log; do touch "$log.stop"; done
  e2e_on_exit
  load_pids=()
}
# load_report NAME [SLOW_MS]: load.py's summary (JSON) of that load.
load_report() {
  python3 "$here/load.py" report --log "$work/load-$1.log" --events "$work/events" \
    --slow-ms "${2:-500}"
}
event() { echo "$(date +%s.%N) $1" >>"$work/events"; }
field() { jq -r ".$2" <<<"$1"; }
print_summary() {
  jq -r --arg name "$1" '"  load \($name): \(.requests) requests, \(.errors) errors (by status:" +
    " \(.statuses | tojson)\(if .errors > 0 then ", \(.errors_from_s) s to \(.errors_until_s) s after" +
      " the fault" else "" end)), \(.failed_attempts) failed attempts; before the fault p50" +
    " \(.before_p50_ms) ms, p99 \(.before_p99_ms) ms, max \(.before_max_ms) ms; during it" +
    " \(.during_requests) requests (\(.during_errors) errors), p50 \(.during_p50_ms) ms, p99 \(.during_p99_ms) ms," +
    " worst \(.during_max_ms) ms; recovered (no error, none over \(.slow_ms) ms)" +
    " \(.recover_s) s after the fault"' <<<"$2"
}

# ---------------------------------------------------------------- Consul
# consul_passing_ids: the IDs on the agent whose every check passes.
consul_passing_ids() { _topology_passing_ids; }
# wait_passing SECONDS ID...: until every ID is registered and passing; prints the wait.
wait_passing() {
  local seconds="$1" started=$SECONDS id missing
  shift
  while :; do
    missing=""
    local passing
    passing=$(consul_passing_ids || true)
    for id in "$@"; do grep -qxF "$id" <<<"$passing" || missing+=" $id"; done
    [ -n "$missing" ] || break
    [ $((SECONDS - started)) -lt "$seconds" ] || fail "not passing in Consul after $seconds s:$missing"
    sleep 0.2
  done
  echo $((SECONDS - started))
}
# operator_calls PROC OPERATION: the 200s PROC served for OPERATION (its /metrics).
operator_calls() {
  local port
  port=$(topology_rows | awk -F'\t' -v p="$1" '$1 == p {print $6}')
  curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" |
    awk -v op="operation=\"$2\"" '/^coromesh_http_server_requests_total/ && index($0, op) && /code="200"/ {s += $2} END {print s + 0}'
}

# connect_passing SERVICE: how many Connect endpoints of SERVICE Consul lists as passing
# (what a Connect-native caller follows).
connect_passing() {
  curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/health/connect/$1?passing" | jq length
}

# sidecar_endpoints PROC UPSTREAM: the endpoints sidecar PROC has for UPSTREAM (its
# coromesh_sidecar_upstream_endpoints gauge).
sidecar_endpoints() {
  local port
  port=$(topology_rows | awk -F'\t' -v p="$1" '$1 == p {print $6}')
  curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" |
    awk -v up="upstream=\"$2\"" '/^coromesh_sidecar_upstream_endpoints/ && index($0, up) {print $2}'
}

# metric_sum PROC NAME [LABEL=\"VALUE\"...]: the sum of PROC's samples of NAME (its
# /metrics) whose labels include every one given.
metric_sum() {
  local port proc="$1" name="$2"
  shift 2
  port=$(topology_rows | awk -F'\t' -v p="$proc" '$1 == p {print $6}')
  curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" |
    awk -v name="$name" -v wanted="$*" '
      index($0, name "{") == 1 || index($0, name " ") == 1 {
        n = split(wanted, labels, " ")
        for (i = 1; i <= n; i++) if (!index($0, labels[i])) next
        s += $NF
      }
      END {print s + 0}'
}

# ---------------------------------------------------------------- scenarios
scenario_kill9() {
  load_start seed "$seed_body" '{"result":9}' "$workers"
  load_wait_requests seed 50
  event inject
  local victim
  victim=$(proc_pid "$work" add-svc-1)
  kill -KILL "$victim"
  local killed_at=$SECONDS taken_out
  if [ "$TOPO_PROXY" = native ]; then
    # No sidecar: the frontend's own client follows add-svc's Connect endpoints, which
    # lose add-svc-1 once Consul's check of it fails (the client's outlier ejection may
    # act before that).
    while [ "$(connect_passing add-svc)" != 1 ]; do
      [ $((SECONDS - killed_at)) -lt 30 ] || fail "Consul still listed 2 passing add-svc endpoints 30 s after the kill"
      sleep 0.2
    done
  else
    # Consul's check of add-svc-1's sidecar (an alias of add-svc-1) fails, and the
    # frontend's sidecar drops the endpoint it watches.
    while [ "$(sidecar_endpoints frontend-1-sidecar add-svc)" != 1 ]; do
      [ $((SECONDS - killed_at)) -lt 30 ] || fail "the frontend's sidecar still had 2 add-svc endpoints 30 s after the kill"
      sleep 0.2
    done
  fi
  taken_out=$((SECONDS - killed_at))
  sleep 4
  event restore
  proc_restart "$work" add-svc-1
  local waited ids=(add-svc-1)
  [ "$TOPO_PROXY" = native ] || ids+=(add-svc-1-sidecar-proxy)
  waited=$(wait_passing 60 "${ids[@]}")
  local calls_before calls_after deadline=$((SECONDS + 30))
  calls_before=$(operator_calls add-svc-1 add)
  while :; do
    sleep 0.5
    calls_after=$(operator_calls add-svc-1 add)
    [ "$calls_after" -le "$calls_before" ] || break
    [ "$SECONDS" -lt "$deadline" ] || fail "the restarted add-svc-1 got no add calls in 30 s"
  done
  sleep 2
  load_stop
  local summary
  summary=$(load_report seed)
  print_summary seed "$summary"
  echo "  add-svc-1 killed ($TOPO_PROXY topology): out of the frontend's add-svc endpoints ${taken_out} s later;" \
    "restarted 4 s after that: passing in Consul ${waited} s later, then served $calls_after add calls"
  [ "$(field "$summary" errors)" -eq 0 ] || fail "$(field "$summary" errors) client-visible errors after add-svc-1 was killed"
  pass "kill -9 of add-svc-1 under load: no client-visible error; it rejoined when restarted"
}

scenario_consul_restart() {
  local ids
  mapfile -t ids < <(topology_rows | cut -f4)
  local roots_before
  roots_before=$(curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/connect/ca/roots" |
    jq -r '[.Roots[].ID[0:11]] | join(", ")')
  load_start seed "$seed_body" '{"result":9}' "$workers"
  load_wait_requests seed 50
  event inject
  proc_stop "$work" consul
  local at_stop
  at_stop=$(load_count seed)
  sleep 5
  local during_outage=$(($(load_count seed) - at_stop))
  event restore
  local restarted=$SECONDS
  # The same command, so the same ports (a server's Raft keeps its address).
  proc_restart "$work" consul
  _platform_wait 60 consul "$work" _consul_ready "$TOPO_CONSUL_ADDR"
  local agent_up=$((SECONDS - restarted)) waited
  waited=$(wait_passing 90 "${ids[@]}")
  local at_registered
  at_registered=$(load_count seed)
  sleep 5 # traffic on certificates of the new CA
  local after_registered=$(($(load_count seed) - at_registered))
  load_stop
  local summary
  summary=$(load_report seed)
  print_summary seed "$summary"
  echo "  $during_outage requests answered during the 5 s without Consul; agent up again" \
    "${agent_up} s after its restart, all ${#ids[@]} services and sidecars registered and" \
    "passing $((agent_up + waited)) s after it; $after_registered requests in the 5 s after that"
  [ "$(field "$summary" errors)" -eq 0 ] || fail "$(field "$summary" errors) client-visible errors across the Consul restart"
  echo "  CA roots after the restart: $(curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/connect/ca/roots" |
    jq -r '[.Roots[].ID[0:11]] | join(", ")') (before: $roots_before)"
  [ "$after_registered" -gt 0 ] || fail "no request answered after the services registered again"
  pass "Consul stopped and restarted under load: no client-visible error; everything registered again"
}

scenario_hung() {
  load_start seed "$seed_body" '{"result":9}' "$workers"
  # A computation that calls mul-svc only: the caller's other operations.
  load_start probe '{"expression":"6*7"}' '{"result":42}' 1
  load_wait_requests seed 50
  load_wait_requests probe 20
  event inject
  local victim
  victim=$(proc_pid "$work" add-svc-1)
  kill -STOP "$victim"
  # Consul's check of the frozen instance times out, and the frontend's sidecar drops it
  # from its endpoints: when, if within the 8 s.
  local stopped_at=$SECONDS dropped="not within 8 s"
  while [ $((SECONDS - stopped_at)) -lt 8 ]; do
    if [ "$dropped" = "not within 8 s" ] && [ "$(sidecar_endpoints frontend-1-sidecar add-svc)" = 1 ]; then
      dropped="$((SECONDS - stopped_at)) s after the SIGSTOP"
    fi
    sleep 0.2
  done
  kill -CONT "$victim"
  event restore
  sleep 3
  load_stop
  local summary probe
  summary=$(load_report seed 1500)
  probe=$(load_report probe 1500)
  print_summary seed "$summary"
  print_summary probe "$probe"
  echo "  add-svc-1 out of the frontend sidecar's add-svc endpoints: $dropped"
  [ "$(field "$summary" errors)" -eq 0 ] || fail "$(field "$summary" errors) client-visible errors while add-svc-1 hung"
  [ "$(field "$probe" errors)" -eq 0 ] || fail "the mul-only probe failed $(field "$probe" errors) requests"
  # mul calls never touch add-svc: their p99 stays far below the operators' 1 s
  # per-attempt deadline, which the seed's requests run into. The bound scales with the
  # probe's own p99 before the fault: a loaded 2-core machine, or a sanitizer build, is
  # slower everywhere.
  local bound
  bound=$(jq -r '[250, 5 * .before_p99_ms] | max' <<<"$probe")
  awk -v m="$(field "$probe" during_p99_ms)" -v b="$bound" 'BEGIN {exit !(m < b)}' ||
    fail "the mul-only probe's p99 was $(field "$probe" during_p99_ms) ms while add-svc-1 hung" \
      "(bound $bound ms)"
  pass "add-svc-1 hung for 8 s under load: no client-visible error; mul calls kept their latency"
}

scenario_blackhole() {
  python3 "$here/blackhole.py" --port-file "$work/blackhole.port" --duration 200 &
  load_pids+=($!)
  local deadline=$((SECONDS + 10))
  until [ -s "$work/blackhole.port" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "tests/e2e/blackhole.py gave no port in 10 s"
    sleep 0.1
  done
  local hole_port hole_id=add-svc-blackhole-sidecar-proxy check_id=add-svc-blackhole-alive
  hole_port=$(cat "$work/blackhole.port")
  local consul="http://$TOPO_CONSUL_ADDR/v1/agent"
  load_start seed "$seed_body" '{"result":9}' "$workers"
  load_start probe '{"expression":"6*7"}' '{"result":42}' 1
  load_wait_requests seed 50
  load_wait_requests probe 20
  local timeouts_before
  timeouts_before=$(metric_sum frontend-1-sidecar coromesh_sidecar_request_failures_total \
    'listener="add-svc"' 'fault="timeout"')
  event inject
  # A third add-svc endpoint, as an instance's sidecar registers itself, at the black hole.
  jq -n --arg id "$hole_id" --arg check "$check_id" --argjson port "$hole_port" '{
      ID: $id, Name: "add-svc-sidecar-proxy", Kind: "connect-proxy",
      Address: "127.0.0.1", Port: $port,
      Proxy: {DestinationServiceName: "add-svc", LocalServicePort: 1},
      Check: {CheckID: $check, Name: "alive, as its own agent sees it", TTL: "5s",
              Status: "passing"}}' |
    _topology_consul_curl -fsS --max-time 5 -X PUT --data @- "$consul/service/register" ||
    fail "could not register the black-holed add-svc endpoint"
  local injected=$SECONDS seen="" removed=""
  while [ "$(sidecar_endpoints frontend-1-sidecar add-svc)" != 3 ]; do
    [ $((SECONDS - injected)) -lt 10 ] || fail "the frontend's sidecar never had the black-holed endpoint"
    sleep 0.1
  done
  seen=$((SECONDS - injected))
  # 8 s during which Consul still calls it passing.
  while [ $((SECONDS - injected)) -lt 8 ]; do
    _topology_consul_curl -fsS --max-time 5 -X PUT "$consul/check/pass/$check_id" >/dev/null
    sleep 1
  done
  _topology_consul_curl -fsS --max-time 5 -X PUT "$consul/check/fail/$check_id" >/dev/null
  event check_failed
  local failed_at
  failed_at=$(date +%s.%N)
  while [ "$(sidecar_endpoints frontend-1-sidecar add-svc)" != 2 ]; do
    [ $((SECONDS - injected)) -lt 30 ] || fail "the black-holed endpoint was still there 30 s after its check failed"
    sleep 0.1
  done
  removed=$(awk -v a="$failed_at" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  event restore
  sleep 3
  load_stop
  _topology_consul_curl -fsS --max-time 5 -X PUT "$consul/service/deregister/$hole_id" >/dev/null || true
  local summary probe connect_timeouts retries timeouts
  summary=$(load_report seed)
  probe=$(load_report probe)
  print_summary seed "$summary"
  print_summary probe "$probe"
  connect_timeouts=$(metric_sum frontend-1-sidecar coromesh_sidecar_upstream_connect_failures_total \
    'upstream="add-svc"' 'reason="connect_timeout"')
  retries=$(metric_sum frontend-1-sidecar coromesh_sidecar_upstream_retries_total 'upstream="add-svc"')
  timeouts=$(($(metric_sum frontend-1-sidecar coromesh_sidecar_request_failures_total \
    'listener="add-svc"' 'fault="timeout"') - timeouts_before))
  # The frontend's sidecar's outlier detection (5 failures in a row) ejects it, long
  # before Consul's check does.
  local ejected_ts ejected="never"
  ejected_ts=$(grep -m1 "event=connect.endpoint.ejected service=add-svc endpoint=[^ ]*$hole_id" \
    "$work/frontend-1-sidecar.log" | sed 's/^ts=\([^ ]*\) .*/\1/' || true)
  if [ -n "$ejected_ts" ]; then
    ejected=$(awk -v a="$(awk '$2 == "inject" {print $1}' "$work/events")" \
      -v b="$(date -d "$ejected_ts" +%s.%N)" 'BEGIN {printf "%.2f s after the registration", b - a}')
  fi
  echo "  black-holed add-svc endpoint at 127.0.0.1:$hole_port: in the frontend's sidecar's" \
    "endpoints ${seen} s after its registration; $connect_timeouts connect timeouts there," \
    "$retries add requests retried on another endpoint, $timeouts add requests that ran out" \
    "of their deadline; ejected by its outlier detection $ejected; out of its endpoints" \
    "${removed} s after its check failed"
  [ "$(field "$summary" errors)" -eq 0 ] || fail "$(field "$summary" errors) client-visible errors with a black-holed add-svc endpoint"
  [ "$(field "$probe" errors)" -eq 0 ] || fail "the mul-only probe failed $(field "$probe" errors) requests"
  [ "$connect_timeouts" -ge 1 ] || fail "no connect timeout counted: was the black hole ever dialled?"
  [ -n "$ejected_ts" ] || fail "the frontend's sidecar never ejected the black-holed endpoint"
  # The connect timeout (250 ms), not the operators' 1 s deadline, is what a request pays
  # for the black hole: none of its add calls ran out of time in the sidecar.
  [ "$timeouts" -eq 0 ] || fail "$timeouts add requests spent their whole deadline on the black hole"
  local bound
  bound=$(jq -r '[250, 5 * .before_p99_ms] | max' <<<"$probe")
  awk -v m="$(field "$probe" during_p99_ms)" -v b="$bound" 'BEGIN {exit !(m < b)}' ||
    fail "the mul-only probe's p99 was $(field "$probe" during_p99_ms) ms with the black hole" \
      "(bound $bound ms)"
  pass "a black-holed add-svc endpoint for 8 s under load: no client-visible error, connect" \
    "timeouts and retries, mul calls kept their latency, gone once its check failed"
}

scenario_sigterm() {
  load_start seed "$seed_body" '{"result":9}' "$workers" 5
  load_wait_requests seed 50
  event inject
  local proc id waited count from
  for proc in add-svc-1 mod-svc-1 sub-svc-2-sidecar frontend-1-sidecar; do
    id=$(topology_rows | awk -F'\t' -v p="$proc" '$1 == p {print $4}')
    count=$(load_count seed)
    from=$(date +%s.%N)
    PROC_STOP_GRACE=30 proc_stop "$work" "$proc"
    ! consul_registered_ids | grep -qxF "$id" || fail "$proc exited on SIGTERM and left $id registered"
    proc_restart "$work" "$proc"
    waited=$(wait_passing 60 "$id")
    load_wait_requests seed $((count + 20))
    # Requests that ended from the SIGTERM on and needed more than one attempt.
    local retried
    retried=$(awk -v from="$from" '$2 >= from && $5 > 1 {n++} END {print n + 0}' "$work/load-seed.log")
    echo "  $proc: SIGTERM, exited and deregistered $id; restarted, passing ${waited} s later;" \
      "$retried requests needed a retry since this SIGTERM"
  done
  event restore
  load_stop
  local summary
  summary=$(load_report seed)
  print_summary seed "$summary"
  [ "$(field "$summary" errors)" -eq 0 ] || fail "$(field "$summary" errors) requests failed for a client that retries (5 times)"
  pass "SIGTERM of an operator, mod-svc, a sidecar and the frontend's sidecar under load:" \
    "no failed request for a retrying client, nothing left registered"
}

e2e_mesh_up "${2:-}"
echo "scenario $scenario: $workers workers posting the seed's expression to $frontend"
"scenario_${scenario//-/_}"
echo "PASS"
