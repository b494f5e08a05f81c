#!/usr/bin/env bash
# Where the calculator's CPU goes, per process, and an A/B of two builds side by side:
# starts one calculator topology per LABEL=PROXY:MODE:BIN (each with its own Consul dev
# agent on free loopback ports, as benchmarks/suites/calculator.sh does), then runs the
# seed's wrk scenario (-t5 -c5, benchmarks/load/calculator.lua: 16 operator calls) on
# each in turn for ROUNDS rounds, and prints, per topology, req/s and the CPU
# milliseconds per request of: the frontend, the frontend's sidecar, the inbound sidecars
# (summed) and the operator services (summed), as medians over the rounds.
#
#   benchmarks/calculator_cpu.sh [-d SECONDS=10] [-r ROUNDS=3] LABEL=PROXY:MODE:BIN...
#     PROXY  coromesh | consul   MODE  http | tcp (coromesh-sidecar's upstreams)
#     BIN    a directory with add-svc ... frontend coromesh-sidecar (a Release build)
#   e.g. benchmarks/calculator_cpu.sh base=coromesh:http:/tmp/base/bin \
#          new=coromesh:http:build-release/bin consul=consul:tcp:build-release/bin
#
# CPU per request is far less noisy than req/s on a shared machine: compare that first.
# The load average at start and end is printed; the run directory is
# build-release/bench-cpu/ (removed at the end).
set -euo pipefail
COROMESH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COROMESH_SCRIPT=calculator-cpu
export PATH="$COROMESH_ROOT/ops/.tools/bin:$PATH"
# shellcheck source=ops/lib/common.sh
source "$COROMESH_ROOT/ops/lib/common.sh"
# shellcheck source=ops/lib/platform.sh
source "$COROMESH_ROOT/ops/lib/platform.sh"
# shellcheck source=ops/lib/topology.sh
source "$COROMESH_ROOT/ops/lib/topology.sh"
state="$COROMESH_ROOT/build-release/bench-cpu"
# shellcheck source=ops/lib/bench.sh
source "$COROMESH_ROOT/ops/lib/bench.sh"

duration=10
rounds=3
while getopts "d:r:" opt; do
  case "$opt" in
    d) duration="$OPTARG" ;;
    r) rounds="$OPTARG" ;;
    *) die "usage: $0 [-d SECONDS] [-r ROUNDS] LABEL=PROXY:MODE:BIN..." ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || die "usage: $0 [-d SECONDS] [-r ROUNDS] LABEL=PROXY:MODE:BIN..."
command -v wrk >/dev/null || die "wrk not found: run ./ops/setup.sh"

declare -A frontends=() dirs=()
labels=()
mkdir -p "$state"
trap _bench_cleanup EXIT
trap 'exit 130' INT TERM
_bench_cleanup
for spec in "$@"; do
  label="${spec%%=*}"
  IFS=: read -r proxy mode bin <<<"${spec#*=}"
  [ -x "$bin/coromesh-sidecar" ] || die "$bin/coromesh-sidecar is not built"
  TOPO_BIN="$(cd "$bin" && pwd)" _bench_start "$label" "$proxy" "$mode"
  labels+=("$label")
done

# group PROCESS ROLE SERVICE: which figure a process counts toward.
group_of() {
  case "$2:$3" in
    service:frontend) echo frontend ;;
    sidecar:frontend) echo frontend-sidecar ;;
    sidecar:*) echo inbound-sidecars ;;
    *) echo services ;;
  esac
}

# cpu_by_group DIR: "GROUP<TAB>ticks" for every process of the topology.
cpu_by_group() {
  local proc role service
  while IFS=$'\t' read -r proc role service _; do
    printf '%s\t%s\n' "$(group_of "$proc" "$role" "$service")" \
      "$(cpu_ticks "$(proc_pid "$1" "$proc")")"
  done < <(TOPO_DIR="$1" topology_rows)
}

rows="$state/rows.tsv"
: >"$rows"
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
for label in "${labels[@]}"; do # warm-up
  wrk -t5 -c5 -d3s -s "$COROMESH_ROOT/benchmarks/load/calculator.lua" \
    "http://${frontends[$label]}/api/v1/compute" >/dev/null 2>&1 || true
done
for ((round = 1; round <= rounds; round++)); do
  for label in "${labels[@]}"; do
    out="$state/wrk-$label-$round.txt"
    before=$(cpu_by_group "${dirs[$label]}")
    wrk -t5 -c5 -d"${duration}s" -s "$COROMESH_ROOT/benchmarks/load/calculator.lua" \
      "http://${frontends[$label]}/api/v1/compute" >"$out" 2>&1 || die "wrk failed ($out)"
    after=$(cpu_by_group "${dirs[$label]}")
    grep -q '^wrong answers: 0$' "$out" || die "$label answered wrongly ($out)"
    ! grep -q 'Non-2xx' "$out" || die "$label failed requests ($out)"
    requests=$(awk '/requests in/ {print $1}' "$out")
    rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
    awk -F'\t' -v t="$(getconf CLK_TCK)" -v n="$requests" -v l="$label" -v r="$round" -v rps="$rps" \
      'NR == FNR {before[$1] += $2; next} {after[$1] += $2}
       END {for (g in after) printf "%s\t%s\t%s\t%s\t%.4f\n", l, r, rps, g, (after[g] - before[g]) / t / n * 1000}' \
      <(echo "$before") <(echo "$after") >>"$rows"
    echo "[calculator-cpu] round $round $label: $rps req/s" >&2
  done
done

echo "wrk -t5 -c5 -d${duration}s x $rounds rounds, $(nproc) cores; load average $load_at_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
python3 - "$rows" "${labels[@]}" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
groups = ["frontend-sidecar", "frontend", "inbound-sidecars", "services"]
print(f"{'topology':<14}{'req/s':>9}" + "".join(f"{g:>18}" for g in groups) + f"{'total':>10}  (CPU ms per request, medians)")
for label in sys.argv[2:]:
    mine = [r for r in rows if r[0] == label]
    rps = statistics.median({r[1]: float(r[2]) for r in mine}.values())
    per = {g: statistics.median([float(r[4]) for r in mine if r[3] == g] or [0.0]) for g in groups}
    print(f"{label:<14}{rps:>9.1f}" + "".join(f"{per[g]:>18.3f}" for g in groups) + f"{sum(per.values()):>10.3f}")
PY
