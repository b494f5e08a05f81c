# The processes of benchmarks/load/sidecar_pairs.sh (sourced): a Consul dev agent, the
# backend, and one function per proxy pair. Each pair function adds its path to the
# caller's `paths` array, its wrk port to `port[PATH]` and its proxies' PIDs (outbound
# first) to `proxies[PATH]`; every process goes through `start`, so it is in `pids`,
# which the caller's exit trap stops. Uses the caller's $work, $consul_bin, die, log.

# free_ports N [GIVEN_FILE] (ops/lib/processes.sh, shared with the demo): N distinct
# free loopback ports below the ephemeral range; every call here passes
# $work/ports-given, so no port is handed out twice in a run.
source "$here/../../ops/lib/processes.sh"
# shellcheck source=../../lib/nginx_hello.sh
source "$here/../lib/nginx_hello.sh" # nginx_hello_conf

# start NAME CMD...: runs CMD in the background, logs in $work/NAME.log; sets $started.
# Its working directory is $work: Consul's dev agent reads relative paths (services/)
# from its working directory, which must not be the source tree.
start() {
  local name="$1"
  shift
  (cd "$work" && exec "$@") >"$work/$name.log" 2>&1 &
  started=$!
  pids+=("$started")
}

# wait_http PORT SECONDS PID...: until GET / on the port answers 200; gives up early
# when one of the PIDs (the path's proxies) has exited.
wait_http() {
  local port="$1" deadline=$((SECONDS + $2)) pid
  shift 2
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null && return 0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null || return 1; done
    sleep 0.2
  done
  return 1
}

# start_consul_agent: a dev agent on free ports; sets $consul_addr once it has a leader.
start_consul_agent() {
  local c_http c_dns c_lan c_wan c_server c_grpc c_grpc_tls deadline
  read -r c_http c_dns c_lan c_wan c_server c_grpc c_grpc_tls < <(free_ports 7 "$work/ports-given")
  [ "$c_http" != 8500 ] || die "free_ports returned 8500"
  consul_addr="127.0.0.1:$c_http"
  log "consul agent -dev on $consul_addr"
  start consul "$consul_bin" agent -dev -node=sidecar-bench -bind=127.0.0.1 \
    -client=127.0.0.1 -advertise=127.0.0.1 -http-port="$c_http" -dns-port="$c_dns" \
    -serf-lan-port="$c_lan" -serf-wan-port="$c_wan" -server-port="$c_server" \
    -grpc-port="$c_grpc" -grpc-tls-port="$c_grpc_tls" -log-level=warn
  local agent=$started
  deadline=$((SECONDS + 30))
  until curl -fsS --max-time 2 "http://$consul_addr/v1/status/leader" 2>/dev/null | grep -q 127; do
    kill -0 "$agent" 2>/dev/null || die "consul exited: $(tail -5 "$work/consul.log")"
    [ "$SECONDS" -lt "$deadline" ] || die "consul: no leader within 30 s"
    sleep 0.2
  done
}

# start_backend: nginx, one worker, `return 200`; sets $backend_port; path "direct".
start_backend() {
  read -r backend_port < <(free_ports 1 "$work/ports-given")
  nginx_hello_conf "$work/backend" "$backend_port" 1
  log "backend nginx on 127.0.0.1:$backend_port"
  start backend nginx -p "$work/backend" -c "$work/backend/nginx.conf"
  paths+=(direct)
  port[direct]=$backend_port
  proxies[direct]=""
}

# start_consul_pair: `consul connect proxy` inbound (-register) and outbound (-upstream).
start_consul_pair() {
  local public upstream inbound
  read -r public upstream < <(free_ports 2 "$work/ports-given")
  log "consul connect proxy pair: upstream 127.0.0.1:$upstream -> public 127.0.0.1:$public"
  # Distinct service names per pair so no client balances across another pair's proxies.
  start consul-inbound "$consul_bin" connect proxy -http-addr "$consul_addr" -log-level warn \
    -service bench-consul -service-addr "127.0.0.1:$backend_port" \
    -listen "127.0.0.1:$public" -register
  inbound=$started
  start consul-outbound "$consul_bin" connect proxy -http-addr "$consul_addr" -log-level warn \
    -service client-consul -upstream "bench-consul:$upstream"
  paths+=(consul)
  port[consul]=$upstream
  proxies[consul]="$started $inbound"
}

# start_nginx_pair STREAM_MODULE: both TLS listeners in one single-worker nginx.
start_nginx_pair() {
  local module="$1" public upstream
  "$here/lib/make_test_pki.sh" "$work/pki" >"$work/pki.log" 2>&1 ||
    die "openssl failed: $(tail -5 "$work/pki.log")"
  read -r public upstream < <(free_ports 2 "$work/ports-given")
  mkdir -p "$work/tls-pair"
  cat >"$work/tls-pair/nginx.conf" <<CONF
load_module $module;
daemon off;
worker_processes 1;
error_log stderr warn;
pid $work/tls-pair/nginx.pid;
events { worker_connections 8192; }
stream {
  # Terminates mutual TLS in front of the backend (the inbound sidecar's role).
  server {
    listen 127.0.0.1:$public ssl backlog=4096;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $work/pki/server.crt;
    ssl_certificate_key $work/pki/server.key;
    ssl_client_certificate $work/pki/ca.crt;
    ssl_verify_client on;
    proxy_pass 127.0.0.1:$backend_port;
  }
  # Originates mutual TLS for plain local clients (the upstream listener's role).
  server {
    listen 127.0.0.1:$upstream backlog=4096;
    proxy_pass 127.0.0.1:$public;
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.2 TLSv1.3;
    proxy_ssl_certificate $work/pki/client.crt;
    proxy_ssl_certificate_key $work/pki/client.key;
    proxy_ssl_trusted_certificate $work/pki/ca.crt;
    proxy_ssl_verify on;
    proxy_ssl_name backend.bench;
    proxy_ssl_session_reuse on;
  }
}
CONF
  log "nginx stream TLS pair: upstream 127.0.0.1:$upstream -> public 127.0.0.1:$public"
  start tls-pair nginx -p "$work/tls-pair" -c "$work/tls-pair/nginx.conf"
  paths+=(nginx)
  port[nginx]=$upstream
  proxies[nginx]="$started" # the master; its worker is counted as its child
}

# The sidecar's standalone flags: --service NAME --service-addr HOST:PORT --listen
# HOST:PORT --register, --upstream NAME:PORT[:tcp|http], --consul HOST:PORT; its own
# HTTP port (--port) is the admin port, so each sidecar gets a free one.
# $work/sidecar-help.txt holds its --help, which says which flags it has.
sidecar_has() { grep -q -e "$1" "$work/sidecar-help.txt"; }

# start_sidecar_pair BINARY MODE: path coromesh-MODE (tcp|http upstream listener).
# SIDECAR_ARGS: extra flags for both sidecars, e.g. "--threads 1".
start_sidecar_pair() {
  local bin="$1" mode="$2" name="coromesh-$2" public upstream admin_in admin_out
  local client_public spec inbound extra common=(--consul "$consul_addr")
  read -r public upstream admin_in admin_out client_public < <(free_ports 5 "$work/ports-given")
  spec="bench-$name:$upstream"
  [ "$mode" = http ] && spec="$spec:http"
  sidecar_has '--bind' && common+=(--bind 127.0.0.1)
  sidecar_has '--log-level' && common+=(--log-level warn)
  read -ra extra <<<"${SIDECAR_ARGS:-}"
  log "coromesh-sidecar pair ($mode): upstream 127.0.0.1:$upstream -> public 127.0.0.1:$public"
  start "$name-inbound" "$bin" "${common[@]}" --port "$admin_in" "${extra[@]}" \
    --service "bench-$name" --service-addr "127.0.0.1:$backend_port" \
    --listen "127.0.0.1:$public" --register
  inbound=$started
  # The client's sidecar as the seed's jobs run every sidecar: its own (idle, here
  # unregistered) public listener besides the upstream one; the sidecar asks for both.
  start "$name-outbound" "$bin" "${common[@]}" --port "$admin_out" "${extra[@]}" \
    --service "client-$name" --service-addr "127.0.0.1:$backend_port" \
    --listen "127.0.0.1:$client_public" --upstream "$spec"
  paths+=("$name")
  port[$name]=$upstream
  proxies[$name]="$started $inbound"
}
