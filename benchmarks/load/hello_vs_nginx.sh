#!/usr/bin/env bash
# Load benchmark: the hello service (one io thread, metrics on) against nginx (one
# worker, `return 200`) in the same run, on loopback, with the same wrk settings.
# Prints requests/s, p50/p99 latency and RSS for both, and the ratios.
#
#   benchmarks/load/hello_vs_nginx.sh [duration_seconds=10] [connections=32]
#
# Target (issue: framework core): hello >= 0.9x nginx requests/s; hello idles < 16 MiB.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
duration="${1:-10}"
connections="${2:-32}"
hello_bin="${HELLO_BIN:-$root/build/bin/hello-svc}"
for tool in wrk nginx "$hello_bin"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "$tool" ] || {
    echo "missing $tool: run ./ops/setup.sh and build (./ops/test.sh or cmake --build build)" >&2
    exit 1
  }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answered on 127.0.0.1:$1$2" >&2
  exit 1
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Sums the RSS of a process and its children (nginx: master + worker).
tree_rss_kib() {
  local total
  total=$(rss_kib "$1")
  for child in $(pgrep -P "$1" || true); do total=$((total + $(rss_kib "$child"))); done
  echo "$total"
}

nginx_port=$(free_port)
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
error_log stderr warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200 "hello"; }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx.log" &
pids+=($!)
nginx_pid=$!

hello_port=$(free_port)
"$hello_bin" --port "$hello_port" --threads 1 --consul-register=false --log-level warn \
  2>"$work/hello.log" &
pids+=($!)
hello_pid=$!

wait_up "$nginx_port" /
wait_up "$hello_port" /hello
sleep 0.5
hello_idle_rss=$(rss_kib "$hello_pid")

# run_wrk NAME PORT PATH -> prints "rps p50_ms p99_ms"
run_wrk() {
  local out
  out=$(wrk -t 1 -c "$connections" -d "${duration}s" --latency "http://127.0.0.1:$2$3")
  echo "$out" >"$work/wrk-$1.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() {
  local v="$1"
  case "$v" in
    *us) echo "scale=3; ${v%us}/1000" | bc ;;
    *ms) echo "${v%ms}" ;;
    *s) echo "scale=3; ${v%s}*1000" | bc ;;
    *) echo "$v" ;;
  esac
}

# Warm-up, then the measured runs, alternating so both see the same machine state.
wrk -t 1 -c "$connections" -d 2s "http://127.0.0.1:$nginx_port/" >/dev/null
wrk -t 1 -c "$connections" -d 2s "http://127.0.0.1:$hello_port/hello" >/dev/null
read -r nginx_rps nginx_p50 nginx_p99 < <(run_wrk nginx "$nginx_port" /)
read -r hello_rps hello_p50 hello_p99 < <(run_wrk hello "$hello_port" /hello)
nginx_rss=$(tree_rss_kib "$nginx_pid")
hello_rss=$(rss_kib "$hello_pid")

printf '\n%-24s %12s %10s %10s %12s\n' "server" "requests/s" "p50 ms" "p99 ms" "RSS KiB"
printf '%-24s %12s %10s %10s %12s\n' "nginx (1 worker)" "$nginx_rps" "$nginx_p50" "$nginx_p99" "$nginx_rss"
printf '%-24s %12s %10s %10s %12s\n' "hello-svc (1 thread)" "$hello_rps" "$hello_p50" "$hello_p99" "$hello_rss"
ratio=$(echo "scale=3; $hello_rps / $nginx_rps" | bc)
printf '\nthroughput ratio hello/nginx: %s (target >= 0.9)\n' "$ratio"
printf 'p99 ratio hello/nginx:        %s\n' "$(echo "scale=3; $hello_p99 / $nginx_p99" | bc)"
printf 'hello idle RSS: %s KiB (target < 16384), after load: %s KiB\n' "$hello_idle_rss" "$hello_rss"
printf 'wrk: -t1 -c%s -d%ss, loopback, %s cores\n' "$connections" "$duration" "$(nproc)"
