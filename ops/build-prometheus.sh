#!/usr/bin/env bash
# Build the real upstream Prometheus server (Apache-2.0) from Go modules into
# ops/.tools/bin/prometheus, using the wrapper module in ops/prometheus/build/
# (see its go.mod for why the wrapper exists and why this version). Debian 12's
# `prometheus` package is built without Consul service discovery, which the
# project's ops/prometheus/prometheus.yml.in needs (consul_sd_configs).
#
# Idempotent: if ops/.tools/bin/prometheus already reports the pinned version, it
# exits 0 at once. Otherwise it downloads the modules the binary is built from
# (Go module proxy, verified against go.sum / sum.golang.org), checks their
# licenses (Prometheus's own modules must be Apache-2.0; nothing may be Business
# Source License), builds cmd/prometheus (without the `builtinassets` tag: no
# embedded web UI, the HTTP API, /-/ready and scraping work), then starts the new
# binary on a loopback port with the project's consul_sd_configs config and
# checks /-/ready and /api/v1/query before installing it.
#
# Environment overrides: GO (go binary), BUILD_JOBS (go build -p, default 2).
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MOD_DIR="$OPS_DIR/prometheus/build"
CONFIG_IN="$OPS_DIR/prometheus/prometheus.yml.in"
BIN_DIR="$OPS_DIR/.tools/bin"
BIN="$BIN_DIR/prometheus"
PKG="github.com/prometheus/prometheus/cmd/prometheus"

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

# --- fast path ---------------------------------------------------------------
STEP="check existing binary"
if [ -x "$BIN" ]; then
  have="$("$BIN" --version 2>&1 || true)"; have="${have%%$'\n'*}"  # first line; no pipe (SIGPIPE + pipefail)
  if [ "${have#"$WANT"}" != "$have" ]; then
    echo "build-prometheus.sh: $BIN is up to date ($have)"
    exit 0
  fi
  echo "build-prometheus.sh: existing binary reports '${have:-<nothing>}', want Prometheus $PROM_VERSION; rebuilding"
fi

command -v curl >/dev/null || fail "curl is needed to verify the built binary"
[ -f "$CONFIG_IN" ] || fail "missing $CONFIG_IN"
cd "$MOD_DIR"

# --- download ----------------------------------------------------------------
# Only the modules that cmd/prometheus is compiled from (go list downloads them
# as needed, each checked against go.sum), not the whole ~550-module graph.
STEP="download modules"
echo "build-prometheus.sh: [$STEP] $("$GO" version)"
"$GO" mod download github.com/prometheus/prometheus \
  || fail "go mod download github.com/prometheus/prometheus@$VERSION failed (module proxy / checksum database?)"
linked="$("$GO" list -deps -f '{{with .Module}}{{.Path}} {{.Version}} {{.Dir}}{{end}}' "$PKG")" \
  || fail "go list -deps $PKG failed (module download or go.sum mismatch?)"
mapfile -t LINKED < <(sort -u <<<"$linked" | sed '/^$/d')
[ "${#LINKED[@]}" -gt 0 ] || fail "go list -deps $PKG listed no modules"
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

# --- build -------------------------------------------------------------------
STEP="go build"
BUILD_DATE="$("$GO" list -m -f '{{.Time.UTC.Format "20060102-15:04:05"}}' github.com/prometheus/prometheus)" \
  || fail "cannot read the release time of github.com/prometheus/prometheus@$VERSION"
MODCACHE="$("$GO" env GOMODCACHE)"
INFO="$MODCACHE/cache/download/github.com/prometheus/prometheus/@v/$VERSION.info"
GIT_COMMIT="$(sed -nE 's/.*"Hash":"([0-9a-f]+)".*/\1/p' "$INFO" 2>/dev/null || true)"  # the proxy's .info often has none
V="github.com/prometheus/common/version"
LDFLAGS="-s -w -X $V.Version=$PROM_VERSION -X $V.Branch=HEAD -X $V.BuildUser=coromesh/ops/build-prometheus.sh"
LDFLAGS+=" -X $V.BuildDate=$BUILD_DATE"
[ -z "$GIT_COMMIT" ] || LDFLAGS+=" -X $V.Revision=$GIT_COMMIT"
mkdir -p "$BIN_DIR"
tmp="$BIN.tmp.$$"
echo "build-prometheus.sh: [$STEP] prometheus $PROM_VERSION (module $VERSION) -> $BIN (-p $JOBS)"
start=$SECONDS
if ! nice -n 10 "$GO" build -p "$JOBS" -trimpath -ldflags "$LDFLAGS" -o "$tmp" "$PKG"; then
  rm -f "$tmp"; fail "go build failed"
fi
echo "build-prometheus.sh: [$STEP] done in $((SECONDS - start))s ($(( $(stat -c %s "$tmp") / 1048576 )) MiB)"

# --- verify (before installing) ----------------------------------------------
STEP="verify version"
have="$("$tmp" --version 2>&1)" || { rm -f "$tmp"; fail "'prometheus --version' failed"; }
have="${have%%$'\n'*}"
[ "${have#"$WANT"}" != "$have" ] || { rm -f "$tmp"; fail "built binary reports '$have', expected '${WANT}...'"; }

STEP="verify start with consul_sd_configs"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/build-prometheus.XXXXXX")"
# The project's real config; Consul "server" on 127.0.0.1:1 (closed): discovery
# just logs errors, the server must still load the config and become ready.
sed -e 's/__CONSUL_ADDR__/127.0.0.1:1/g' -e 's/__SCRAPE_INTERVAL__/1s/g' "$CONFIG_IN" >"$WORK/prometheus.yml"
# Port 0: the kernel picks a free port; Prometheus logs the address it listens on.
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
  rm -f "$tmp"; fail "new binary $why"
fi
q="$(curl -sf "http://$addr/api/v1/query?query=vector(1)" || true)"
case "$q" in *'"status":"success"'*) ;; *) rm -f "$tmp"; fail "/api/v1/query did not succeed: ${q:-no answer}" ;; esac
kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; PROM_PID=""

mv -f "$tmp" "$BIN"
echo "build-prometheus.sh: ok: $BIN ($have; consul_sd config loads, /-/ready and /api/v1/query answer)"
