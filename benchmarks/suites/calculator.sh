#!/usr/bin/env bash
# Suite `calculator` of benchmarks/run.sh: the calculator end to end in three
# topologies, each started here with its own Consul dev agent on free loopback ports
# (ops/lib/bench.sh's _bench_start, the topology of ./ops/demo.sh bench), never on the
# demo's fixed ports:
#
#   coromesh-sidecar  every service behind coromesh-sidecar (http upstreams, as the
#                     demo runs them: per-call balancing, retries, per-route metrics)
#   coromesh-sidecar-tcp  the same with tcp upstreams: byte streams, like Consul's
#   coromesh-native   the C++ services Connect-native, mod-svc behind its sidecar, the
#                     frontend reached through an upstream-only sidecar
#   consul-proxy      `consul connect proxy` as every sidecar, as the seed ran it
#                     (baseline)
#
# The seed's scenario, wrk -t5 -c5 POSTing an expression, with expressions of 1, 4, 16
# and 64 operator calls (case ops=N; ops=16 is the seed's own expression), each
# operation a call through the mesh, one after the other. Every round measures each
# case on each topology in turn (A B C A B C ...). Figures: req_per_s, p50/p99/p99.9
# (wrk_samples), cpu_s_per_100k (CPU time of every service and sidecar of the mesh per
# 100k requests). A run with a failed request or a wrong answer fails the suite.
# bench-targets: add-svc sub-svc mul-svc div-svc mod-svc frontend coromesh-sidecar
# bench-minutes-per-round: 3.3
set -euo pipefail
COROMESH_SCRIPT=bench-calculator
# shellcheck source=ops/lib/common.sh
source "$COROMESH_ROOT/ops/lib/common.sh"
# shellcheck source=ops/lib/platform.sh
source "$COROMESH_ROOT/ops/lib/platform.sh"
# shellcheck source=ops/lib/topology.sh
source "$COROMESH_ROOT/ops/lib/topology.sh"
# Absolute: the mesh's processes run in their own run directories.
BENCH_BIN=$(cd "$BENCH_BIN" && pwd) || die "BENCH_BIN: no such directory"
# The run directory of the topologies (one bench-<subject>/ each), in the build tree.
state="$(dirname "$BENCH_BIN")/bench-calculator"
# shellcheck source=ops/lib/bench.sh
source "$COROMESH_ROOT/ops/lib/bench.sh"
# shellcheck source=benchmarks/lib/samples.sh
source "$COROMESH_ROOT/benchmarks/lib/samples.sh"

raw="$BENCH_OUT/raw"
export TOPO_BIN="$BENCH_BIN"
subjects=(coromesh-sidecar coromesh-sidecar-tcp coromesh-native consul-proxy)
declare -A proxy_of=([coromesh-sidecar]=coromesh [coromesh-sidecar-tcp]=coromesh
  [coromesh-native]=native [consul-proxy]=consul)
# coromesh-sidecar's upstreams in http mode, as the demo runs them, and in tcp mode, the
# like-for-like peer of `consul connect proxy`, which has tcp only.
declare -A upstream_mode_of=([coromesh-sidecar]=http [coromesh-sidecar-tcp]=tcp
  [coromesh-native]=http [consul-proxy]=tcp)
declare -A frontends=() dirs=()

if [ "$BENCH_MODE" = short ]; then
  operations=(16)
  duration=2
else
  operations=(1 4 16 64)
  duration=10
fi

# expression_for N: "EXPRESSION<TAB>RESULT", a left-to-right chain of N additions and
# subtractions like the seed's (each call waits for the one before); N=16 is the seed's.
expression_for() {
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
if n == 16:
    text = "1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5"
else:
    text = "1" + "".join(("+" if i % 2 == 0 else "-") + str(i * 5 % 9 + 1) for i in range(n))
print(f"{text}\t{eval(text)}")
PY
}

# wrk_script N: a wrk script for ops=N: calculator.lua (checks every answer) with
# latency.lua's summary line; prints its path.
wrk_script() {
  local script="$raw/calculator-ops$1.lua" expression result
  IFS=$'\t' read -r expression result < <(expression_for "$1")
  cat >"$script" <<LUA
-- ops=$1 for benchmarks/suites/calculator.sh
expression = "$expression"
expected = "$result"
dofile("$COROMESH_ROOT/benchmarks/load/calculator.lua")
local check_answers = done
dofile("$COROMESH_ROOT/benchmarks/lib/latency.lua")
local print_latency = done
function done(summary, latency, requests)
  check_answers(summary, latency, requests)
  print_latency(summary, latency, requests)
end
LUA
  echo "$script"
}

# keep_logs_and_stop: on failure, each topology's logs into raw/ first; then stop all.
keep_logs_and_stop() {
  local status=$? subject
  if [ "$status" -ne 0 ]; then
    for subject in "${subjects[@]}"; do
      [ ! -d "$state/bench-$subject" ] || cp -r "$state/bench-$subject" "$raw/logs-$subject" 2>/dev/null || true
    done
    echo "[bench-calculator] failed; the topologies' logs are in $raw/logs-*" >&2
  fi
  _bench_cleanup
  exit "$status"
}

# mesh_cpu SUBJECT: "PROCESS<TAB>CPU ticks" for every service and sidecar of its mesh.
mesh_cpu() {
  local proc
  while IFS=$'\t' read -r proc _; do
    printf '%s\t%s\n' "$proc" "$(cpu_ticks "$(proc_pid "${dirs[$1]}" "$proc")")"
  done < <(TOPO_DIR="${dirs[$1]}" topology_rows)
}

# measure SUBJECT N ROUND SCRIPT: one wrk run; its figures, and the CPU seconds of each
# process of the mesh during it in raw/cpu-*.tsv (where the time per request goes).
measure() {
  local subject="$1" n="$2" round="$3" script="$4" out before after wrong
  out="$raw/wrk-ops$n-$subject-round$round.txt"
  before=$(mesh_cpu "$subject")
  wrk -t5 -c5 -d"${duration}s" --latency -s "$script" "http://${frontends[$subject]}/api/v1/compute" \
    >"$out" 2>&1 || die "wrk failed against $subject (output: $out)"
  after=$(mesh_cpu "$subject")
  wrong=$(sed -n 's/^wrong answers: //p' "$out")
  [ "$wrong" = 0 ] || die "$subject answered ops=$n wrongly: ${wrong:-no count} wrong answers ($out)"
  mesh_alive "$subject"
  wrk_samples "ops=$n" "$subject" "$round" "$out" || die "$subject failed requests at ops=$n ($out)"
  local cpu="$raw/cpu-ops$n-$subject-round$round.tsv" requests
  awk -F'\t' -v t="$(getconf CLK_TCK)" 'NR == FNR {before[$1] = $2; next}
    {printf "%s\t%.2f\n", $1, ($2 - before[$1]) / t}' <(echo "$before") <(echo "$after") >"$cpu"
  requests=$(awk '$1 == "latency_summary" {print $2}' "$out")
  sample "ops=$n" "$subject" "$round" cpu_s_per_100k \
    "$(awk -F'\t' -v n="$requests" '{s += $2} END {printf "%.3f", s / n * 100000}' "$cpu")" s
}

# mesh_alive SUBJECT: every process of its mesh still runs (a crash under load
# fails the suite rather than measuring a half mesh).
mesh_alive() {
  TOPO_DIR="${dirs[$1]}" topology_running || die "a process of the $1 topology exited (logs: ${dirs[$1]})"
}

command -v wrk >/dev/null || die "wrk not found: run ./ops/setup.sh"
command -v consul >/dev/null || die "consul not found in ops/.tools/bin: run ./ops/setup.sh"
for bin in add-svc sub-svc mul-svc div-svc mod-svc frontend coromesh-sidecar; do
  [ -x "$BENCH_BIN/$bin" ] || die "$BENCH_BIN/$bin is not built"
done
sample_header
rm -f "$BENCH_OUT/goals.tsv" # bench_goal appends
mkdir -p "$state"
trap keep_logs_and_stop EXIT
trap 'exit 130' INT TERM
_bench_cleanup # what a killed run left
for subject in "${subjects[@]}"; do
  _bench_start "$subject" "${proxy_of[$subject]}" "${upstream_mode_of[$subject]}"
done

declare -A scripts=()
for n in "${operations[@]}"; do scripts[$n]=$(wrk_script "$n"); done
if [ "$BENCH_MODE" != short ]; then
  echo "[bench-calculator] warm-up: 3 s each" >&2
  for subject in "${subjects[@]}"; do
    wrk -t5 -c5 -d3s -s "${scripts[16]}" "http://${frontends[$subject]}/api/v1/compute" >/dev/null 2>&1 || true
  done
fi
echo "[bench-calculator] $BENCH_ROUNDS round(s) x ops ${operations[*]} x ${#subjects[@]} topologies, ${duration}s each" >&2
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
  for n in "${operations[@]}"; do
    for subject in "${subjects[@]}"; do
      echo "[bench-calculator] round $round ops=$n $subject" >&2
      measure "$subject" "$n" "$round" "${scripts[$n]}"
    done
  done
done

bench_baseline consul-proxy
# The issue's goals: the calculator >= 3x its Consul-proxy variant, >= 5x native.
bench_goal req_per_s coromesh-sidecar "ratio>=" 3
bench_goal req_per_s coromesh-sidecar-tcp "ratio>=" 3
bench_goal req_per_s coromesh-native "ratio>=" 5
