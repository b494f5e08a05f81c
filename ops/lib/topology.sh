# A mesh topology as local processes: every service instance listens on loopback,
# behind its own sidecar, which owns the instance's public mTLS port, registers it in
# Consul as a connect-proxy, and holds one loopback listener per upstream the service
# calls. Sourced by ops/demo.sh and tests/e2e/calculator_mesh.sh after ops/lib/common.sh
# (COROMESH_ROOT, die); needs curl and jq.
#
# Parameters (variables, set before topology_up):
#   TOPO_DIR             run directory: PID files, logs, topology.tsv (required)
#   TOPO_CONSUL_ADDR     the Consul agent's HTTP address (required)
#   TOPO_PROXY           coromesh: coromesh-sidecar for every sidecar (default)
#                        consul:   `consul connect proxy` for every sidecar, as the seed
#                                  ran it (L4 only)
#                        native:   Connect-native services (COROMESH_MESH=native): no
#                                  sidecars, each finds its callees in Consul by name;
#                                  a service that cannot be native (topology_sidecar_only)
#                                  keeps a coromesh-sidecar; the frontend, whose port
#                                  takes only Connect mTLS, is reached by plain-HTTP
#                                  clients through an upstream-only coromesh-sidecar
#                                  (process frontend-ingress, identity "ingress") listening
#                                  on TOPO_FRONTEND_PORT
#   TOPO_UPSTREAM_MODE   coromesh-sidecar upstream listeners: http (default) or tcp
#   TOPO_BIN             where the binaries are (default: build/bin of this tree)
#   TOPO_CHECK_INTERVAL  Consul check interval of services and sidecars (default 2s)
#   TOPO_LOG_LEVEL       log level of services and sidecars (default info)
#   TOPO_FRONTEND_PORT   the frontend's port (default 0: a free one)
#   TOPO_ACL_RUN         secure mode: the run directory of ops/lib/acl.sh whose bootstrap
#                        token manages the (ACL-enabled) Consul agent. topology_up then
#                        writes the "*" -> "*" deny intention and one allow per caller of
#                        each service (from UPSTREAMS), and gives every service and every
#                        sidecar its own token (service identity; TOPO_ACL_RUN/acl/
#                        NAME.token and NAME-sidecar.token, 0600) through its token file;
#                        this library's own Consul calls use the bootstrap token; only
#                        with TOPO_PROXY=coromesh. Empty (default): a Consul without ACLs
#
# The services are a table (topology_calculator below); one line adds a service:
#   topology_service NAME INSTANCES PORT UPSTREAMS COMMAND...
#     PORT       the instance's port, or 0 for a free one (a fixed port needs 1 instance)
#     UPSTREAMS  "key=service,..." : one sidecar upstream listener per service; the
#                instance reaches it at COROMESH_UPSTREAMS=key=127.0.0.1:PORT,...
#     COMMAND    run with the settings in the environment, as coromesh services read
#                them: COROMESH_SERVICE_NAME, COROMESH_INSTANCE_ID (NAME-1, NAME-2, ...;
#                the service registers itself in Consul under it), COROMESH_BIND_ADDRESS
#                (127.0.0.1), COROMESH_PORT, COROMESH_CONSUL_ADDR (and CONSUL_HTTP_ADDR),
#                COROMESH_CONSUL_CHECK_INTERVAL, COROMESH_LOG_LEVEL, COROMESH_UPSTREAMS
#
#   topology_sidecar_only NAME  NAME stays behind a coromesh-sidecar with TOPO_PROXY=native
#
#   topology_up                 starts every instance and its sidecar (a no-op when all
#                               of them run; leftovers of a partial run are stopped first)
#   topology_wait_ready SECONDS every process alive, every registration passing in
#                               Consul, every upstream listener and the frontend answering
#   topology_status             one line per process: pid, alive, its Consul health
#   topology_stop               SIGTERM by PID (they deregister), then the registrations
#                               of any that could not (killed) are removed
#   topology_rows [ROLE [SERVICE]]  the rows of TOPO_DIR/topology.tsv (see topology_up)
#   topology_frontend_addr      host:port where plain-HTTP clients reach the frontend
#   topology_metrics_targets    the Consul IDs Prometheus should scrape (one a line)

_topology_lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=processes.sh
source "$_topology_lib/processes.sh"
# shellcheck source=acl.sh
source "$_topology_lib/acl.sh"

topo_names=()
topo_instances=()
topo_ports=()
topo_upstreams=()
topo_commands=() # each command's words joined by the unit separator
topo_sidecar_only=" "

topology_service() {
  local name="$1" instances="$2" port="$3" upstreams="$4"
  shift 4
  [ "$port" = 0 ] || [ "$instances" = 1 ] || die "topology: $name has a fixed port and $instances instances"
  topo_names+=("$name")
  topo_instances+=("$instances")
  topo_ports+=("$port")
  topo_upstreams+=("$upstreams")
  local IFS=$'\x1f'
  topo_commands+=("$*")
}

topology_sidecar_only() { topo_sidecar_only+="$1 "; }

# The calculator of issue 10: two instances of each operator service (mod-svc is
# Python: the same settings, read from the same environment), one frontend.
topology_calculator() {
  local bin="${TOPO_BIN:-$COROMESH_ROOT/build/bin}"
  topology_service add-svc 2 0 "" "$bin/add-svc"
  topology_service sub-svc 2 0 "" "$bin/sub-svc"
  topology_service mul-svc 2 0 "" "$bin/mul-svc"
  topology_service div-svc 2 0 "" "$bin/div-svc"
  topology_service mod-svc 2 0 "" "$bin/mod-svc"
  topology_sidecar_only mod-svc # Python: no Connect module of its own
  topology_service frontend 1 "${TOPO_FRONTEND_PORT:-0}" \
    "add=add-svc,sub=sub-svc,mul=mul-svc,div=div-svc,mod=mod-svc" "$bin/frontend"
}

# topology.tsv, one row per process, tab-separated:
#   PROCESS ROLE SERVICE CONSUL_ID PORT METRICS_PORT UPSTREAMS
# ROLE service|sidecar|ingress; PORT the service's port (native: its mTLS port), the
# sidecar's public mTLS port, or the ingress's listener; CONSUL_ID "-": not registered
# (the ingress); METRICS_PORT where /metrics is served ("-": none, `consul connect
# proxy`; a native service's admin port); UPSTREAMS the sidecar's listeners,
# "service:port,..." ("-": none).
topology_rows() {
  [ -f "$TOPO_DIR/topology.tsv" ] || return 0
  awk -F'\t' -v role="${1:-}" -v service="${2:-}" \
    '(role == "" || $2 == role) && (service == "" || $3 == service)' "$TOPO_DIR/topology.tsv"
}

topology_frontend_addr() {
  local port
  port=$(topology_rows ingress frontend | cut -f5 | head -1)
  [ -n "$port" ] || port=$(topology_rows service frontend | cut -f5 | head -1)
  [ -n "$port" ] && echo "127.0.0.1:$port"
}

topology_metrics_targets() {
  topology_rows | awk -F'\t' '$4 != "-" && $6 != "-" {print $4}'
}

# topology_running: every recorded process is alive (and there is at least one).
topology_running() {
  local proc count=0
  while IFS=$'\t' read -r proc _; do
    proc_alive "$TOPO_DIR" "$proc" || return 1
    count=$((count + 1))
  done < <(topology_rows)
  [ "$count" -gt 0 ]
}

# _topology_consul_curl CURL-ARGS...: curl, with the bootstrap token in secure mode (from
# a header file: never on a command line).
_topology_consul_curl() {
  if [ -n "${TOPO_ACL_RUN:-}" ]; then
    curl -H "@$(acl_curl_header "$TOPO_ACL_RUN")" "$@"
  else
    curl "$@"
  fi
}

# _topology_token NAME SERVICE: in secure mode, the token file of NAME (SERVICE's
# identity), made once and kept while the agent accepts it; nothing otherwise.
_topology_token() {
  [ -n "${TOPO_ACL_RUN:-}" ] || return 0
  acl_ensure_service_token "$TOPO_CONSUL_ADDR" "$TOPO_ACL_RUN" "$2" "$1" ||
    die "topology: no Consul token for $1"
}

# _topology_intentions: in secure mode, "*" -> "*" deny and, for every service, an allow
# from each service that lists it as an upstream.
_topology_intentions() {
  [ -n "${TOPO_ACL_RUN:-}" ] || return 0
  local -A callers=()
  local s pair destination
  for s in "${!topo_names[@]}"; do
    for pair in ${topo_upstreams[$s]//,/ }; do
      destination="${pair#*=}"
      callers[$destination]+="${callers[$destination]:+ }${topo_names[$s]}"
    done
  done
  acl_deny_all "$TOPO_CONSUL_ADDR" "$TOPO_ACL_RUN" || die "topology: cannot write the deny intention"
  for destination in "${!callers[@]}"; do
    # shellcheck disable=SC2086 # the callers, one word each
    acl_allow "$TOPO_CONSUL_ADDR" "$TOPO_ACL_RUN" "$destination" ${callers[$destination]} ||
      die "topology: cannot write the intentions of $destination"
  done
}

# _topology_sidecar PROCESS SERVICE INSTANCE_ID N SERVICE_PORT PUBLIC_PORT ADMIN_PORT
#                   [UPSTREAM_SERVICE:PORT...]
# starts the sidecar of instance N of SERVICE with TOPO_PROXY's command; sets
# $sidecar_id (its Consul ID) and $sidecar_metrics (its /metrics port, or "-").
_topology_sidecar() {
  local proc="$1" name="$2" id="$3" n="$4" port="$5" public="$6" admin="$7"
  shift 7
  local -a upstreams=("$@") args=()
  local up token
  token=$(_topology_token "$name-sidecar" "$name")
  case "${TOPO_PROXY:-coromesh}" in
    coromesh | native) # native: a service that cannot be native keeps coromesh-sidecar
      # Secure mode: http inbound (L7), so a caller the intentions refuse is answered 403
      # with Consul's reason rather than a closed connection.
      [ -z "$token" ] || args+=(--consul-token-file "$token" --protocol http)
      for up in "${upstreams[@]}"; do args+=(--upstream "$up:${TOPO_UPSTREAM_MODE:-http}"); done
      proc_start "$TOPO_DIR" "$proc" "${TOPO_BIN:-$COROMESH_ROOT/build/bin}/coromesh-sidecar" \
        --consul "$TOPO_CONSUL_ADDR" --port "$admin" --log-level "${TOPO_LOG_LEVEL:-info}" \
        --consul-check-interval "${TOPO_CHECK_INTERVAL:-2s}" \
        --service "$name" --service-id "$id" --service-addr "127.0.0.1:$port" \
        --listen "127.0.0.1:$public" --register "${args[@]}"
      sidecar_id="$id-sidecar-proxy"
      sidecar_metrics="$admin"
      ;;
    consul)
      # As the seed's Nomad jobs ran it; -register-id keeps two instances apart. It
      # registers "<name>-proxy" with a TTL check and serves no metrics.
      for up in "${upstreams[@]}"; do args+=(-upstream "$up"); done
      proc_start "$TOPO_DIR" "$proc" consul connect proxy -http-addr "$TOPO_CONSUL_ADDR" \
        -log-level "${TOPO_LOG_LEVEL:-info}" -service "$name" \
        -service-addr "127.0.0.1:$port" -listen "127.0.0.1:$public" -register \
        -register-id "$n" "${args[@]}"
      sidecar_id="$name-proxy-$n"
      sidecar_metrics="-"
      ;;
  esac
}

topology_up() {
  [ -n "${TOPO_DIR:-}" ] && [ -n "${TOPO_CONSUL_ADDR:-}" ] || die "topology: TOPO_DIR and TOPO_CONSUL_ADDR must be set"
  case "${TOPO_PROXY:-coromesh}" in
    coromesh | consul | native) ;;
    *) die "TOPO_PROXY=${TOPO_PROXY}: expected coromesh, consul or native" ;;
  esac
  # `consul connect proxy` registers "<service>-proxy": outside a service identity.
  [ -z "${TOPO_ACL_RUN:-}" ] || [ "${TOPO_PROXY:-coromesh}" = coromesh ] ||
    die "topology: TOPO_ACL_RUN (secure mode) needs TOPO_PROXY=coromesh"
  [ "${#topo_names[@]}" -gt 0 ] || topology_calculator
  mkdir -p "$TOPO_DIR"
  if topology_running; then
    echo "[${COROMESH_SCRIPT:-ops}] topology already running in $TOPO_DIR"
    return 0
  fi
  topology_stop # what a partial earlier run left
  : >"$TOPO_DIR/topology.tsv"
  _topology_intentions
  local s n
  for s in "${!topo_names[@]}"; do
    for ((n = 1; n <= topo_instances[s]; n++)); do
      _topology_start_instance "$s" "$n"
    done
  done
  [ "${TOPO_PROXY:-coromesh}" != native ] || _topology_start_ingress
}

# _topology_start_ingress: plain HTTP on TOPO_FRONTEND_PORT to the native frontend's
# mTLS port, for curl, wrk and the tests (which are not in the mesh): an upstream-only
# coromesh-sidecar with its own identity, not registered. tcp: one frontend instance,
# and a computation's time is the frontend's own business (no http-mode timeout).
_topology_start_ingress() {
  local port="${TOPO_FRONTEND_PORT:-0}" admin
  read -r admin < <(free_ports 1 "$TOPO_DIR/ports-given")
  [ "$port" != 0 ] || read -r port < <(free_ports 1 "$TOPO_DIR/ports-given")
  ! port_busy "$port" || die "port $port (frontend-ingress) is taken by another process"
  proc_start "$TOPO_DIR" frontend-ingress "${TOPO_BIN:-$COROMESH_ROOT/build/bin}/coromesh-sidecar" \
    --consul "$TOPO_CONSUL_ADDR" --port "$admin" --log-level "${TOPO_LOG_LEVEL:-info}" \
    --service ingress --upstream "frontend:$port:tcp"
  printf 'frontend-ingress\tingress\tfrontend\t-\t%s\t%s\tfrontend:%s\n' "$port" "$admin" "$port" \
    >>"$TOPO_DIR/topology.tsv"
}

# _topology_start_instance S N: instance N of the service in row S of the table, and
# its sidecar; appends both to topology.tsv. With TOPO_PROXY=native (and a service not
# marked topology_sidecar_only) the instance is Connect-native and has no sidecar: its
# port takes Connect mTLS, /health and /metrics are on the loopback admin port (its
# Meta metrics_port), and it finds its callees in Consul by service name (the table's
# upstreams are not used: no COROMESH_UPSTREAMS).
_topology_start_instance() {
  local s="$1" n="$2" name="${topo_names[$1]}" id="${topo_names[$1]}-$2"
  local port public admin pair key service up service_upstreams="" native=0 metrics
  local -a command=() sidecar_upstreams=() mesh_env=() token_env=()
  local token
  token=$(_topology_token "$name" "$name")
  [ -z "$token" ] || token_env=(COROMESH_CONSUL_TOKEN_FILE="$token")
  IFS=$'\x1f' read -ra command <<<"${topo_commands[$s]}"
  read -r port public admin < <(free_ports 3 "$TOPO_DIR/ports-given")
  if [ "${TOPO_PROXY:-coromesh}" = native ] && [[ "$topo_sidecar_only" != *" $name "* ]]; then
    native=1
  fi
  # A native frontend's fixed port is its ingress's (_topology_start_ingress).
  if [ "${topo_ports[$s]}" != 0 ] && ! { [ "$native" -eq 1 ] && [ "$name" = frontend ]; }; then
    port="${topo_ports[$s]}"
  fi
  ! port_busy "$port" || die "port $port ($id) is taken by another process"
  if [ "$native" -eq 1 ]; then
    mesh_env=(COROMESH_MESH=native COROMESH_ADMIN_PORT="$admin")
    metrics="$admin"
  else
    for pair in ${topo_upstreams[$s]//,/ }; do
      key="${pair%%=*}" service="${pair#*=}"
      read -r up < <(free_ports 1 "$TOPO_DIR/ports-given")
      sidecar_upstreams+=("$service:$up")
      service_upstreams+="${service_upstreams:+,}$key=127.0.0.1:$up"
    done
    mesh_env=(COROMESH_UPSTREAMS="$service_upstreams")
    metrics="$port"
  fi
  proc_start "$TOPO_DIR" "$id" env COROMESH_SERVICE_NAME="$name" COROMESH_INSTANCE_ID="$id" \
    COROMESH_BIND_ADDRESS=127.0.0.1 COROMESH_PORT="$port" \
    COROMESH_CONSUL_ADDR="$TOPO_CONSUL_ADDR" CONSUL_HTTP_ADDR="$TOPO_CONSUL_ADDR" \
    COROMESH_CONSUL_CHECK_INTERVAL="${TOPO_CHECK_INTERVAL:-2s}" \
    COROMESH_LOG_LEVEL="${TOPO_LOG_LEVEL:-info}" "${mesh_env[@]}" "${token_env[@]}" \
    "${command[@]}"
  printf '%s\tservice\t%s\t%s\t%s\t%s\t-\n' "$id" "$name" "$id" "$port" "$metrics" \
    >>"$TOPO_DIR/topology.tsv"
  [ "$native" -eq 0 ] || return 0
  _topology_sidecar "$id-sidecar" "$name" "$id" "$n" "$port" "$public" "$admin" \
    "${sidecar_upstreams[@]}"
  local upstream_list="${sidecar_upstreams[*]}"
  upstream_list="${upstream_list// /,}"
  printf '%s\tsidecar\t%s\t%s\t%s\t%s\t%s\n' "$id-sidecar" "$name" "$sidecar_id" "$public" \
    "$sidecar_metrics" "${upstream_list:--}" >>"$TOPO_DIR/topology.tsv"
}

# _topology_passing_ids: the Consul service IDs whose every check passes.
_topology_passing_ids() {
  _topology_consul_curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/checks" 2>/dev/null |
    jq -r '[.[]] | group_by(.ServiceID) | .[] | select(all(.Status == "passing")) | .[0].ServiceID'
}

# _topology_connect_passing SERVICE: how many Connect endpoints of SERVICE (its sidecars,
# or its Connect-native instances) the catalog lists as passing; fails, printing curl's
# error, when the agent does not answer (a refusal is not "none passing").
_topology_connect_passing() {
  local answer
  answer=$(_topology_consul_curl -sS --fail-with-body --max-time 5 \
    "http://$TOPO_CONSUL_ADDR/v1/health/connect/$1?passing" 2>&1) || {
    echo "${answer//$'\n'/ }"
    return 1
  }
  jq length <<<"$answer"
}

# _topology_sidecar_endpoints PORT UPSTREAM: the endpoints the coromesh-sidecar whose
# admin port is PORT has for UPSTREAM (0 when it cannot say).
_topology_sidecar_endpoints() {
  curl -fsS --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk -v up="upstream=\"$2\"" '/^coromesh_sidecar_upstream_endpoints/ && index($0, up) {n = $2}
      END {print n + 0}'
}

# _topology_not_ready: prints what is not ready yet (nothing when all is); fails (with
# the log) when a process has exited.
#
# Every registration passing in the local agent is not yet every endpoint in use: the
# catalog and the callers' blocking queries follow a moment later. Until they do, a first
# burst of calls meets only the instances seen so far, so readiness also waits for the
# catalog's Connect endpoints of each service and for what each coromesh-sidecar
# upstream has (the sidecars' checks pass at a random moment of their first interval:
# the last one can pass just before this runs; e2e.calculator_mesh_secure then found
# "mul-svc-2 answered no mul call").
_topology_not_ready() {
  local proc role service id port metrics upstreams passing up name instances seen
  local -A instances_of=()
  passing=$(_topology_passing_ids)
  while IFS=$'\t' read -r proc role service id port metrics upstreams; do
    if ! proc_alive "$TOPO_DIR" "$proc"; then
      tail -15 "$TOPO_DIR/$proc.log" >&2
      die "$proc exited during start-up (log: $TOPO_DIR/$proc.log)"
    fi
    [ "$role" != service ] || instances_of[$service]=$((${instances_of[$service]:-0} + 1))
    [ "$id" = - ] || grep -qxF "$id" <<<"$passing" || echo "$id not passing in Consul"
    if [ "$upstreams" != - ]; then
      for up in ${upstreams//,/ }; do
        port_busy "${up##*:}" || echo "$proc: upstream listener ${up} not open"
      done
    fi
  done < <(topology_rows)
  for name in "${!instances_of[@]}"; do
    instances=${instances_of[$name]}
    if ! seen=$(_topology_connect_passing "$name"); then
      echo "$name: the catalog query failed: $seen"
    elif [ "$seen" -lt "$instances" ]; then
      echo "$name: $seen of $instances Connect endpoints passing in the catalog"
    fi
  done
  if [ "${TOPO_PROXY:-coromesh}" != consul ]; then
    while IFS=$'\t' read -r proc role service id port metrics upstreams; do
      [ "$role" != service ] && [ "$upstreams" != - ] || continue
      for up in ${upstreams//,/ }; do
        instances=${instances_of[${up%%:*}]:-0}
        seen=$(_topology_sidecar_endpoints "$metrics" "${up%%:*}")
        [ "$seen" -ge "$instances" ] ||
          echo "$proc: $seen of $instances endpoints of ${up%%:*}"
      done
    done < <(topology_rows)
  fi
  local frontend
  frontend=$(topology_frontend_addr)
  [ -z "$frontend" ] || curl -fsS --max-time 2 -o /dev/null "http://$frontend/health" 2>/dev/null ||
    echo "frontend at $frontend not answering /health"
}

# _topology_report_health: what the agent says about the checks that do not pass and
# about every service's Connect endpoints in the catalog (passing or not), for the
# post-mortem of a start that did not get ready.
_topology_report_health() {
  local name
  echo "the agent's checks that are not passing:"
  _topology_consul_curl -sS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/checks" 2>&1 |
    jq -r '.[] | select(.Status != "passing") | "  \(.CheckID) \(.Status): \(.Output[0:300])"' 2>&1
  for name in "${topo_names[@]}"; do
    echo "the catalog's Connect endpoints of $name:"
    _topology_consul_curl -sS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/health/connect/$name" 2>&1 |
      jq -r '.[] | "  \(.Service.ID): " + ([.Checks[] | "\(.CheckID)=\(.Status)"] | join(" "))' 2>&1
  done
}

topology_wait_ready() {
  local deadline=$((SECONDS + $1)) missing
  while :; do
    missing=$(_topology_not_ready) || exit 1
    [ -n "$missing" ] || return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$missing" >&2
      _topology_report_health >&2
      die "the topology was not ready within $1 s (logs: $TOPO_DIR)"
    fi
    sleep 0.3
  done
}

# _topology_health_by_id: "ID STATUS" for every service on the agent, STATUS the
# worst of its checks.
_topology_health_by_id() {
  _topology_consul_curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/checks" 2>/dev/null |
    jq -r '[.[]] | group_by(.ServiceID) | .[]
           | "\(.[0].ServiceID) \(if all(.Status == "passing") then "passing"
                                 elif any(.Status == "critical") then "critical"
                                 else "warning" end)"'
}

topology_status() {
  local proc role service id port metrics upstreams health state pid
  health=$(_topology_health_by_id)
  printf '%-22s %-8s %-8s %-6s %-28s %-9s %s\n' PROCESS ROLE PID STATE CONSUL_ID CONSUL PORTS
  while IFS=$'\t' read -r proc role service id port metrics upstreams; do
    pid=$(proc_pid "$TOPO_DIR" "$proc")
    state=dead
    proc_alive "$TOPO_DIR" "$proc" && state=alive
    local h
    h=$(awk -v id="$id" '$1 == id {print $2}' <<<"$health")
    local ports="port $port"
    [ "$metrics" = - ] || [ "$metrics" = "$port" ] || ports+=" metrics $metrics"
    [ "$upstreams" = - ] || ports+=" upstreams $upstreams"
    [ "$id" != - ] || h=-
    printf '%-22s %-8s %-8s %-6s %-28s %-9s %s\n' "$proc" "$role" "${pid:--}" "$state" "$id" \
      "${h:-absent}" "$ports"
  done < <(topology_rows)
}

topology_stop() {
  [ -f "$TOPO_DIR/topology.tsv" ] || return 0
  local -a procs=() ids=()
  local proc role service id
  while IFS=$'\t' read -r proc role service id _; do
    procs+=("$proc")
    ids+=("$id")
  done < <(topology_rows)
  proc_stop "$TOPO_DIR" "${procs[@]}"
  # A process that was killed (or did not get to deregister) leaves its registration
  # behind until Consul reaps it; remove it now.
  if curl -fsS --max-time 2 -o /dev/null "http://$TOPO_CONSUL_ADDR/v1/status/leader" 2>/dev/null; then
    local registered
    registered=$(_topology_consul_curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/services" | jq -r 'keys[]')
    for id in "${ids[@]}"; do
      if grep -qxF "$id" <<<"$registered"; then
        echo "[${COROMESH_SCRIPT:-ops}] $id was still registered in Consul: deregistered"
        _topology_consul_curl -fsS --max-time 5 -X PUT -o /dev/null \
          "http://$TOPO_CONSUL_ADDR/v1/agent/service/deregister/$id" || true
      fi
    done
  fi
  rm -f "$TOPO_DIR/topology.tsv"
}
