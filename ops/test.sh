#!/usr/bin/env bash
# Sets up, builds and runs every test (unit, integration against a real Consul and
# Prometheus, the install check, the format check). Exits non-zero on any failure.
#   ./ops/test.sh                 everything
#   ./ops/test.sh -L unit         only the hermetic unit tests (ctest arguments pass through)
#   ./ops/test.sh --sanitizers    the same code under sanitizers, in two more trees:
#                                 ASan+UBSan (build-asan): every unit and integration
#                                 test; TSan (build-tsan): every unit test and the
#                                 integration suites labelled `tsan` (tests/CMakeLists.txt
#                                 says which and why). Any sanitizer report fails the run.
# CI (.ci/run) runs ./ops/test.sh, then ./ops/test.sh --sanitizers.
#   ./ops/test.sh --help          this text (ctest's own: ctest --help)
# Environment: BUILD_DIR (default build), COROMESH_SANITIZER (address|thread),
#              JOBS (default 2, the machine's size), CXX (default clang++-16).
set -euo pipefail
COROMESH_SCRIPT=test
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

jobs="${JOBS:-2}"

# configure_and_build <build dir> <sanitizer or ''> <target> [cmake options...]
configure_and_build() {
  local build_dir="$1" sanitizer="$2" target="$3"
  shift 3
  mkdir -p "$build_dir"
  step "configure${sanitizer:+ ($sanitizer)}"
  local cxx
  cxx=$(coromesh_cxx)
  cmake -S "$COROMESH_ROOT" -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
    -DCOROMESH_SANITIZER="$sanitizer" "$@" >"$build_dir/configure.log" 2>&1 \
    || { tail -40 "$build_dir/configure.log" >&2; die "cmake configure failed"; }
  step_done "$cxx"

  step "build${sanitizer:+ ($sanitizer)}"
  if ! cmake --build "$build_dir" -j "$jobs" --target "$target" >"$build_dir/build.log" 2>&1; then
    grep -E "error|FAILED" -A3 "$build_dir/build.log" | head -60 >&2
    die "build failed (full log: $build_dir/build.log)"
  fi
  step_done
}

# sanitizer_suites <address|thread> <build dir> [ctest args...]: the suites of one
# sanitizer (tests/CMakeLists.txt says which run under which) in an instrumented tree.
# The trees are built for a cold CI run's speed: -O0 with line tables only (a report
# still names file and line; -O0 compiles the Beast-heavy sources ~2.5x faster than
# -O1, and the tests wait on sockets far more than they compute), no benchmarks, no
# fuzzers (they are always built with ASan+UBSan, so the main run has them), and the
# TSan tree only the `tsan_suites` target. Every report,
# including those of the child processes the integration tests start (our services,
# whose logs are temporary), is written to <build dir>/sanitizer-reports; any file there
# fails the run and is printed. (TSan's suppressions of third-party false positives are
# added by the tests' own environment: tests/sanitizers/tsan.supp.) Left to the main
# run: tests labelled `uninstrumented` (they run none of our compiled code) and
# `latency` (the fault scenarios, whose assertions are latencies under load).
sanitizer_suites() {
  local sanitizer="$1" build_dir="$2"
  shift 2
  local target=all labels='^(unit|integration)$'
  if [ "$sanitizer" = thread ]; then
    target=tsan_suites labels='^(unit|tsan)$'
  fi
  configure_and_build "$build_dir" "$sanitizer" "$target" -DCOROMESH_BUILD_BENCHMARKS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O0 -gline-tables-only -DNDEBUG"
  local reports="$build_dir/sanitizer-reports"
  rm -rf "$reports"
  mkdir -p "$reports"
  step "test ($sanitizer)"
  local status=0
  # One log_path for all three: ASan and UBSan share a runtime, and the last options
  # parsed would name the file. Each report goes to <reports>/<sanitizer>.<pid>.
  ASAN_OPTIONS="log_path=$reports/$sanitizer:detect_leaks=1" \
    UBSAN_OPTIONS="log_path=$reports/$sanitizer:print_stacktrace=1" \
    TSAN_OPTIONS="log_path=$reports/$sanitizer" \
    ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" \
    -L "$labels" -LE '^(uninstrumented|latency)$' "$@" | tee "$build_dir/ctest.log" || status=$?
  if compgen -G "$reports/*" >/dev/null; then
    for report in "$reports"/*; do
      echo "--- $report" >&2
      head -80 "$report" >&2
    done
    die "$(ls "$reports" | wc -l) sanitizer report(s) in $reports"
  fi
  [ "$status" -eq 0 ] || die "ctest failed under $sanitizer"
  local count
  count=$(grep -Eo 'tests failed out of [0-9]+' "$build_dir/ctest.log" | grep -Eo '[0-9]+$')
  step_done "$count tests passed, 0 reports"
}

# --help anywhere prints the header above and does nothing else: passed through to ctest,
# it would first set up and build everything (minutes) only to print ctest's own help.
for arg in "$@"; do
  case "$arg" in
    -h | --help) print_script_help; exit 0 ;;
  esac
done

if [ "${1:-}" = "--sanitizers" ]; then
  shift
  "$COROMESH_ROOT/ops/setup.sh"
  sanitizer_suites address "$COROMESH_ROOT/build-asan" "$@"
  sanitizer_suites thread "$COROMESH_ROOT/build-tsan" "$@"
  exit 0
fi

# --benchmarks: the benchmark-smoke test runs benchmarks/run.sh, which plots with gnuplot.
"$COROMESH_ROOT/ops/setup.sh" --benchmarks

configure_and_build "${BUILD_DIR:-$COROMESH_ROOT/build}" "${COROMESH_SANITIZER:-}" all

step "test"
ctest --test-dir "${BUILD_DIR:-$COROMESH_ROOT/build}" --output-on-failure -j "$jobs" "$@"
step_done
