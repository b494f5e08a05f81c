#!/usr/bin/env bash
# Build the real HashiCorp Nomad agent and CLI (MPL-2.0) from Go modules into
# ops/.tools/bin/nomad, using the wrapper module in ops/nomad/build/ (see its go.mod
# for why the wrapper exists and why this Nomad version).
#
# Idempotent: if ops/.tools/bin/nomad already reports the pinned version, it exits 0
# at once. Otherwise it downloads the modules the binary is compiled from (Go module
# proxy, verified against go.sum / sum.golang.org), checks their licenses (Nomad's own
# modules must be MPL-2.0; every module needs a recognised open-source license; nothing
# may be Business Source License), builds, and checks the version the binary reports.
#
# Environment overrides: GO (go binary), BUILD_JOBS (go build -p, default 2).
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MOD_DIR="$OPS_DIR/nomad/build"
BIN_DIR="$OPS_DIR/.tools/bin"
BIN="$BIN_DIR/nomad"
# As upstream's release builds: `codegen_generated` compiles in the generated msgpack
# codecs of Nomad's structs (upstream's RPC encoding speed), `release` leaves out the
# mock task driver and test helpers. Not `ui`: the web UI's assets are not in the
# module (built from Node sources upstream); the agent then serves the API only.
TAGS="codegen_generated release"

STEP="init"
REPORTED=0
fail() { echo "build-nomad.sh: ERROR in step '$STEP': $*" >&2; REPORTED=1; exit 1; }
report_unexpected_exit() {
  local rc=$?
  [ $rc -eq 0 ] || [ $REPORTED -eq 1 ] || echo "build-nomad.sh: ERROR in step '$STEP' (exit $rc)" >&2
}
trap report_unexpected_exit EXIT

# shellcheck source=SCRIPTDIR/lib/go_env.sh
source "$OPS_DIR/lib/go_env.sh"
# shellcheck source=SCRIPTDIR/lib/go_licenses.sh
source "$OPS_DIR/lib/go_licenses.sh"
# Unlike Consul and Prometheus, Nomad on Linux is built with cgo, as upstream does: the
# executor that runs every task links runc's nsenter, which is C.
export CGO_ENABLED=1

# --- pinned version: single source of truth is ops/nomad/build/go.mod --------
STEP="read pinned version"
VERSION="$(sed -nE 's#^require[[:space:]]+github\.com/hashicorp/nomad[[:space:]]+(v[0-9][^[:space:]]*).*#\1#p' "$MOD_DIR/go.mod" | head -n1)"
[ -n "$VERSION" ] || fail "cannot find 'require github.com/hashicorp/nomad vX.Y.Z' in $MOD_DIR/go.mod"
WANT="Nomad $VERSION"   # first line of `nomad version`

# --- fast path ---------------------------------------------------------------
STEP="check existing binary"
if [ -x "$BIN" ]; then
  have="$("$BIN" version 2>/dev/null || true)"; have="${have%%$'\n'*}"  # first line; no pipe (SIGPIPE + pipefail)
  if [ "$have" = "$WANT" ]; then
    echo "build-nomad.sh: $BIN is up to date ($have)"
    exit 0
  fi
  echo "build-nomad.sh: existing binary reports '${have:-<nothing>}', want '$WANT'; rebuilding"
fi

command -v "${CC:-gcc}" >/dev/null || fail "no C compiler (${CC:-gcc}): Nomad is built with cgo (./ops/setup.sh installs g++)"
cd "$MOD_DIR"

# --- download ----------------------------------------------------------------
# Only the modules the binary is compiled from (go list downloads them as needed,
# each checked against go.sum), not the whole module graph.
STEP="download modules"
echo "build-nomad.sh: [$STEP] $("$GO" version)"
linked="$("$GO" list -tags "$TAGS" -deps -f '{{with .Module}}{{.Path}} {{.Version}} {{.Dir}}{{end}}' .)" \
  || fail "go list -deps failed (module proxy, checksum database or go.sum mismatch?)"
"$GO" mod verify >/dev/null || fail "go mod verify failed: module cache content does not match go.sum"

# --- license check -----------------------------------------------------------
STEP="license check"
# Linked modules without a license file whose README states the license (checked).
declare -A LICENSE_IN_README=(
  [github.com/tj/go-spin]=MIT   # the CLI's spinner; Readme.md: "# License  MIT"
)
# The wrapper module itself (no version, no license file) is ours.
summary="$(sort -u <<<"$linked" | awk 'NF == 3' \
  | check_module_licenses github.com/hashicorp/nomad MPL-2.0)" \
  || fail "license check failed (see above); refusing to build"
echo "build-nomad.sh: [$STEP] ok: $summary"

# --- build -------------------------------------------------------------------
STEP="go build"
MODCACHE="$("$GO" env GOMODCACHE)"
INFO="$MODCACHE/cache/download/github.com/hashicorp/nomad/@v/$VERSION.info"
GIT_COMMIT="$(sed -nE 's/.*"Hash":"([0-9a-f]+)".*/\1/p' "$INFO" 2>/dev/null || true)"
BUILD_DATE="$("$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' github.com/hashicorp/nomad)"
LDFLAGS="-s -w -X github.com/hashicorp/nomad/version.GitCommit=${GIT_COMMIT:-unknown}"
LDFLAGS+=" -X github.com/hashicorp/nomad/version.BuildDate=$BUILD_DATE"
# The version itself is version.Version/VersionPrerelease in the module ("1.6.3", "").
mkdir -p "$BIN_DIR"
tmp="$BIN.tmp.$$"
echo "build-nomad.sh: [$STEP] nomad $VERSION (commit ${GIT_COMMIT:-unknown}, tags: $TAGS) -> $BIN (-p $JOBS)"
start=$SECONDS
if ! nice -n 10 "$GO" build -p "$JOBS" -tags "$TAGS" -trimpath -ldflags "$LDFLAGS" -o "$tmp" .; then
  rm -f "$tmp"; fail "go build failed"
fi
echo "build-nomad.sh: [$STEP] done in $((SECONDS - start))s ($(( $(stat -c %s "$tmp") / 1048576 )) MiB)"

# --- verify (before installing) ----------------------------------------------
STEP="verify version"
have="$("$tmp" version 2>&1)" || { rm -f "$tmp"; fail "'nomad version' failed: $have"; }
have="${have%%$'\n'*}"
[ "$have" = "$WANT" ] || { rm -f "$tmp"; fail "built binary reports '$have', expected '$WANT'"; }
mv -f "$tmp" "$BIN"
echo "build-nomad.sh: ok: $BIN ($have)"
