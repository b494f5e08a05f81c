# The platform under a topology: a Consul dev agent and a Prometheus server, each a
# process of a run directory (ops/lib/processes.sh). Sourced by ops/demo.sh and the
# end-to-end test after ops/lib/common.sh (COROMESH_ROOT, die, consul and prometheus
# on PATH).
#
#   platform_start_consul DIR HTTP_PORT     HTTP API on 127.0.0.1:HTTP_PORT (0: a free
#                                           port), every other Consul port free;
#                                           returns once it has a leader and a Connect
#                                           CA root; sets $platform_consul_addr.
#                                           PLATFORM_CONSUL_MODE=dev (default): a -dev
#                                           agent, all in memory (a restart brings an
#                                           empty catalog and a new CA); server: a
#                                           one-node server with Connect and its data
#                                           in DIR/consul-data (a restart keeps both)
#                                           PLATFORM_ACL=1: ACLs on, default policy
#                                           deny (ops/lib/acl.sh), the bootstrap token
#                                           in DIR/acl/bootstrap.token (0600); returns
#                                           once the agent accepts it
#   platform_start_prometheus DIR PORT CONSUL_ADDR SCRAPE_INTERVAL
#                                           ops/prometheus/prometheus.yml.in rendered
#                                           into DIR; returns once ready; sets
#                                           $platform_prometheus_addr; a Prometheus
#                                           (re)started here has no history (DIR's
#                                           prometheus-data is removed). PLATFORM_ACL=1:
#                                           consul_sd_configs with its own read-only
#                                           token (DIR/acl/prometheus.token)
#   platform_stop DIR                       Prometheus, then Consul
#   platform_prometheus_targets ADDR        one line per active target: "SERVICE INSTANCE HEALTH"

_platform_lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=processes.sh
source "$_platform_lib/processes.sh"
# shellcheck source=acl.sh
source "$_platform_lib/acl.sh"

# _platform_wait SECONDS NAME DIR CHECK...: runs CHECK every 0.2 s until it succeeds;
# fails with the process's log when it exits or the time is up.
_platform_wait() {
  local seconds="$1" name="$2" dir="$3"
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ! proc_alive "$dir" "$name"; then
      tail -20 "$dir/$name.log" >&2
      die "$name exited during start-up (log: $dir/$name.log)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$name not ready within ${seconds}s (log: $dir/$name.log)"
    sleep 0.2
  done
}

# Ready means a leader and a Connect CA root: a dev agent elects itself first, and a
# sidecar asking for its leaf before the CA exists would wait for it.
_consul_ready() {
  curl -fsS --max-time 2 "http://$1/v1/status/leader" 2>/dev/null | grep -q '[0-9]' &&
    curl -fsS --max-time 2 "http://$1/v1/agent/connect/ca/roots" 2>/dev/null |
    jq -e '(.Roots // []) | length > 0' >/dev/null 2>&1
}

platform_start_consul() {
  local dir="$1" http_port="$2" dns lan wan server grpc grpc_tls
  read -r dns lan wan server grpc grpc_tls < <(free_ports 6 "$dir/ports-given")
  [ "$http_port" != 0 ] || read -r http_port < <(free_ports 1 "$dir/ports-given")
  platform_consul_addr="127.0.0.1:$http_port"
  if ! proc_alive "$dir" consul; then
    ! port_busy "$http_port" || die "port $http_port is taken by another process; stop it first"
    local -a mode=(-dev)
    case "${PLATFORM_CONSUL_MODE:-dev}" in
      dev) ;;
      server)
        mode=(-server -bootstrap-expect=1 -data-dir="$dir/consul-data"
          -hcl 'connect { enabled = true }')
        ;;
      *) die "PLATFORM_CONSUL_MODE=${PLATFORM_CONSUL_MODE}: expected dev or server" ;;
    esac
    if [ "${PLATFORM_ACL:-0}" = 1 ]; then
      acl_init "$dir"
      mode+=("$(acl_consul_args "$dir")")
    fi
    proc_start "$dir" consul consul agent "${mode[@]}" -node=coromesh -bind=127.0.0.1 \
      -client=127.0.0.1 -advertise=127.0.0.1 -http-port="$http_port" -dns-port="$dns" \
      -serf-lan-port="$lan" -serf-wan-port="$wan" -server-port="$server" \
      -grpc-port="$grpc" -grpc-tls-port="$grpc_tls" -log-level=warn
  fi
  _platform_wait 60 consul "$dir" _consul_ready "$platform_consul_addr"
  if [ "${PLATFORM_ACL:-0}" = 1 ]; then
    acl_wait_ready "$platform_consul_addr" "$dir" || die "consul: ACLs not ready (log: $dir/consul.log)"
  fi
}

_prometheus_ready() { curl -fsS --max-time 2 -o /dev/null "http://$1/-/ready" 2>/dev/null; }

platform_start_prometheus() {
  local dir="$1" port="$2" consul_addr="$3" interval="$4"
  [ "$port" != 0 ] || read -r port < <(free_ports 1 "$dir/ports-given")
  platform_prometheus_addr="127.0.0.1:$port"
  if ! proc_alive "$dir" prometheus; then
    ! port_busy "$port" || die "port $port is taken by another process; stop it first"
    sed -e "s/__CONSUL_ADDR__/$consul_addr/" -e "s/__SCRAPE_INTERVAL__/$interval/g" \
      -e "s#__RULES_DIR__#$COROMESH_ROOT/ops/prometheus/rules#g" \
      "$COROMESH_ROOT/ops/prometheus/prometheus.yml.in" >"$dir/prometheus.yml"
    if [ "${PLATFORM_ACL:-0}" = 1 ]; then
      local token_file
      token_file=$(acl_prometheus_token "$consul_addr" "$dir") || die "prometheus: no Consul token"
      acl_prometheus_config "$dir/prometheus.yml" "$dir/prometheus-acl.yml" "$token_file"
      mv -f "$dir/prometheus-acl.yml" "$dir/prometheus.yml"
    fi
    # A new Prometheus starts with no history, as the dev agent it discovers through
    # starts with an empty catalog. Prometheus writes no staleness markers when it stops,
    # so the last samples of a previous run (./ops/demo.sh down, then up) would answer
    # every instant query for the 5 minutes of its lookback: instances that no longer
    # exist as `up`, the `up == 0` that `down` scraped while stopping the services
    # firing CoromeshInstanceDown, twice the series in every sum.
    rm -rf "$dir/prometheus-data"
    proc_start "$dir" prometheus prometheus --config.file="$dir/prometheus.yml" \
      --storage.tsdb.path="$dir/prometheus-data" \
      --web.listen-address="$platform_prometheus_addr" --log.level=warn
  fi
  _platform_wait 60 prometheus "$dir" _prometheus_ready "$platform_prometheus_addr"
}

platform_stop() { proc_stop "$1" prometheus && proc_stop "$1" consul; }

platform_prometheus_targets() {
  curl -fsS --max-time 5 "http://$1/api/v1/targets?state=active" |
    jq -r '.data.activeTargets[] | "\(.labels.service) \(.labels.instance) \(.health)"'
}
