#!/usr/bin/env bash
# `--help` on the scripts a newcomer runs first (ops/demo.sh, ops/test.sh, ops/setup.sh,
# ops/nomad/run.sh) prints what the script does and exits 0, and does nothing else: no
# set-up, no build, no test run. `ops/test.sh --help` used to set up and build
# everything, then pass --help to ctest; `ops/demo.sh --help` printed a one-line usage
# to stderr and exited 2, and `ops/nomad/run.sh --help` its full usage, also to stderr
# with status 2.
# cmake, ctest, apt-get and sudo are shims on PATH that record any call and fail, so a
# script that goes past its --help fails here within seconds instead of building.
#   scripts_help.sh SOURCE_DIR WORK_DIR
set -euo pipefail
source_dir="$1" work="$2"

fail() {
  echo "ops.scripts_help: $*" >&2
  exit 1
}

rm -rf "$work"
mkdir -p "$work/shims"
for tool in cmake ctest apt-get sudo; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\nexit 1\n' "$tool" "$work" >"$work/shims/$tool"
  chmod +x "$work/shims/$tool"
done

# help SCRIPT ARG EXPECTED...: SCRIPT ARG exits 0, prints every EXPECTED line fragment on
# stdout, nothing on stderr, and calls none of the shims.
help() {
  local script="$1" arg="$2"
  shift 2
  local status=0
  rm -f "$work/calls"
  PATH="$work/shims:$PATH" "$source_dir/$script" "$arg" >"$work/out" 2>"$work/err" || status=$?
  [ "$status" -eq 0 ] || { cat "$work/out" "$work/err" >&2; fail "$script $arg exited $status, not 0"; }
  [ ! -s "$work/err" ] || { cat "$work/err" >&2; fail "$script $arg wrote to stderr"; }
  [ ! -e "$work/calls" ] || { cat "$work/calls" >&2; fail "$script $arg ran more than its help"; }
  ! grep -q '^\[setup\]' "$work/out" || fail "$script $arg ran ops/setup.sh"
  local expected
  for expected in "$@"; do
    grep -qF -- "$expected" "$work/out" || { cat "$work/out" >&2; fail "$script $arg does not say '$expected'"; }
  done
  echo "ok: $script $arg"
}

for arg in --help -h; do
  help ops/test.sh "$arg" "./ops/test.sh -L unit" "./ops/test.sh --sanitizers"
  help ops/setup.sh "$arg" "Debian packages" "--benchmarks"
done
for arg in --help -h help; do
  help ops/demo.sh "$arg" "./ops/demo.sh up [--nomad|--native|--secure]" \
    "./ops/demo.sh status" "./ops/demo.sh click" "./ops/demo.sh bench" "./ops/demo.sh down"
done
for arg in --help -h help; do
  help ops/nomad/run.sh "$arg" "ops/nomad/run.sh up" "ops/nomad/run.sh status" \
    "ops/nomad/run.sh down" "--frontend-port N"
done
# Also when --help follows ctest arguments: it must not be passed through.
rm -f "$work/calls"
PATH="$work/shims:$PATH" "$source_dir/ops/test.sh" -L unit --help >"$work/out" 2>&1 ||
  { cat "$work/out" >&2; fail "ops/test.sh -L unit --help failed"; }
[ ! -e "$work/calls" ] || fail "ops/test.sh -L unit --help ran more than its help"
echo "ok: ops/test.sh -L unit --help"

# A command it does not know is still an error, with the usage on stderr.
status=0
"$source_dir/ops/demo.sh" frobnicate >"$work/out" 2>"$work/err" || status=$?
[ "$status" -eq 2 ] || fail "ops/demo.sh frobnicate exited $status, not 2"
grep -q '^usage: ' "$work/err" || fail "ops/demo.sh frobnicate printed no usage on stderr"
grep -qF -- '--help' "$work/err" || fail "ops/demo.sh frobnicate does not point at --help"
echo "ok: ops/demo.sh frobnicate -> 2"

# Two topologies at once is refused before anything starts: `up --native --secure` used
# to run the native mesh and drop --secure without a word.
status=0
rm -f "$work/calls"
PATH="$work/shims:$PATH" "$source_dir/ops/demo.sh" up --native --secure >"$work/out" 2>"$work/err" ||
  status=$?
[ "$status" -ne 0 ] || fail "ops/demo.sh up --native --secure was accepted"
grep -qF 'one option at most' "$work/err" || { cat "$work/err" >&2; fail "ops/demo.sh up --native --secure does not say why"; }
[ ! -e "$work/calls" ] || fail "ops/demo.sh up --native --secure ran more than its check"
echo "ok: ops/demo.sh up --native --secure -> $status"
