# shellcheck shell=bash
# What the benchmarks/run.sh suites share (sourced after setting `suite=<name>`):
# processes started by PID and stopped on exit, free ports, nginx as a hello server,
# and one measured wrk run with the server's CPU time and RSS beside it.
#
#   suite_start NAME CMD...        CMD in the background, log $work/NAME.log; sets $started
#   suite_stop PID...              TERM, up to 10 s, then KILL (only PIDs started here)
#   wait_http PORT PATH SECONDS PID  until GET PATH answers 2xx; fails early if PID exits
#   start_nginx_hello WORKERS PORT  nginx `return 200 "hello"`; sets $started
#   measure_wrk CASE SUBJECT ROUND URL CONNS SECONDS PID...
#                                  one wrk run (benchmarks/lib/latency.lua); samples
#                                  req_per_s, p50/p99/p999_ms, cpu_s_per_100k (the PIDs
#                                  and their children, utime+stime) and rss_mib (sampled
#                                  at 80% of the run); raw output in $BENCH_OUT/raw/
#
# Environment of every suite: see benchmarks/README.md.

: "${COROMESH_ROOT:?COROMESH_ROOT is not set: suites are run by benchmarks/run.sh}"
: "${BENCH_BIN:?BENCH_BIN is not set}"
BENCH_MODE="${BENCH_MODE:-short}"
BENCH_ROUNDS="${BENCH_ROUNDS:-1}"
bench_lib="$COROMESH_ROOT/benchmarks/lib"
# shellcheck source=samples.sh
source "$bench_lib/samples.sh"
# shellcheck source=../load/lib/proc_stats.sh
source "$COROMESH_ROOT/benchmarks/load/lib/proc_stats.sh"
# shellcheck source=../../ops/lib/processes.sh
source "$COROMESH_ROOT/ops/lib/processes.sh" # free_ports
# shellcheck source=nginx_hello.sh
source "$bench_lib/nginx_hello.sh"

suite="${suite:?set suite=<name> before sourcing suite.sh}"
die() { echo "[$suite] $*" >&2; exit 1; }
log() { echo "[$suite] $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-$suite.XXXXXX")
suite_pids=()
_suite_cleanup() {
  local status=$?
  [ ${#suite_pids[@]} -eq 0 ] || suite_stop "${suite_pids[@]}"
  rm -rf "$work"
  exit "$status"
}
trap _suite_cleanup EXIT
trap 'exit 130' INT TERM
# 1,000 connections per server, and as many on wrk's side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

suite_start() {
  local name="$1"
  shift
  (cd "$work" && exec "$@") >"$work/$name.log" 2>&1 </dev/null &
  started=$!
  suite_pids+=("$started")
}

suite_stop() {
  local pid deadline=$((SECONDS + 10)) alive
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  while [ "$SECONDS" -lt "$deadline" ]; do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 1 ] || break
    sleep 0.1
  done
  for pid in "$@"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  local kept=() p stopped
  for p in "${suite_pids[@]}"; do
    stopped=0
    for pid in "$@"; do [ "$p" != "$pid" ] || stopped=1; done
    [ "$stopped" -eq 1 ] || kept+=("$p")
  done
  suite_pids=("${kept[@]}")
}

wait_http() {
  local port="$1" path="$2" deadline=$((SECONDS + $3)) pid="$4"
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port$path" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_nginx_hello() {
  local workers="$1" port="$2" dir="$work/nginx-$2"
  nginx_hello_conf "$dir" "$port" "$workers"
  suite_start "nginx-$port" nginx -p "$dir" -c "$dir/nginx.conf"
}

measure_wrk() {
  local case="$1" subject="$2" round="$3" url="$4" conns="$5" seconds="$6"
  shift 6
  local raw="$BENCH_OUT/raw/wrk-${case//[,=]/_}-$subject-r$round.txt" threads=2 before after sampler
  [ "$conns" -ge 2 ] || threads=1
  before=$(cpu_ticks "$@")
  (sleep "$(awk -v d="$seconds" 'BEGIN {print d * 0.8}')"
    local kib=0 pid
    for pid in "$@"; do kib=$((kib + $(rss_kib "$pid"))); done
    echo "$kib" >"$work/rss-sample") &
  sampler=$!
  wrk -t "$threads" -c "$conns" -d "${seconds}s" --latency -s "$bench_lib/latency.lua" "$url" \
    >"$raw" 2>&1 || true
  wait "$sampler" 2>/dev/null || true
  after=$(cpu_ticks "$@")
  wrk_samples "$case" "$subject" "$round" "$raw" || return 1
  local requests
  requests=$(awk '/^latency_summary / {print $2}' "$raw")
  sample "$case" "$subject" "$round" cpu_s_per_100k "$(awk -v a="$after" -v b="$before" \
    -v t="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN {printf "%.3f", (a - b) / t / n * 100000}')" s
  sample "$case" "$subject" "$round" rss_mib \
    "$(awk -v k="$(cat "$work/rss-sample")" 'BEGIN {printf "%.1f", k / 1024}')" MiB
}
