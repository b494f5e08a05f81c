# `./ops/demo.sh bench` (sourced by ops/demo.sh, which defines state, cmd_up and the
# demo's addresses): the seed's wrk scenario, in one run, against three topologies of
# the calculator: every service behind coromesh-sidecar, Connect-native services
# (TOPO_PROXY=native), and `consul connect proxy` as every sidecar.
#
#   ./ops/demo.sh bench [--duration S=15] [--rounds N=1] [--with-tcp]
#
# The demo's own mesh is one of them (the sidecar one, or the native one after `up
# --native`); the others run beside it in ops/.demo/bench-<label>/, each with its own
# Consul dev agent on free ports (two meshes' services must not balance across each
# other), and are stopped at the end. --with-tcp adds a fourth: coromesh-sidecar with
# tcp upstream listeners (what http mode costs). Each round measures each topology, one
# after the other, after a 2 s warm-up of each; the figures and the ratios to the
# Consul-proxy topology are printed and kept in ops/.demo/bench-<time>.txt. Exits non-zero when a topology answered wrongly or
# failed requests.
#
# benchmarks/suites/calculator.sh (benchmarks/run.sh calculator) starts its three
# topologies with _bench_start and stops them with _bench_cleanup, with `state` set to
# its own run directory in the build tree.

_bench_load="$COROMESH_ROOT/benchmarks/load"
# shellcheck source=../../benchmarks/load/lib/proc_stats.sh
source "$_bench_load/lib/proc_stats.sh"

# _bench_pids DIR: the PIDs of a topology's services and sidecars.
_bench_pids() {
  local proc
  while IFS=$'\t' read -r proc _; do
    proc_pid "$1" "$proc"
  done < <(TOPO_DIR="$1" topology_rows)
}

# _bench_measure DIR FRONTEND ROUND LABEL: one wrk run; appends a row to $bench_rows.
_bench_measure() {
  local dir="$1" frontend="$2" round="$3" label="$4" raw before after wrong
  raw="$state/bench-wrk-$round-$label.txt" # kept: the last run's raw wrk output
  local -a pids
  mapfile -t pids < <(_bench_pids "$dir")
  echo "[demo] round $round: $label (${bench_duration}s)" >&2
  before=$(cpu_ticks "${pids[@]}")
  wrk -t5 -c5 -d"${bench_duration}s" --latency -s "$_bench_load/calculator.lua" \
    "http://$frontend/api/v1/compute" >"$raw" 2>&1 || true
  after=$(cpu_ticks "${pids[@]}")
  wrong=$(sed -n 's/^wrong answers: //p' "$raw")
  # round, connections, path, rps, p50, p99, cpu s, rss, requests, errors (+ wrong)
  printf '%s\t%s\n' "$(python3 "$_bench_load/lib/parse_wrk.py" "$raw" "$round" 5 "$label" \
    "$(awk -v a="$after" -v b="$before" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (a - b) / t}')" -)" \
    "${wrong:-unknown}" >>"$bench_rows"
}

# The topologies a bench starts beside the demo, each in ops/.demo/bench-<label>/ with
# its own Consul dev agent (two meshes' services must not balance across each other).
_bench_dirs() { compgen -G "$state/bench-*/" || true; }

_bench_cleanup() {
  local dir
  for dir in $(_bench_dirs); do
    dir="${dir%/}"
    TOPO_DIR="$dir" TOPO_CONSUL_ADDR="$(cat "$dir/consul.addr" 2>/dev/null || echo 127.0.0.1:1)" \
      topology_stop >/dev/null
    platform_stop "$dir"
    rm -rf "$dir"
  done
}

# _bench_start LABEL TOPO_PROXY UPSTREAM_MODE: a topology beside the demo; sets
# frontends[LABEL] and dirs[LABEL].
_bench_start() {
  local label="$1" dir="$state/bench-$1"
  mkdir -p "$dir"
  step "$label topology"
  platform_start_consul "$dir" 0
  echo "$platform_consul_addr" >"$dir/consul.addr"
  (
    export TOPO_DIR="$dir" TOPO_CONSUL_ADDR="$platform_consul_addr" TOPO_PROXY="$2"
    export TOPO_UPSTREAM_MODE="$3" TOPO_FRONTEND_PORT=0
    topology_up
    topology_wait_ready 120
  ) || die "the $label topology did not come up (logs: $dir)"
  dirs[$label]="$dir"
  frontends[$label]=$(TOPO_DIR="$dir" topology_frontend_addr)
  step_done "frontend ${frontends[$label]}, its own Consul $platform_consul_addr"
}

cmd_bench() {
  bench_duration=15
  local rounds=1 with_tcp=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --duration) bench_duration="$2"; shift 2 ;;
      --rounds) rounds="$2"; shift 2 ;;
      --with-tcp) with_tcp=1; shift ;;
      *) die "bench: unknown argument $1 (--duration S, --rounds N, --with-tcp)" ;;
    esac
  done
  command -v wrk >/dev/null || die "wrk not found: run ./ops/setup.sh"
  if ! topology_running || ! proc_alive "$state" consul; then
    echo "[demo] bench: the demo is not running; starting it"
    cmd_up
  fi
  trap _bench_cleanup EXIT
  trap 'exit 130' INT TERM
  _bench_cleanup
  # The demo's mesh is measured where it runs; the other two start beside it.
  local demo_label=coromesh other=native
  [ "$(running_mode)" != native ] || demo_label=native other=coromesh
  declare -A frontends=([$demo_label]="$frontend_addr") dirs=([$demo_label]="$state")
  local -a labels=(coromesh native consul)
  _bench_start "$other" "$other" http
  _bench_start consul consul tcp
  if [ "$with_tcp" -eq 1 ]; then
    _bench_start coromesh-tcp coromesh tcp
    labels+=(coromesh-tcp)
  fi

  local load_at_start label round
  load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
  bench_rows="$state/bench-consul/rows.tsv"
  : >"$bench_rows"
  echo "[demo] warm-up: 2 s each" >&2
  for label in "${labels[@]}"; do
    wrk -t5 -c5 -d2s -s "$_bench_load/calculator.lua" "http://${frontends[$label]}/api/v1/compute" \
      >/dev/null 2>&1 || true
  done
  for ((round = 1; round <= rounds; round++)); do
    for label in "${labels[@]}"; do
      _bench_measure "${dirs[$label]}" "${frontends[$label]}" "$round" "$label"
    done
  done

  local report status=0
  report="$state/bench-$(date -u +%Y%m%dT%H%M%SZ).txt"
  {
    echo "the seed's scenario: wrk -t5 -c5 -d${bench_duration}s --latency, POST /api/v1/compute" \
      "{\"expression\":\"1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5\"} (16 operator calls, result 9)"
    echo "topology: 2 x add/sub/mul/div/mod-svc + frontend; native: no sidecars but mod-svc's" \
      "and the frontend's ingress;" \
      "$(nproc) cores, load average $load_at_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
    python3 - "$bench_rows" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
names = {"coromesh": "coromesh-sidecar (http upstreams)", "consul": "consul connect proxy (tcp)",
         "coromesh-tcp": "coromesh-sidecar (tcp upstreams)", "native": "Connect-native (no sidecars)"}
goals = {"coromesh": 3, "coromesh-tcp": 3, "native": 5}  # x the Consul-proxy req/s, lower p99
by = {}
print(f"{'round':<6}{'topology':<36}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'wrong':>7}{'cpu ms/req':>12}")
for r in rows:
    rnd, _, path, rps, p50, p99, cpu, _, requests, errors, wrong = r
    rps, p50, p99, requests = float(rps), float(p50), float(p99), int(requests)
    cpu_per_req = float(cpu) * 1000 / requests if requests else 0.0
    by.setdefault(path, []).append((rps, p99, int(errors), wrong))
    print(f"{rnd:<6}{names[path]:<36}{rps:>9.1f}{p50:>9.2f}{p99:>9.2f}{errors:>8}{wrong:>7}{cpu_per_req:>12.2f}")
print("(cpu ms/req: CPU time of every service and sidecar of that mesh per request)")
ok = all(e == 0 and w == "0" and rps > 0 for v in by.values() for rps, _, e, w in v)
for path in ("coromesh", "coromesh-tcp", "native"):
    if path not in by or "consul" not in by:
        continue
    rps_ratio = [a[0] / b[0] for a, b in zip(by[path], by["consul"]) if b[0] > 0]
    p99_ratio = [a[1] / b[1] for a, b in zip(by[path], by["consul"]) if b[1] > 0]
    if rps_ratio and p99_ratio:
        r, p = statistics.median(rps_ratio), statistics.median(p99_ratio)
        met = "met" if r >= goals[path] and p < 1 else "NOT met"
        print(f"{path} / consul: req/s {r:.2f}x, p99 {p:.2f}x"
              f"{' (median of rounds)' if len(rps_ratio) > 1 else ''};"
              f" goal >= {goals[path]}x req/s at a lower p99: {met}")
print("seed, for reference (JVMs behind consul connect proxy in a Vagrant VM): 16.75 req/s, p99 415.7 ms")
sys.exit(0 if ok else 1)
PY
  } | tee "$report" || status=$?
  echo "[demo] kept in ${report#"$COROMESH_ROOT"/}"
  [ "$status" -eq 0 ] || die "a topology failed requests or answered wrongly (wrk's output: ops/.demo/bench-wrk-*.txt)"
}
