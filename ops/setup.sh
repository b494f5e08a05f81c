#!/usr/bin/env bash
# Installs everything coromesh needs on a Debian 12 machine; idempotent and quiet when
# there is nothing to do. Called by ./ops/test.sh and ./ops/demo.sh.
#   - Debian packages (clang 16, the default compiler, and g++ 12, which CI also
#     builds the library with; CMake/Ninja, Boost 1.81, OpenSSL, prometheus-cpp,
#     GoogleTest, Google Benchmark, Prometheus, wrk, nginx and its stream module
#     (libnginx-mod-stream: the TLS pair of benchmarks/load/sidecar_pairs.sh))
#   - Consul, built from Go modules into ops/.tools/bin (see ops/build-consul.sh)
#   - Nomad 1.6 (the last MPL-2.0 line), built from Go modules into ops/.tools/bin
#     (see ops/build-nomad.sh): ops/nomad/ runs the calculator on it
#   - Prometheus 2.x and promtool, built from Go modules into ops/.tools/bin
#     (ops/build-prometheus.sh): Debian's package is built without consul_sd_configs,
#     which the project relies on. Its web UI is built with node/npm (node >= 20, which
#     this machine kind provides; Debian 12's own is 18) and embedded.
#   - chromium (headless: the web UI tests and ops/prometheus/screenshot.sh)
#   --benchmarks: also what benchmarks/run.sh needs beyond that: gnuplot (the plots),
#     Maven and a JDK (the JMH peer of the qos suite). The Go peer of the http suite is
#     built by CMake with the machine's Go toolchain (/usr/local/go), as Consul is.
set -euo pipefail
COROMESH_SCRIPT=setup
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# bc is used for step timings, so it is checked before the first timed step.
if ! command -v bc >/dev/null 2>&1; then
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq bc >/dev/null
fi

packages=(
  g++ cmake ninja-build ccache pkg-config git curl jq bc python3
  libboost1.81-all-dev libssl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-16 libclang-rt-16-dev clang-format-14
  wrk nginx-light libnginx-mod-stream
  chromium
)
case "${1:-}" in
  "") ;;
  --benchmarks) packages+=(gnuplot-nox maven default-jdk-headless) ;;
  -h | --help) print_script_help; exit 0 ;;
  *) echo "usage: ops/setup.sh [--benchmarks] (--help: what it installs)" >&2; exit 2 ;;
esac

step "debian packages"
missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq || die "apt-get update failed"
  # The Debian prometheus and nginx packages try to start system services; the
  # project starts its own instances, so package scripts must not start theirs.
  policy_rc=/usr/sbin/policy-rc.d
  restore_policy=0
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy_rc" >/dev/null
    as_root chmod +x "$policy_rc"
    restore_policy=1
  fi
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
      >"${TMPDIR:-/tmp}/coromesh-apt.log" 2>&1; then
    [ "$restore_policy" -eq 1 ] && as_root rm -f "$policy_rc"
    tail -20 "${TMPDIR:-/tmp}/coromesh-apt.log" >&2
    die "apt-get install ${missing[*]} failed (log: ${TMPDIR:-/tmp}/coromesh-apt.log)"
  fi
  [ "$restore_policy" -eq 1 ] && as_root rm -f "$policy_rc"
  step_done "installed ${#missing[@]}: ${missing[*]}"
else
  step_done "all ${#packages[@]} present"
fi

# build_go_tool SCRIPT WHAT BINARY VERSION_ARGS...: runs ops/SCRIPT (idempotent: quick
# when the binary is current), then ends the step with the first line of its version.
build_go_tool() {
  local script="$1" what="$2" binary="$3" build_log version
  shift 3
  if ! build_log=$("$COROMESH_ROOT/ops/$script" 2>&1); then
    echo "$build_log" >&2
    die "building $what from Go modules failed (see above)"
  fi
  version=$("$binary" "$@" 2>&1)
  step_done "${version%%$'\n'*}"
}

step "consul"
consul_bin="$COROMESH_TOOLS/bin/consul"
pinned=$(sed -nE 's#^[[:space:]]*github\.com/hashicorp/consul[[:space:]]+v([0-9][^[:space:]]*).*#\1#p' \
  "$COROMESH_ROOT/ops/consul/go.mod" | head -n1)
# A Consul of exactly the pinned version already on PATH is used instead of a build.
if [ ! -x "$consul_bin" ] && system_consul=$(command -v consul 2>/dev/null); then
  system_version=$("$system_consul" version 2>/dev/null || true)
  if [ "${system_version%%$'\n'*}" = "Consul v$pinned" ]; then
    mkdir -p "$COROMESH_TOOLS/bin"
    ln -sf "$system_consul" "$consul_bin"
  fi
fi
build_go_tool build-consul.sh "Consul v$pinned" "$consul_bin" version

step "nomad"
build_go_tool build-nomad.sh Nomad "$COROMESH_TOOLS/bin/nomad" version

step "prometheus (web UI) + promtool"
build_go_tool build-prometheus.sh Prometheus "$COROMESH_TOOLS/bin/prometheus" --version
