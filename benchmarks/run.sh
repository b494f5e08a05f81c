#!/usr/bin/env bash
# Every published benchmark figure from one command: builds what the suites need in
# Release, runs each suite (coromesh and its peers alternately, round by round), then
# writes the summary (median, spread, ratio to the baseline, goals met or missed) and
# the plots. benchmarks/README.md describes the suites and their interface.
#
#   benchmarks/run.sh [--short] [--rounds N] [--results-root DIR] [--build-dir DIR] [suite...]
#
#   suite            benchmarks/suites/<suite>.sh; none named = all of them
#   --short          CI mode: seconds per suite; proves the harness works end to end
#                    (the figures mean nothing)
#   --rounds N       rounds per suite (default 3, --short 1)
#   --results-root DIR  where <YYYY-MM-DD>/ is written (default benchmarks/results;
#                    env BENCH_RESULTS_ROOT); a second run the same day replaces the
#                    subdirectory of each suite it runs
#   --build-dir DIR  build the targets in this existing tree instead of configuring
#                    build-release/ in Release (env BENCH_BUILD_DIR; the ctest smoke
#                    run uses the test build: no second build of the framework)
#
# Needs ./ops/setup.sh --benchmarks (gnuplot, wrk, nginx, Maven and a JDK) and Go at
# /usr/local/go (the go-hello peer). Exit status: non-zero when the build, a suite or
# the summary failed; goals missed are reported in summary.md, not as a failure.
set -euo pipefail
export COROMESH_SCRIPT=bench # common.sh: the prefix of its messages
# shellcheck source=../ops/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../ops/lib/common.sh"
suites_dir="$COROMESH_ROOT/benchmarks/suites"

mode=full
rounds=""
results_root="${BENCH_RESULTS_ROOT:-$COROMESH_ROOT/benchmarks/results}"
build_dir="${BENCH_BUILD_DIR:-}"
suites=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) mode=short; shift ;;
    --rounds) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive number"
      rounds="$2"; shift 2 ;;
    --results-root) [ -n "${2:-}" ] || die "--results-root needs a directory"
      results_root="$2"; shift 2 ;;
    --build-dir) [ -n "${2:-}" ] || die "--build-dir needs a directory"
      build_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -f "$suites_dir/$1.sh" ] ||
        die "no suite '$1' (have: $(basename -s .sh "$suites_dir"/*.sh | tr '\n' ' '))"
      suites+=("$1"); shift ;;
  esac
done
if [ ${#suites[@]} -eq 0 ]; then
  mapfile -t suites < <(basename -s .sh "$suites_dir"/*.sh)
fi
[ -n "$rounds" ] || { [ "$mode" = short ] && rounds=1 || rounds=3; }

for tool in wrk nginx gnuplot python3 curl; do
  command -v "$tool" >/dev/null || die "$tool not found: run ./ops/setup.sh --benchmarks"
done

# A suite names the build targets it runs in lines "# bench-targets: a b c"; a suite
# that names none gets every target built.
targets=()
all_targets=0
for suite in "${suites[@]}"; do
  lines=$(sed -n 's/^# bench-targets://p' "$suites_dir/$suite.sh")
  [ -n "$lines" ] || all_targets=1
  read -ra named <<<"$(tr '\n' ' ' <<<"$lines")"
  targets+=("${named[@]}")
done

step "build"
if [ -z "$build_dir" ]; then
  build_dir="$COROMESH_ROOT/build-release"
  mkdir -p "$build_dir"
  cmake -S "$COROMESH_ROOT" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$(coromesh_cxx)" -DCOROMESH_BUILD_TESTS=OFF \
    >"$build_dir/configure.log" 2>&1 ||
    { tail -30 "$build_dir/configure.log" >&2; die "cmake configure failed"; }
fi
[ -f "$build_dir/build.ninja" ] || [ -f "$build_dir/Makefile" ] ||
  die "$build_dir is not a configured build tree"
# Absolute: suites start their processes from their own working directories.
build_dir=$(cd "$build_dir" && pwd)
target_args=()
if [ "$all_targets" -eq 0 ]; then
  mapfile -t unique < <(printf '%s\n' "${targets[@]}" | sort -u)
  target_args=(--target "${unique[@]}")
fi
if ! cmake --build "$build_dir" -j "${JOBS:-2}" "${target_args[@]}" >"$build_dir/bench-build.log" 2>&1; then
  grep -E "error|FAILED|unknown target" -A3 "$build_dir/bench-build.log" | head -40 >&2
  grep -q "unknown target 'go-hello'" "$build_dir/bench-build.log" &&
    echo "(go-hello is built only when CMake finds Go: /usr/local/go/bin/go or go on PATH)" >&2
  die "build failed (log: $build_dir/bench-build.log)"
fi
step_done "${target_args[*]:-all targets} in $build_dir"

mkdir -p "$results_root"
date_dir="$(cd "$results_root" && pwd)/$(date -u +%Y-%m-%d)"
mkdir -p "$date_dir"
# The machine and how busy it is: other work on it moves every figure.
{
  echo "run:     benchmarks/run.sh $([ "$mode" = short ] && echo '--short ')--rounds $rounds ${suites[*]}"
  echo "commit:  $(git -C "$COROMESH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel:  $(uname -sr)"
  echo "start:   $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$date_dir/.this-run.txt"

# The suites print their own expected duration in full mode (their `# bench-minutes:` line).
if [ "$mode" = full ]; then
  minutes=0
  for suite in "${suites[@]}"; do
    per_round=$(sed -n 's/^# bench-minutes-per-round: *//p' "$suites_dir/$suite.sh" | head -1)
    minutes=$(awk -v m="$minutes" -v p="${per_round:-5}" -v r="$rounds" 'BEGIN {print m + p * r}')
  done
  echo "[bench] full mode, $rounds rounds: expect about $minutes minutes (${suites[*]})"
fi

failed=()
for suite in "${suites[@]}"; do
  out="$date_dir/$suite"
  rm -rf "$out"
  mkdir -p "$out/raw"
  step "suite $suite"
  status=0
  BENCH_MODE=$mode BENCH_ROUNDS=$rounds BENCH_OUT=$out BENCH_BIN="$build_dir/bin" \
    COROMESH_ROOT="$COROMESH_ROOT" bash "$suites_dir/$suite.sh" 2>&1 | tee "$out/raw/suite.log" ||
    status=$?
  if [ "$status" -ne 0 ]; then
    echo "[bench] suite $suite FAILED (exit $status; log: $out/raw/suite.log)" >&2
    failed+=("$suite")
  elif [ ! -s "$out/samples.tsv" ]; then
    echo "[bench] suite $suite wrote no samples ($out/samples.tsv)" >&2
    failed+=("$suite")
  fi
  count=0
  [ ! -f "$out/samples.tsv" ] || count=$(($(wc -l <"$out/samples.tsv") - 1))
  step_done "$count samples"
done
echo "end:     $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)" \
  >>"$date_dir/.this-run.txt"
# Each suite keeps the record of the run that measured it; the day's machine.txt lists
# every run whose figures summary.md shows (suites of an earlier run the same day stay).
for suite in "${suites[@]}"; do cp "$date_dir/.this-run.txt" "$date_dir/$suite/machine.txt"; done
rm -f "$date_dir/.this-run.txt"
for record in "$date_dir"/*/machine.txt; do
  cat "$record"
  echo
done | awk 'BEGIN {RS = ""; ORS = "\n\n"} !seen[$0]++' >"$date_dir/machine.txt"

step "summary"
python3 "$COROMESH_ROOT/benchmarks/lib/summarize.py" "$date_dir" || die "summarize.py failed"
step_done "$date_dir/summary.md"
[ ${#failed[@]} -eq 0 ] || die "suite(s) failed: ${failed[*]}"
