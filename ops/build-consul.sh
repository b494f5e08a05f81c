#!/usr/bin/env bash
# Build the real HashiCorp Consul agent (MPL-2.0) from Go modules into
# ops/.tools/bin/consul, using the wrapper module in ops/consul/ (see
# ops/consul/go.mod for why the wrapper exists and why this Consul version).
#
# Idempotent: if ops/.tools/bin/consul already reports the pinned version, it
# exits 0 at once. Otherwise it downloads the modules (Go module proxy, verified
# against sum.golang.org), checks the licenses of every github.com/hashicorp/*
# module in the build list (Consul itself and its submodules must be MPL-2.0;
# nothing may be Business Source License), then builds.
#
# Environment overrides: GO (go binary), BUILD_JOBS (go build -p, default 2).
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MOD_DIR="$OPS_DIR/consul"
BIN_DIR="$OPS_DIR/.tools/bin"
BIN="$BIN_DIR/consul"

STEP="init"
REPORTED=0
fail() { echo "build-consul.sh: ERROR in step '$STEP': $*" >&2; REPORTED=1; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || [ $REPORTED -eq 1 ] || echo "build-consul.sh: ERROR in step '\''$STEP'\'' (exit $rc)" >&2' EXIT

# shellcheck source=lib/go_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go_env.sh"

# --- pinned version: single source of truth is ops/consul/go.mod -------------
STEP="read pinned version"
VERSION="$(sed -nE 's#^[[:space:]]*github\.com/hashicorp/consul[[:space:]]+(v[0-9][^[:space:]]*).*#\1#p' "$MOD_DIR/go.mod" | head -n1)"
[ -n "$VERSION" ] || fail "cannot find 'github.com/hashicorp/consul vX.Y.Z' in $MOD_DIR/go.mod"
WANT="Consul $VERSION"

# --- fast path ---------------------------------------------------------------
STEP="check existing binary"
if [ -x "$BIN" ]; then
  have="$("$BIN" version 2>/dev/null || true)"; have="${have%%$'\n'*}"  # first line; no pipe (SIGPIPE + pipefail)
  if [ "$have" = "$WANT" ]; then
    echo "build-consul.sh: $BIN is up to date ($have)"
    exit 0
  fi
  echo "build-consul.sh: existing binary reports '${have:-<nothing>}', want '$WANT'; rebuilding"
fi

cd "$MOD_DIR"

# --- download ----------------------------------------------------------------
STEP="go mod download"
echo "build-consul.sh: [$STEP] $("$GO" version)"
"$GO" mod download || fail "go mod download failed (module proxy / checksum database?)"
"$GO" mod verify >/dev/null || fail "go mod verify failed: module cache content does not match go.sum"

# --- license check -----------------------------------------------------------
STEP="license check"
echo "build-consul.sh: [$STEP] github.com/hashicorp/* modules in the build list"
# hashicorp-owned modules in Consul's dependency tree that are open source but
# not MPL-2.0 (they are forks of / derived from MIT, BSD or Apache projects).
# Each is allowed only under exactly this license; everything else must be MPL-2.0.
declare -A NON_MPL_OK=(
  [github.com/hashicorp/go-hclog]=MIT
  [github.com/hashicorp/go-msgpack]=BSD-3-Clause
  [github.com/hashicorp/go-msgpack/v2]=MIT
  [github.com/hashicorp/go-syslog]=MIT
  [github.com/hashicorp/mdns]=MIT
  [github.com/hashicorp/net-rpc-msgpackrpc/v2]=MIT
  [github.com/hashicorp/vic]=Apache-2.0
)
license_kind() { # $1 = license file -> MPL-2.0 | MIT | BSD-3-Clause | Apache-2.0 | BUSL | unknown
  local f="$1"
  if grep -qiE 'Business Source License|BUSL-1\.1' "$f"; then echo BUSL
  elif grep -qE 'Mozilla Public License,? [Vv]ersion 2\.0' "$f"; then echo MPL-2.0
  elif grep -qE 'Apache License' "$f" && grep -qE 'Version 2\.0' "$f"; then echo Apache-2.0
  elif grep -qE 'Permission is hereby granted, free of charge' "$f"; then echo MIT
  elif grep -qE 'Redistribution and use in source and binary forms' "$f" \
       && grep -qiE 'Neither the name' "$f"; then echo BSD-3-Clause
  else echo unknown
  fi
}
mapfile -t HC_MODS < <("$GO" list -m -f '{{if not .Main}}{{.Path}}@{{.Version}}{{end}}' all | grep '^github\.com/hashicorp/' || true)
[ "${#HC_MODS[@]}" -gt 0 ] || fail "no github.com/hashicorp/* modules in the build list (go list -m all failed?)"
# make sure every one of them is in the module cache, even those only needed for go.mod
"$GO" mod download "${HC_MODS[@]}" || fail "cannot download all github.com/hashicorp/* modules of the build list"
bad=0; checked=0
while read -r path version dir; do
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "  $path@$version: module not in cache (Dir empty)" >&2; bad=1; continue; }
  lic="$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'LICENCE*' -o -iname 'COPYING*' \) | sort | head -n1)"
  if [ -z "$lic" ]; then echo "  $path@$version: NO LICENSE FILE in $dir" >&2; bad=1; continue; fi
  kind="$(license_kind "$lic")"
  want="MPL-2.0"
  case "$path" in
    github.com/hashicorp/consul|github.com/hashicorp/consul/*) want="MPL-2.0" ;;  # never an exception
    *) [ -n "${NON_MPL_OK[$path]:-}" ] && want="${NON_MPL_OK[$path]}" ;;
  esac
  if [ "$kind" != "$want" ]; then
    echo "  $path@$version: license is $kind, required $want ($lic)" >&2; bad=1; continue
  fi
  checked=$((checked + 1))
done < <("$GO" list -m -f '{{.Path}} {{.Version}} {{.Dir}}' "${HC_MODS[@]}")
[ "$bad" -eq 0 ] || fail "license check failed (see above); refusing to build"
echo "build-consul.sh: [$STEP] ok: $checked hashicorp modules (consul + submodules MPL-2.0, no BUSL)"

# --- build -------------------------------------------------------------------
STEP="go build"
MODCACHE="$("$GO" env GOMODCACHE)"
INFO="$MODCACHE/cache/download/github.com/hashicorp/consul/@v/$VERSION.info"
GIT_COMMIT="$(sed -nE 's/.*"Hash":"([0-9a-f]+)".*/\1/p' "$INFO" 2>/dev/null || true)"
BUILD_DATE="$("$GO" list -m -f '{{.Time.Format "2006-01-02T15:04:05Z"}}' github.com/hashicorp/consul)"
LDFLAGS="-s -w -X github.com/hashicorp/consul/version.GitCommit=${GIT_COMMIT:-unknown}"
LDFLAGS+=" -X github.com/hashicorp/consul/version.BuildDate=$BUILD_DATE"
# The version string itself comes from Consul's embedded version/VERSION file
# ("1.15.4" at the v1.15.4 tag, no "-dev"); Version/VersionPrerelease are
# computed at init time, so -X could not set them anyway. Checked below.
mkdir -p "$BIN_DIR"
tmp="$BIN.tmp.$$"
echo "build-consul.sh: [$STEP] consul $VERSION (commit ${GIT_COMMIT:-unknown}) -> $BIN (-p $JOBS)"
start=$SECONDS
if ! nice -n 10 "$GO" build -p "$JOBS" -trimpath -ldflags "$LDFLAGS" -o "$tmp" .; then
  rm -f "$tmp"; fail "go build failed"
fi
mv -f "$tmp" "$BIN"
echo "build-consul.sh: [$STEP] done in $((SECONDS - start))s"

# --- verify ------------------------------------------------------------------
STEP="verify binary"
have="$("$BIN" version)" || fail "'$BIN version' failed"
have="${have%%$'\n'*}"
[ "$have" = "$WANT" ] || fail "built binary reports '$have', expected '$WANT'"
echo "build-consul.sh: ok: $BIN ($have)"
