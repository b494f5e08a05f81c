#!/usr/bin/env bash
# Load benchmark for issue 9 (coromesh-sidecar): wrk through pairs of proxies in front
# of one backend, in the same run, rounds alternating path by path so every path sees
# the same machine state:
#   direct         wrk -> backend
#   consul         wrk -> `consul connect proxy` (upstream) -> mTLS -> `consul connect
#                  proxy` (inbound, -register) -> backend          (ops/.tools/bin/consul)
#   nginx          wrk -> nginx stream listener (TLS origination, client certificate)
#                  -> nginx stream listener (TLS termination, verifies the client) ->
#                  backend; both listeners in one single-worker nginx, certificates
#                  from a throwaway CA made here with openssl
#   coromesh-tcp   the same with build/bin/coromesh-sidecar, tcp upstream listener
#   coromesh-http  the same, http upstream listener (when the sidecar has that mode)
# The backend is nginx (one worker, `return 200`, keep-alive); wrk -t2 keep-alive HTTP.
# Per path and concurrency it prints requests/s, p50/p99, the proxies' CPU seconds
# (utime+stime from /proc/<pid>/stat over the round) and RSS (idle, and during the
# load), then each path's ratios to Consul's pair and to nginx's pair (median over
# rounds, min..max), then the RSS of each proxy while it holds --hold keep-alive
# connections open through the pair. The goals of issue 9 are printed beside them.
#
#   benchmarks/load/sidecar_pairs.sh [--rounds N=3] [--duration S=10]
#       [--connections "50 5"] [--hold N=1000] [--out FILE] [--short] [--profile PATH]
#       [--export DIR]
#
#   --short   1 round, 2 s, 5 connections, 200 held connections: proves the harness
#             works in well under a minute (ctest label benchmark-smoke); writes no
#             results file unless --out is given.
#   --profile PATH   perf record (flat, by symbol) of PATH's proxies during its first
#             round at the first concurrency; the report is written beside --out as
#             sidecar_pairs.perf-PATH.txt (or printed). PATH: consul, nginx, coromesh-tcp...
#   --export DIR  keeps the raw figures in DIR for benchmarks/suites/sidecar.sh: every
#             wrk output, rounds.tsv, newconn.tsv, idle.tsv, held.tsv (the columns are
#             those of lib/summarize_pairs.py; lib/pairs_to_samples.py reads them).
# Each round also measures new connections per second through each path (wrk with
# "Connection: close" for a third of --duration: every request a new client connection,
# so a new mutual-TLS connection between the proxies of a tcp pair).
# Without --short the summary goes to benchmarks/results/<date>/sidecar_pairs.txt too.
# Environment: CONSUL_BIN, SIDECAR_BIN (default build/bin/coromesh-sidecar),
# SIDECAR_ARGS (extra flags for both sidecars, e.g. "--threads 1"), WRK_THREADS (2).
#
# Everything listens on 127.0.0.1 ports picked free at start (never 8500); every
# process started here is stopped by PID on exit and the temporary directory removed.
# Exit status: 0 when every available path answered and was measured; 1 when a path
# that should run did not come up, served no request or failed more than 1% of them.
# A missing sidecar binary is not a failure: its rows say NOT MEASURED, loudly.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"

rounds=3
duration=10
connections="50 5"
hold=1000
out=""
short=0
profile=""
export_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --hold) hold="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --short) short=1; shift ;;
    --profile) profile="$2"; shift 2 ;;
    --export) export_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$short" -eq 1 ]; then
  rounds=1 duration=2 connections="5" hold=200
fi
if [ -z "$out" ] && [ "$short" -eq 0 ]; then
  out="$root/benchmarks/results/$(date -u +%Y-%m-%d)/sidecar_pairs.txt"
fi
wrk_threads="${WRK_THREADS:-2}"
consul_bin="${CONSUL_BIN:-$root/ops/.tools/bin/consul}"
sidecar_bin="${SIDECAR_BIN:-$root/build/bin/coromesh-sidecar}"
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so

for tool in wrk nginx openssl curl python3 "$consul_bin"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "$tool" ] || {
    echo "missing $tool: run ./ops/setup.sh" >&2
    exit 1
  }
done
[ -f "$stream_module" ] || {
  echo "missing $stream_module (Debian package libnginx-mod-stream): run ./ops/setup.sh" >&2
  exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/sidecar-pairs.XXXXXX")
pids=()
# Stops what this script started, newest first, by PID: TERM, up to 5 s, then KILL.
cleanup() {
  local status=$?
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Enough descriptors for --hold connections through a pair (client + upstream side).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

die() { echo "sidecar_pairs: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

source "$here/lib/proc_stats.sh"
source "$here/lib/start_paths.sh"

# Other work on the machine skews every path; the summary says how busy it was.
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- processes
paths=()
declare -A port proxies unavailable
start_consul_agent
start_backend
start_consul_pair
start_nginx_pair "$stream_module"
if [ -x "$sidecar_bin" ]; then
  "$sidecar_bin" --help >"$work/sidecar-help.txt" 2>&1 || true
  start_sidecar_pair "$sidecar_bin" tcp
  if sidecar_has ':http' || sidecar_has 'tcp|http'; then
    start_sidecar_pair "$sidecar_bin" http
  else
    unavailable[coromesh-http]="NOT MEASURED ($sidecar_bin --help shows no http upstream mode)"
  fi
else
  unavailable[coromesh-tcp]="NOT MEASURED (binary missing: $sidecar_bin)"
  unavailable[coromesh-http]="NOT MEASURED (binary missing: $sidecar_bin)"
fi
for name in coromesh-tcp coromesh-http; do
  [ -z "${unavailable[$name]:-}" ] || echo "coromesh pair ($name): ${unavailable[$name]}" >&2
done

# ---------------------------------------------------------------- everything answers
for path in "${paths[@]}"; do
  wait_http "${port[$path]}" 30 ${proxies[$path]} || {
    for f in "$work"/*.log; do echo "--- $(basename "$f")"; tail -5 "$f"; done >&2
    die "path $path: nothing answered 200 on 127.0.0.1:${port[$path]} (a proxy exited, or 30 s passed)"
  }
done
sleep 1
declare -A idle_rss
for path in "${paths[@]}"; do idle_rss[$path]=$(rss_list ${proxies[$path]}); done

# ---------------------------------------------------------------- rounds
clk_tck=$(getconf CLK_TCK)
results="$work/rounds.tsv"
printf 'round\tconnections\tpath\trps\tp50_ms\tp99_ms\tcpu_s\trss_load_kib\trequests\terrors\n' >"$results"

# measure ROUND CONNECTIONS PATH: one wrk run; appends a row to $results.
measure() {
  local round="$1" conns="$2" path="$3" raw="$work/wrk-$1-$2-$3.txt"
  local before after sampler perf_pid=""
  if [ "$path" = "$profile" ] && [ "$round" = 1 ] && [ "$conns" = "${concurrency[0]}" ]; then
    start_profile "$path"
    perf_pid=$started
  fi
  before=$(cpu_ticks ${proxies[$path]})
  # RSS under load: sampled once, 80% of the way through the run.
  (sleep "$(awk -v d="$duration" 'BEGIN {print d * 0.8}')"
    rss_list ${proxies[$path]} >"$work/rss-load") &
  sampler=$!
  wrk -t "$wrk_threads" -c "$conns" -d "${duration}s" --latency -s "$latency_lua" \
    "http://127.0.0.1:${port[$path]}/" >"$raw" 2>&1 || true
  wait "$sampler" 2>/dev/null || true
  after=$(cpu_ticks ${proxies[$path]})
  [ -z "$perf_pid" ] || wait "$perf_pid" 2>/dev/null || true
  python3 "$here/lib/parse_wrk.py" "$raw" "$round" "$conns" "$path" \
    "$(awk -v a="$after" -v b="$before" -v t="$clk_tck" 'BEGIN {printf "%.2f", (a - b) / t}')" \
    "$(cat "$work/rss-load")" >>"$results"
}

# start_profile PATH: perf record of the path's proxies (every thread, children too)
# for the length of one run, in the background; sets $started.
start_profile() {
  local pid list=""
  command -v perf >/dev/null || die "--profile needs perf (Debian package linux-perf)"
  for pid in ${proxies[$1]}; do
    for p in $(proc_tree "$pid"); do list="$list${list:+,}$p"; done
  done
  log "perf record of $1 (pids $list)"
  start "perf-$1" perf record -F 499 -p "$list" -o "$work/perf-$1.data" -- sleep "$duration"
}

# measure_new_connections ROUND CONNECTIONS PATH: wrk with "Connection: close" (each
# request on a new connection); appends round, connections, path, requests/s, errors.
measure_new_connections() {
  local raw="$work/wrk-new-$1-$2-$3.txt"
  wrk -t "$wrk_threads" -c "$2" -d "${newconn_duration}s" -H "Connection: close" \
    -s "$latency_lua" "http://127.0.0.1:${port[$3]}/" >"$raw" 2>&1 || true
  awk -v r="$1" -v c="$2" -v p="$3" '/^latency_summary / {
      printf "%s\t%s\t%s\t%.1f\t%d\t%d\n", r, c, p, $2 / $4, $2, $3; found = 1 }
    END { if (!found) printf "%s\t%s\t%s\t0\t0\t0\n", r, c, p }' "$raw" >>"$newconn"
}
latency_lua="$here/../lib/latency.lua"
newconn="$work/newconn.tsv"
printf 'round\tconnections\tpath\tconn_per_s\trequests\terrors\n' >"$newconn"
newconn_duration=$(( (duration + 2) / 3 ))

read -ra concurrency <<<"$connections"
[ -z "$profile" ] || [ -n "${port[$profile]:-}" ] || [ "$profile" = direct ] ||
  die "--profile $profile: no such path (${paths[*]})"
log "warm-up: 1 s per path"
for path in "${paths[@]}"; do
  wrk -t "$wrk_threads" -c "${concurrency[0]}" -d 1s "http://127.0.0.1:${port[$path]}/" >/dev/null 2>&1 || true
done
for ((round = 1; round <= rounds; round++)); do
  for conns in "${concurrency[@]}"; do
    for path in "${paths[@]}"; do
      log "round $round/$rounds, $conns connections: $path"
      measure "$round" "$conns" "$path"
    done
  done
  for path in "${paths[@]}"; do
    log "round $round/$rounds, new connections at ${concurrency[-1]}: $path"
    measure_new_connections "$round" "${concurrency[-1]}" "$path"
  done
done

# ---------------------------------------------------------------- held connections
held="$work/held.tsv"
printf 'path\theld\trss_kib\n' >"$held"
for path in "${paths[@]}"; do
  [ "$path" = direct ] && continue
  log "holding $hold keep-alive connections through $path"
  rm -f "$work/hold-ready"
  python3 "$here/lib/hold_connections.py" "${port[$path]}" "$hold" "$work/hold-ready" \
    >"$work/hold-$path.log" 2>&1 &
  holder=$!
  pids+=("$holder")
  deadline=$((SECONDS + 90))
  while [ ! -s "$work/hold-ready" ] && kill -0 "$holder" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
  done
  sleep 0.5
  count=$(cat "$work/hold-ready" 2>/dev/null || echo 0)
  printf '%s\t%s\t%s\n' "$path" "${count:-0}" "$(rss_list ${proxies[$path]})" >>"$held"
  kill -TERM "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
done

# ---------------------------------------------------------------- summary
idle_file="$work/idle.tsv"
for path in "${paths[@]}"; do printf '%s\t%s\n' "$path" "${idle_rss[$path]}"; done >"$idle_file"
unavail_file="$work/unavailable.tsv"
for name in "${!unavailable[@]}"; do printf '%s\t%s\n' "$name" "${unavailable[$name]}"; done >"$unavail_file"
summary="$work/summary.txt"
{
  echo "sidecar_pairs $(date -u +%Y-%m-%dT%H:%M:%SZ): $(nproc) cores, load average" \
    "$load_at_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
  echo "wrk -t$wrk_threads keep-alive HTTP, ${duration} s per round, $rounds round(s), connections: $connections"
  echo "backend: nginx 1 worker 'return 200'; consul $("$consul_bin" version | head -1);" \
    "nginx stream pair: 1 worker, mutual TLS (EC P-256 throwaway CA)"
  # Which sidecar: the binary may come from another tree than this script's.
  [ ! -x "$sidecar_bin" ] || echo "coromesh-sidecar: $sidecar_bin, built" \
    "$(date -u -r "$sidecar_bin" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$sidecar_bin" | cut -c1-12)" \
    "${SIDECAR_ARGS:+, extra flags: $SIDECAR_ARGS}"
  python3 "$here/lib/summarize_pairs.py" "$results" "$idle_file" "$held" "$unavail_file" "$hold"
} >"$summary"
status=$?
cat "$summary"
if [ -n "$profile" ] && [ -s "$work/perf-$profile.data" ]; then
  perf_report="$work/perf-$profile.txt"
  {
    echo "perf record -F 499 of the $profile pair's proxies, round 1, ${concurrency[0]} connections"
    for sort in dso dso,sym; do
      perf report -i "$work/perf-$profile.data" --stdio --no-children --sort "$sort" \
        --percent-limit 0.5 2>/dev/null | grep -v -e '^$' -e '^# *$' -e '^# To display' -e '^# (Tip' |
        sed 's/ *$//' | cut -c1-160
    done
  } >"$perf_report"
  if [ -n "$out" ]; then
    mkdir -p "$(dirname "$out")"
    cp "$perf_report" "$(dirname "$out")/sidecar_pairs.perf-$profile.txt"
  else
    head -60 "$perf_report"
  fi
fi
if [ -n "$out" ]; then
  mkdir -p "$(dirname "$out")"
  cp "$summary" "$out"
  echo "written: $out"
fi
if [ -n "$export_dir" ]; then
  mkdir -p "$export_dir"
  cp "$results" "$newconn" "$idle_file" "$held" "$summary" "$export_dir/"
  for raw in "$work"/wrk-*.txt; do [ ! -f "$raw" ] || cp "$raw" "$export_dir/"; done
fi
# A path that should have run but served nothing, or failed more than 1% of its
# requests (socket errors, non-2xx), fails the run: that is the smoke test's point.
awk -F'\t' '
  NR > 1 && ($9 == 0 || $4 == 0) { bad = 1; print "path " $3 " served no request in round " $1 " at " $2 " connections" > "/dev/stderr" }
  NR > 1 && $9 > 0 && $10 * 100 > $9 { bad = 1; print "path " $3 ": " $10 " errors in " $9 " requests, round " $1 " at " $2 " connections" > "/dev/stderr" }
  END { exit bad }' "$results"
awk -F'\t' 'NR > 1 && ($5 == 0 || $6 * 100 > $5) { bad = 1
    print "path " $3 ": new connections failed: " $6 " errors in " $5 " requests, round " $1 > "/dev/stderr" }
  END { exit bad }' "$newconn"
exit "$status"
