#!/usr/bin/env bash
# Runs the calculator mesh (ops/nomad/calculator.nomad.hcl) on a single-node
# `nomad agent -dev` on loopback, with the raw_exec driver, against a Consul agent that
# is already running (the project's: ./ops/demo.sh's, or a test's).
#
#   ops/nomad/run.sh up     [options]   start the agent (unless running), submit the job,
#                                       wait until every allocation runs and every Consul
#                                       check passes; prints the frontend's address
#   ops/nomad/run.sh status [options]   the agent, the job's allocations, Consul health
#   ops/nomad/run.sh down   [options]   stop the job, wait until its services left
#                                       Consul, stop the agent (by PID)
# Options (up records them in the run directory; status and down need only --run-dir):
#   --run-dir DIR        agent config, data, logs, PID file (default: ops/.demo/nomad)
#   --consul HOST:PORT   the Consul agent's HTTP address (default: 127.0.0.1:8500)
#   --frontend-port N    the frontend's port; 0 = one Nomad picks (default: 0)
#   --nomad-ports H,R,S  the agent's HTTP, RPC and Serf ports (default: 4646,4647,4648)
#   --dynamic-ports A-B  where Nomad picks task ports (default: 16000-19999, apart from
#                        the 20000-32000 the test fixtures use)
#   --bin DIR            the coromesh binaries (default: build/bin)
# Environment: COROMESH_NOMAD_TIMEOUT, seconds `up` waits for the job (default 180).
# Written to the run directory: nomad.log, nomad.pid, frontend.addr (HOST:PORT).
set -euo pipefail
# shellcheck disable=SC2034 # read by lib/common.sh (the prefix of its messages)
COROMESH_SCRIPT=nomad
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

job_file="$COROMESH_ROOT/ops/nomad/calculator.nomad.hcl"
job_name=calculator
# Each group of the job (its Consul service name) and its instance count.
declare -A group_counts=([add-svc]=2 [sub-svc]=2 [mul-svc]=2 [div-svc]=2 [mod-svc]=2 [frontend]=1)

run_dir="$COROMESH_ROOT/ops/.demo/nomad"
consul_addr=127.0.0.1:8500
frontend_port=0
nomad_ports=4646,4647,4648
dynamic_ports=16000-19999
bin_dir="$COROMESH_ROOT/build/bin"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 1 ] || usage
command_name="$1"
shift
case "$command_name" in
  -h | --help | help) print_script_help; exit 0 ;;
esac
explicit_settings=0
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --run-dir) run_dir="$2" ;;
    --consul) consul_addr="$2"; explicit_settings=1 ;;
    --frontend-port) frontend_port="$2"; explicit_settings=1 ;;
    --nomad-ports) nomad_ports="$2"; explicit_settings=1 ;;
    --dynamic-ports) dynamic_ports="$2"; explicit_settings=1 ;;
    --bin) bin_dir="$2"; explicit_settings=1 ;;
    *) usage ;;
  esac
  shift 2
done
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"
settings_file="$run_dir/settings"
pid_file="$run_dir/nomad.pid"
data_dir="$run_dir/data"

# status and down act on what up started: its recorded settings win unless given again.
if [ "$command_name" != up ] && [ "$explicit_settings" -eq 0 ] && [ -f "$settings_file" ]; then
  # shellcheck source=/dev/null
  source "$settings_file"
fi
[[ "$nomad_ports" =~ ^([0-9]+),([0-9]+),([0-9]+)$ ]] || die "--nomad-ports wants HTTP,RPC,SERF, got '$nomad_ports'"
http_port="${BASH_REMATCH[1]}" rpc_port="${BASH_REMATCH[2]}" serf_port="${BASH_REMATCH[3]}"
[[ "$dynamic_ports" =~ ^([0-9]+)-([0-9]+)$ ]] || die "--dynamic-ports wants MIN-MAX, got '$dynamic_ports'"
min_dynamic="${BASH_REMATCH[1]}" max_dynamic="${BASH_REMATCH[2]}"
[[ "$frontend_port" =~ ^[0-9]+$ ]] || die "--frontend-port wants a number, got '$frontend_port'"

export NOMAD_ADDR="http://127.0.0.1:$http_port"
nomad_api() { curl -fsS --max-time 10 "$NOMAD_ADDR$1"; }
consul_api() { curl -fsS --max-time 10 "http://$consul_addr$1"; }

agent_alive() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

nomad_bin() {
  command -v nomad 2>/dev/null \
    || die "nomad not found in ops/.tools/bin or on PATH: run ./ops/setup.sh (it builds Nomad from Go modules, see ops/build-nomad.sh)"
}

# wait_until SECONDS CMD...: polls CMD every second until it succeeds; false if it has
# not after SECONDS.
wait_until() {
  local seconds="$1"
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

write_agent_config() {
  cat >"$run_dir/agent.hcl" <<HCL
# Written by ops/nomad/run.sh: a single-node dev agent on loopback.
data_dir             = "$data_dir"
bind_addr            = "127.0.0.1"
log_level            = "INFO"
disable_update_check = true
ports {
  http = $http_port
  rpc  = $rpc_port
  serf = $serf_port
}
client {
  min_dynamic_port = $min_dynamic
  max_dynamic_port = $max_dynamic
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
# The services and sidecars register themselves in Consul (see the job file); the
# agent registers nothing there (no nomad / nomad-client services) and joins nothing.
consul {
  address          = "$consul_addr"
  auto_advertise   = false
  server_auto_join = false
  client_auto_join = false
}
HCL
}

node_ready() {
  nomad_api /v1/nodes 2>/dev/null \
    | jq -e 'length == 1 and .[0].Status == "ready"' >/dev/null \
    && nomad_api "/v1/node/$(nomad_api /v1/nodes | jq -r '.[0].ID')" 2>/dev/null \
      | jq -e '.Drivers.raw_exec.Healthy == true' >/dev/null
}

start_agent() {
  if agent_alive; then
    echo "[nomad] agent already running (pid $(cat "$pid_file"))"
    return
  fi
  local nomad port
  nomad=$(nomad_bin)
  for port in "$http_port" "$rpc_port" "$serf_port"; do
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
      || die "port $port is taken by another process (--nomad-ports)"
  done
  unmount_leftovers
  rm -rf "$data_dir"
  mkdir -p "$data_dir"
  write_agent_config
  setsid "$nomad" agent -dev -config "$run_dir/agent.hcl" >"$run_dir/nomad.log" 2>&1 </dev/null &
  echo $! >"$pid_file"
  if ! wait_until 60 node_ready; then
    tail -30 "$run_dir/nomad.log" >&2
    die "nomad agent did not become a ready node with raw_exec within 60s (log: $run_dir/nomad.log)"
  fi
}

# Allocations of the job that are wanted running, as "group client_status" lines.
job_allocations() {
  nomad_api "/v1/job/$job_name/allocations" \
    | jq -r '.[] | select(.DesiredStatus == "run") | "\(.TaskGroup) \(.ClientStatus)"'
}

# The job's failed allocations, with their task events, on stderr; false if there are any.
no_failed_allocations() {
  local failed
  failed=$(nomad_api "/v1/job/$job_name/allocations" \
    | jq -r '.[] | select(.ClientStatus == "failed") | .ID')
  [ -z "$failed" ] && return 0
  local id
  for id in $failed; do
    nomad_api "/v1/allocation/$id" | jq -r '"allocation \(.ID) (\(.TaskGroup)) failed:",
      (.TaskStates // {} | to_entries[] | "  task \(.key): " +
        ([.value.Events[] | .DisplayMessage] | join("; ")))' >&2
  done
  return 1
}

all_allocations_running() {
  local lines group
  lines=$(job_allocations 2>/dev/null) || return 1
  for group in "${!group_counts[@]}"; do
    [ "$(grep -c "^$group running$" <<<"$lines")" -eq "${group_counts[$group]}" ] || return 1
  done
}

# Every group's instances, and their sidecars, registered and passing in Consul.
consul_all_passing() {
  local group name
  for group in "${!group_counts[@]}"; do
    for name in "$group" "$group-sidecar-proxy"; do
      [ "$(consul_api "/v1/health/service/$name?passing" 2>/dev/null | jq length)" \
        = "${group_counts[$group]}" ] || return 1
    done
  done
}

# The frontend's sidecar has every passing instance of each operator as an endpoint
# (its watch of Consul can trail Consul's own view by a moment): the mesh answers now.
frontend_sidecar_sees_all() {
  local admin metrics group
  admin=$(nomad_api /v1/service/frontend-sidecar-proxy 2>/dev/null \
    | jq -r '.[0] // empty | "\(.Address):\(.Port)"') || return 1
  [ -n "$admin" ] || return 1
  metrics=$(curl -fsS --max-time 5 "http://$admin/metrics" 2>/dev/null) || return 1
  for group in "${!group_counts[@]}"; do
    [ "$group" != frontend ] || continue
    grep -qE "^coromesh_sidecar_upstream_endpoints\{[^}]*upstream=\"$group\"[^}]*\} ${group_counts[$group]}(\.0+)?$" \
      <<<"$metrics" || return 1
  done
}

job_ready() {
  no_failed_allocations || die "the job has failed allocations (above); agent log: $run_dir/nomad.log"
  all_allocations_running && consul_all_passing && frontend_sidecar_sees_all
}

job_is_running() {
  agent_alive && nomad_api "/v1/job/$job_name" 2>/dev/null | jq -e '.Status == "running"' >/dev/null
}

frontend_address() {
  nomad_api /v1/service/frontend | jq -r '.[0] | "\(.Address):\(.Port)"'
}

cmd_up() {
  step "check inputs"
  local name
  for name in "${!group_counts[@]}" coromesh-sidecar; do
    [ -x "$bin_dir/$name" ] || die "$bin_dir/$name not found: build first (cmake --build build) or pass --bin"
  done
  bin_dir="$(cd "$bin_dir" && pwd)"   # the tasks run in their own directories
  consul_api /v1/status/leader >/dev/null 2>&1 \
    || die "no Consul agent answers at $consul_addr (--consul); start one first"
  # A taken static port would only show as the frontend's task failing three times.
  if [ "$frontend_port" -ne 0 ] && ! job_is_running \
     && (exec 3<>"/dev/tcp/127.0.0.1/$frontend_port") 2>/dev/null; then
    die "port $frontend_port is taken by another process (--frontend-port)"
  fi
  local setting
  for setting in consul_addr frontend_port nomad_ports dynamic_ports bin_dir; do
    printf '%s=%q\n' "$setting" "${!setting}"
  done >"$settings_file"

  step "nomad agent -dev on 127.0.0.1:$http_port"
  start_agent
  step_done "pid $(cat "$pid_file"), log $run_dir/nomad.log"

  step "job $job_name"
  local nomad
  nomad=$(nomad_bin)
  "$nomad" job run -detach -var "coromesh_bin=$bin_dir" -var "consul_addr=$consul_addr" \
    -var "frontend_port=$frontend_port" "$job_file" >"$run_dir/job-run.log" 2>&1 \
    || { cat "$run_dir/job-run.log" >&2; die "nomad job run failed"; }
  local timeout="${COROMESH_NOMAD_TIMEOUT:-180}"
  if ! wait_until "$timeout" job_ready; then
    echo "allocations wanted running:" >&2
    job_allocations >&2 || true
    die "the job's allocations were not all running with passing Consul checks within ${timeout}s (nomad status: NOMAD_ADDR=$NOMAD_ADDR $nomad job status $job_name)"
  fi
  frontend_address >"$run_dir/frontend.addr"
  local group instances=0
  for group in "${!group_counts[@]}"; do instances=$((instances + group_counts[$group])); done
  step_done "$instances allocations running, all checks passing, the frontend's sidecar sees every instance"
  cat <<MSG
[nomad] frontend: http://$(cat "$run_dir/frontend.addr")/api/v1/compute
[nomad] Nomad API: $NOMAD_ADDR (e.g. NOMAD_ADDR=$NOMAD_ADDR $nomad job status $job_name)
[nomad] task logs: $nomad alloc logs <alloc> service|sidecar; agent log: $run_dir/nomad.log
MSG
}

cmd_status() {
  if ! agent_alive; then
    echo "[nomad] agent: stopped"
    return
  fi
  echo "[nomad] agent: running (pid $(cat "$pid_file"), $NOMAD_ADDR, log $run_dir/nomad.log)"
  "$(nomad_bin)" job status "$job_name" 2>&1 || true
  local group name
  for group in "${!group_counts[@]}"; do
    for name in "$group" "$group-sidecar-proxy"; do
      echo "[nomad] consul $name: $(consul_api "/v1/health/service/$name" 2>/dev/null \
        | jq -c '[.[] | {id: .Service.ID, checks: [.Checks[].Status] | unique}]' || echo '?')"
    done
  done
}

# IDs of Consul services of the job's groups (instances and sidecars) still registered:
# only the IDs the job gives them (<group>-<short allocation ID>[-sidecar-proxy]), never
# another instance of the same service on that agent (./ops/demo.sh's, say).
consul_leftovers() {
  consul_api /v1/agent/services 2>/dev/null | jq -r --arg groups "${!group_counts[*]}" '
    ($groups | split(" ")) as $g
    | .[] | select(.Service as $s | $g | any(. == $s or . + "-sidecar-proxy" == $s))
    | select(.ID | test("-[0-9a-f]{8}(-sidecar-proxy)?$")) | .ID'
}

no_consul_leftovers() { [ -z "$(consul_leftovers)" ]; }

# PIDs of the processes that hold this run's data directory: the agent's executors and
# the tasks they started (named in their command line or environment), and its log
# collectors (`nomad logmon`, which only hold files open there). All of them outlive an
# agent that was killed.
processes_of_this_run() {
  # The pattern is read from a file, so that grep's own command line does not match.
  local pattern="$run_dir/data-dir.pattern" dir
  printf '%s/\n' "$data_dir" >"$pattern"
  {
    for dir in /proc/[0-9]*; do
      if grep -qsF -f "$pattern" "$dir/cmdline" "$dir/environ" 2>/dev/null; then
        echo "${dir#/proc/}"
      fi
    done
    find /proc/[0-9]*/fd -maxdepth 1 -lname "$data_dir/*" 2>/dev/null | cut -d/ -f3
  } | sort -un
}

# Nomad (as root) mounts a tmpfs on each task's secrets/ and private/ and unmounts them
# when it collects the allocation; an agent that died leaves them mounted, and the data
# directory could not be removed. Unmounts those under this run's data directory.
unmount_leftovers() {
  local mount_point
  # Deepest first; /proc/mounts escapes spaces as \040, which our paths do not have.
  awk -v dir="$data_dir/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r \
    | while read -r mount_point; do
      umount "$mount_point" || echo "[nomad] warning: cannot unmount $mount_point" >&2
    done
}

# stop_pids PID...: SIGTERM to all, up to 20s for them to exit, then SIGKILL the rest.
# (Nomad's executor and logmon helpers ignore SIGTERM; the tasks use it to deregister.)
stop_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  local pid alive
  for _ in $(seq 1 100); do
    alive=()
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
    done
    [ "${#alive[@]}" -gt 0 ] || return 0
    sleep 0.2
  done
  kill -KILL "${alive[@]}" 2>/dev/null || true
}

all_allocations_stopped() {
  [ -z "$(nomad_api "/v1/job/$job_name/allocations" 2>/dev/null \
    | jq -r '.[] | select(.ClientStatus == "running" or .ClientStatus == "pending") | .ID')" ]
}

cmd_down() {
  if agent_alive; then
    step "stop job $job_name"
    if nomad_api "/v1/job/$job_name" >/dev/null 2>&1; then
      # Not -purge: the stopped job stays visible while the agent runs, and its
      # allocations (which the wait below reads) stay listed under it.
      "$(nomad_bin)" job stop -detach "$job_name" >/dev/null
      wait_until 60 all_allocations_stopped \
        || echo "[nomad] warning: allocations still running after 60s; stopping them by PID" >&2
    fi
    step_done
  fi
  step "stop agent and leftovers"
  if agent_alive; then
    stop_pids "$(cat "$pid_file")"
  fi
  rm -f "$pid_file"
  local -a leftovers
  mapfile -t leftovers < <(processes_of_this_run)
  stop_pids "${leftovers[@]}"
  unmount_leftovers
  step_done "${#leftovers[@]} leftover processes"
  # A task that could not deregister itself (killed) leaves its registration behind.
  if consul_api /v1/status/leader >/dev/null 2>&1; then
    local id
    if ! wait_until 20 no_consul_leftovers; then
      for id in $(consul_leftovers); do
        echo "[nomad] warning: $id was still registered in Consul; deregistering it" >&2
        curl -fsS -X PUT "http://$consul_addr/v1/agent/service/deregister/$id" >/dev/null || true
      done
    fi
  fi
}

case "$command_name" in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) usage ;;
esac
