# Shared by the ops/ scripts: logging with timings, root/sudo, tool paths.
# Source it; do not run it.

COROMESH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COROMESH_TOOLS="$COROMESH_ROOT/ops/.tools"
# Consul and Nomad built by setup.sh, and the machine's Go toolchain.
export PATH="$COROMESH_TOOLS/bin:$PATH:/usr/local/go/bin"

_step_started=0
_step_name=""

# step "name": starts a timed step; step_done prints "[setup] name ... 3.2s".
step() {
  _step_name="$1"
  _step_started=$(date +%s.%N)
}
step_done() {
  local detail="${1:-}"
  local now
  now=$(date +%s.%N)
  printf '[%s] %-34s %6.1fs%s\n' "${COROMESH_SCRIPT:-ops}" "$_step_name" \
    "$(echo "$now - $_step_started" | bc)" "${detail:+  ($detail)}"
}
# die "message": names the step that broke and exits non-zero.
die() {
  if [ -n "$_step_name" ]; then
    echo "[${COROMESH_SCRIPT:-ops}] FAILED in step '$_step_name': $*" >&2
  else
    echo "[${COROMESH_SCRIPT:-ops}] $*" >&2
  fi
  exit 1
}

# print_script_help: the calling script's header comment (from its second line to the
# `set -euo pipefail` that ends it) on stdout, without the "# " marks: what --help prints,
# so that the usage a script shows and the one its source documents cannot drift apart.
print_script_help() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

# as_root cmd...: runs a command as root (directly, or through sudo when available).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "this step needs root and sudo is not installed: $*" >&2
    return 1
  fi
}

# The C++ compiler the scripts configure with: $CXX when set, else clang++-16 (g++ 12
# miscompiles temporaries in co_await operands; see cmake/CoromeshCompiler.cmake). A
# full path, so that re-running against an existing build tree does not look like a
# compiler change to CMake.
coromesh_cxx() {
  local cxx="${CXX:-clang++-16}"
  command -v "$cxx" 2>/dev/null || die "C++ compiler '$cxx' not found (./ops/setup.sh installs clang++-16)"
}
