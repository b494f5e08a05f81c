#!/usr/bin/env bash
# Sets up, builds and runs every test (unit, integration against a real Consul and
# Prometheus, the install check, the format check). Exits non-zero on any failure.
#   ./ops/test.sh                 everything
#   ./ops/test.sh -L unit         only the hermetic unit tests (ctest arguments pass through)
# Environment: BUILD_DIR (default build), COROMESH_SANITIZER (address|thread),
#              JOBS (default 2, the machine's size), CXX (default clang++-16).
set -euo pipefail
COROMESH_SCRIPT=test
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

"$COROMESH_ROOT/ops/setup.sh"

build_dir="${BUILD_DIR:-$COROMESH_ROOT/build}"
jobs="${JOBS:-2}"

mkdir -p "$build_dir"
step "configure"
cxx=$(coromesh_cxx)
cmake -S "$COROMESH_ROOT" -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCOROMESH_SANITIZER="${COROMESH_SANITIZER:-}" >"$build_dir/configure.log" 2>&1 \
  || { tail -40 "$build_dir/configure.log" >&2; die "cmake configure failed"; }
step_done "$cxx"

step "build"
if ! cmake --build "$build_dir" -j "$jobs" >"$build_dir/build.log" 2>&1; then
  grep -E "error|FAILED" -A3 "$build_dir/build.log" | head -60 >&2
  die "build failed (full log: $build_dir/build.log)"
fi
step_done

step "test"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" "$@"
step_done
