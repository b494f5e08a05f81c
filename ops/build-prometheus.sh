#!/usr/bin/env bash
# Build the real upstream Prometheus server and promtool (Apache-2.0) from Go modules
# into ops/.tools/bin/{prometheus,promtool}, using the wrapper module in
# ops/prometheus/build/ (see its go.mod for why the wrapper exists and why this
# version). Debian 12's `prometheus` package is built without Consul service
# discovery, which the project's ops/prometheus/prometheus.yml.in needs
# (consul_sd_configs).
#
# The server embeds its web UI (Graph, Targets, Alerts) like upstream's release
# builds: ops/prometheus/ui/build-assets.sh builds web/ui with npm from the module's
# own sources (cached under ~/.cache/coromesh/prometheus-ui/), the assets are laid over a
# writable copy of the module (~/.cache/coromesh/prometheus-src/; the module cache is
# read-only), and `go build -tags builtinassets` compiles against that copy through
# a `replace` in a temporary -modfile (the wrapper's go.mod/go.sum stay untouched).
#
# Idempotent: if ops/.tools/bin/prometheus reports the pinned version and the
# builtinassets tag, and promtool the pinned version, it exits 0 at once. Otherwise
# it downloads the modules the binaries are built from (Go module proxy, verified
# against go.sum / sum.golang.org), checks their licenses (Prometheus's own modules
# must be Apache-2.0; nothing may be Business Source License), builds the UI assets
# (npm registry) and both binaries, then starts the new server on a loopback port
# with the project's consul_sd_configs config and checks /-/ready, /api/v1/query and
# that /graph serves the React app before installing it.
#
# Environment overrides: GO (go binary), BUILD_JOBS (go build -p, default 2),
# COROMESH_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/coromesh): where the built UI
# assets (prometheus-ui/) and the writable module copy (prometheus-src/) are kept.
# Outside the clone, like Go's and npm's own caches, so that a fresh clone (CI's) does
# not redo the npm build and finds the compiled packages in Go's build cache (whose
# keys include the source directory): minutes saved on 2 cores. A lock serialises
# two clones building at once. COROMESH_PROMETHEUS_UI_CACHE overrides the UI's part.
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MOD_DIR="$OPS_DIR/prometheus/build"
CONFIG_IN="$OPS_DIR/prometheus/prometheus.yml.in"
BIN_DIR="$OPS_DIR/.tools/bin"
BIN="$BIN_DIR/prometheus"
PROMTOOL="$BIN_DIR/promtool"
PKG="github.com/prometheus/prometheus/cmd/prometheus"
PROMTOOL_PKG="github.com/prometheus/prometheus/cmd/promtool"
COROMESH_CACHE="${COROMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coromesh}"
UI_CACHE="${COROMESH_PROMETHEUS_UI_CACHE:-$COROMESH_CACHE/prometheus-ui}"
# A writable copy of the module at a fixed path, so that a rebuild finds its
# compiled packages in the Go build cache.
SRC_COPY="$COROMESH_CACHE/prometheus-src"

STEP="init"
REPORTED=0
WORK=""
PROM_PID=""
fail() { echo "build-prometheus.sh: ERROR in step '$STEP': $*" >&2; REPORTED=1; exit 1; }
cleanup() {
  local rc=$?
  if [ -n "$PROM_PID" ] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true
  fi
  [ -z "$WORK" ] || rm -rf "$WORK"
  [ $rc -eq 0 ] || [ $REPORTED -eq 1 ] || echo "build-prometheus.sh: ERROR in step '$STEP' (exit $rc)" >&2
}
trap cleanup EXIT

# shellcheck source=lib/go_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go_env.sh"

# --- pinned version: single source of truth is ops/prometheus/build/go.mod ----
STEP="read pinned version"
VERSION="$(sed -nE 's#^require[[:space:]]+github\.com/prometheus/prometheus[[:space:]]+(v[0-9][^[:space:]]*).*#\1#p' "$MOD_DIR/go.mod" | head -n1)"
[ -n "$VERSION" ] || fail "cannot find 'require github.com/prometheus/prometheus vX.Y.Z' in $MOD_DIR/go.mod"
# The Go module's v0.X.Y tags are Prometheus 2.X.Y (v0.3XX.Y would be 3.x).
[[ "$VERSION" =~ ^v0\.([0-9]{1,2})\.([0-9]+)$ ]] || fail "module version $VERSION is not a Prometheus 2.x tag (v0.X.Y)"
PROM_VERSION="2.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
WANT="prometheus, version $PROM_VERSION "   # first line of `prometheus --version`
WANT_TOOL="promtool, version $PROM_VERSION "

# The web UI assets' cache key (module version + a hash of ops/prometheus/ui/), stamped
# into the binaries' build user: a change to the UI build makes the fast path rebuild.
UI_KEY="$("$OPS_DIR/prometheus/ui/build-assets.sh" --key "$VERSION")" || fail "cannot compute the web UI key"
BUILD_USER="coromesh/ops/build-prometheus.sh(ui:$UI_KEY)"

# built_as BINARY WANT: the binary's `--version` starts with WANT and names
# BUILD_USER, and the server lists the builtinassets tag.
built_as() {
  local out first
  [ -x "$1" ] || return 1
  out="$("$1" --version 2>&1 || true)"; first="${out%%$'\n'*}"  # no pipe (SIGPIPE + pipefail)
  [ "${first#"$2"}" != "$first" ] || return 1
  [[ "$out" == *"build user:"*" $BUILD_USER"* ]] || return 1
  [ "$1" != "$BIN" ] || [[ "$out" =~ tags:[[:space:]]+([^[:space:]]*,)?builtinassets ]]
}

# --- fast path ---------------------------------------------------------------
STEP="check existing binaries"
if built_as "$BIN" "$WANT" && built_as "$PROMTOOL" "$WANT_TOOL"; then
  echo "build-prometheus.sh: $BIN and $PROMTOOL are up to date (Prometheus $PROM_VERSION, web UI built in)"
  exit 0
fi
echo "build-prometheus.sh: want Prometheus $PROM_VERSION with the web UI built in, and its promtool; building"

command -v curl >/dev/null || fail "curl is needed to verify the built binary"
mkdir -p "$COROMESH_CACHE"
exec 9>"$COROMESH_CACHE/prometheus-build.lock"
flock 9 || fail "cannot lock $COROMESH_CACHE/prometheus-build.lock"
[ -f "$CONFIG_IN" ] || fail "missing $CONFIG_IN"
cd "$MOD_DIR"

# --- download ----------------------------------------------------------------
# Only the modules that cmd/prometheus is compiled from (go list downloads them
# as needed, each checked against go.sum), not the whole ~550-module graph.
STEP="download modules"
echo "build-prometheus.sh: [$STEP] $("$GO" version)"
"$GO" mod download github.com/prometheus/prometheus \
  || fail "go mod download github.com/prometheus/prometheus@$VERSION failed (module proxy / checksum database?)"
linked="$("$GO" list -deps -tags builtinassets -f '{{with .Module}}{{.Path}} {{.Version}} {{.Dir}}{{end}}' \
  "$PKG" "$PROMTOOL_PKG")" || fail "go list -deps $PKG $PROMTOOL_PKG failed (module download or go.sum mismatch?)"
mapfile -t LINKED < <(sort -u <<<"$linked" | sed '/^$/d')
[ "${#LINKED[@]}" -gt 0 ] || fail "go list -deps $PKG $PROMTOOL_PKG listed no modules"
"$GO" mod verify >/dev/null || fail "go mod verify failed: module cache content does not match go.sum"

# --- license check -----------------------------------------------------------
# Every module compiled into the binary must carry a recognised open-source
# license at its root; github.com/prometheus/* must be Apache-2.0; BUSL anywhere
# (in any license file of any of these modules) refuses the build.
STEP="license check"
# shellcheck source=SCRIPTDIR/lib/go_licenses.sh
source "$OPS_DIR/lib/go_licenses.sh"   # license_kind
bad=0; prom_mods=0; declare -A KINDS=()
for line in "${LINKED[@]}"; do
  read -r path version dir <<<"$line"
  [ -n "${dir:-}" ] && [ -d "$dir" ] || { echo "  $path@$version: module not in cache" >&2; bad=1; continue; }
  mapfile -t lics < <(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'LICENCE*' -o -iname 'COPYING*' \) | sort)
  if [ "${#lics[@]}" -eq 0 ]; then echo "  $path@$version: NO LICENSE FILE in $dir" >&2; bad=1; continue; fi
  if grep -qiE 'Business Source License|BUSL-1\.1' "${lics[@]}"; then
    echo "  $path@$version: Business Source License ($dir)" >&2; bad=1; continue
  fi
  kind="$(license_kind "${lics[0]}")"
  case "$path" in
    github.com/prometheus/*)
      prom_mods=$((prom_mods + 1))
      [ "$kind" = "Apache-2.0" ] || { echo "  $path@$version: license is $kind, required Apache-2.0 (${lics[0]})" >&2; bad=1; continue; } ;;
    *)
      [ "$kind" != "unknown" ] || { echo "  $path@$version: unrecognised license (${lics[0]})" >&2; bad=1; continue; } ;;
  esac
  KINDS[$kind]=$(( ${KINDS[$kind]:-0} + 1 ))
done
[ "$bad" -eq 0 ] || fail "license check failed (see above); refusing to build"
summary=""; for k in $(printf '%s\n' "${!KINDS[@]}" | sort); do summary+="${summary:+, }$k ${KINDS[$k]}"; done
echo "build-prometheus.sh: [$STEP] ok: ${#LINKED[@]} modules ($summary); $prom_mods prometheus modules Apache-2.0; no BUSL"

# --- web UI assets -------------------------------------------------------------
STEP="web UI assets"
MODULE_SRC="$("$GO" list -m -f '{{.Dir}}' github.com/prometheus/prometheus)" \
  || fail "cannot find github.com/prometheus/prometheus@$VERSION in the module cache"
start=$SECONDS
ASSETS="$("$OPS_DIR/prometheus/ui/build-assets.sh" "$MODULE_SRC" "$UI_CACHE" | tail -n1)" \
  || fail "building the web UI assets failed (see above)"
if [ ! -f "$ASSETS/embed.go" ] || [ "$(basename "$ASSETS")" != "$UI_KEY" ]; then
  fail "build-assets.sh did not produce $UI_CACHE/$UI_KEY/embed.go"
fi
echo "build-prometheus.sh: [$STEP] $ASSETS ($((SECONDS - start))s)"

STEP="module copy with assets"
rm -rf "$SRC_COPY"
cp -r "$MODULE_SRC" "$SRC_COPY"
chmod -R u+w "$SRC_COPY"
cp -r "$ASSETS/static/." "$SRC_COPY/web/ui/static/"
cp "$ASSETS/embed.go" "$SRC_COPY/web/ui/embed.go"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/build-prometheus.XXXXXX")"
# -modfile: the wrapper's go.mod plus one replace onto the copy; go.sum alongside
# (a directory replacement has no checksum; every other module is still verified).
cp "$MOD_DIR/go.mod" "$WORK/build.mod"
cp "$MOD_DIR/go.sum" "$WORK/build.sum"
printf '\nreplace github.com/prometheus/prometheus => %s\n' "$SRC_COPY" >>"$WORK/build.mod"

# --- build -------------------------------------------------------------------
STEP="go build"
BUILD_DATE="$("$GO" list -m -f '{{.Time.UTC.Format "20060102-15:04:05"}}' github.com/prometheus/prometheus)" \
  || fail "cannot read the release time of github.com/prometheus/prometheus@$VERSION"
MODCACHE="$("$GO" env GOMODCACHE)"
INFO="$MODCACHE/cache/download/github.com/prometheus/prometheus/@v/$VERSION.info"
GIT_COMMIT="$(sed -nE 's/.*"Hash":"([0-9a-f]+)".*/\1/p' "$INFO" 2>/dev/null || true)"  # the proxy's .info often has none
V="github.com/prometheus/common/version"
LDFLAGS="-s -w -X $V.Version=$PROM_VERSION -X $V.Branch=HEAD -X $V.BuildUser=$BUILD_USER"
LDFLAGS+=" -X $V.BuildDate=$BUILD_DATE"
[ -z "$GIT_COMMIT" ] || LDFLAGS+=" -X $V.Revision=$GIT_COMMIT"
mkdir -p "$BIN_DIR" "$WORK/bin"
echo "build-prometheus.sh: [$STEP] prometheus + promtool $PROM_VERSION (module $VERSION, -tags builtinassets) -> $BIN_DIR (-p $JOBS)"
start=$SECONDS
nice -n 10 "$GO" build -modfile="$WORK/build.mod" -p "$JOBS" -trimpath -tags builtinassets \
  -ldflags "$LDFLAGS" -o "$WORK/bin/" "$PKG" "$PROMTOOL_PKG" || fail "go build failed"
tmp="$WORK/bin/prometheus"
tmp_tool="$WORK/bin/promtool"
echo "build-prometheus.sh: [$STEP] done in $((SECONDS - start))s ($(( $(stat -c %s "$tmp") / 1048576 )) MiB)"

# --- verify (before installing) ----------------------------------------------
STEP="verify version"
built_as "$tmp_tool" "$WANT_TOOL" || fail "built promtool reports '$("$tmp_tool" --version 2>&1 | head -n1)'"
have="$("$tmp" --version 2>&1)" || fail "'prometheus --version' failed"
[[ "$have" =~ tags:[[:space:]]+([^[:space:]]*,)?builtinassets ]] || fail "built binary lacks the builtinassets tag: $have"
have="${have%%$'\n'*}"
[ "${have#"$WANT"}" != "$have" ] || fail "built binary reports '$have', expected '${WANT}...'"

STEP="verify start with consul_sd_configs"
# The project's real config; Consul "server" on 127.0.0.1:1 (closed): discovery
# just logs errors, the server must still load the config and become ready.
sed -e 's/__CONSUL_ADDR__/127.0.0.1:1/g' -e 's/__SCRAPE_INTERVAL__/1s/g' \
  -e "s#__RULES_DIR__#$OPS_DIR/prometheus/rules#g" "$CONFIG_IN" >"$WORK/prometheus.yml"
# Port 0: the kernel picks a free port; Prometheus logs the address it listens on.
# (The log exists before the background child opens it: the loop below reads it at once.)
: >"$WORK/log"
"$tmp" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
  --web.listen-address=127.0.0.1:0 >"$WORK/log" 2>&1 &
PROM_PID=$!
addr=""; ready=""
for _ in $(seq 1 300); do  # up to 30s
  kill -0 "$PROM_PID" 2>/dev/null || break
  [ -n "$addr" ] || addr="$(sed -nE 's/.*msg="?Listening on"? .*address=([0-9.]+:[0-9]+).*/\1/p' "$WORK/log" | head -n1)"
  if [ -n "$addr" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/-/ready" || true)" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  why="did not answer 200 on /-/ready within 30s (listen address '${addr:-unknown}')"
  kill -0 "$PROM_PID" 2>/dev/null || why="exited before /-/ready answered (config rejected?)"
  echo "--- prometheus log (tail) ---" >&2; tail -n 20 "$WORK/log" >&2 || true
  fail "new binary $why"
fi
q="$(curl -sf "http://$addr/api/v1/query?query=vector(1)" || true)"
case "$q" in *'"status":"success"'*) ;; *) fail "/api/v1/query did not succeed: ${q:-no answer}" ;; esac
page="$(curl -sf "http://$addr/graph" || true)"
case "$page" in *'<div id="root">'*) ;; *) fail "/graph does not serve the React app: ${page:0:200}" ;; esac
kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; PROM_PID=""

mv -f "$tmp_tool" "$PROMTOOL"
mv -f "$tmp" "$BIN"
echo "build-prometheus.sh: ok: $BIN ($have; web UI built in; consul_sd config loads, /-/ready, /api/v1/query and /graph answer) and $PROMTOOL"
