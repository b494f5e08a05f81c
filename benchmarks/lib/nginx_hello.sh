# shellcheck shell=bash
# nginx_hello_conf DIR PORT WORKERS: writes DIR/nginx.conf, nginx answering every GET on
# 127.0.0.1:PORT with 200 "hello" from WORKERS worker processes, in the foreground,
# no access log, its pid file in DIR. The baseline of suite http and the backend of
# the proxy pairs (benchmarks/load/sidecar_pairs.sh). Start it with
#   nginx -p DIR -c DIR/nginx.conf
nginx_hello_conf() {
  local dir="$1" port="$2" workers="$3"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes $workers;
worker_rlimit_nofile 20000;
error_log stderr warn;
pid $dir/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  # Keep-alive for the whole run: a reconnect would measure connection set-up.
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { return 200 "hello"; }
  }
}
CONF
}
