#!/usr/bin/env bash
# Builds Prometheus's React web UI (Graph, Targets, Alerts, ...) from the sources in
# its Go module and prepares them for embedding, the way upstream's own build does
# (Makefile `assets` + scripts/compress_assets.sh): `npm ci` and `npm run build` in
# web/ui, gzip every file under web/ui/static, and web/ui/embed.go (embed.go.tmpl plus
# a //go:embed line listing the .gz files) for the `builtinassets` build tag.
#
#   build-assets.sh MODULE_DIR CACHE_ROOT
#     MODULE_DIR  github.com/prometheus/prometheus@vX.Y.Z in the Go module cache (read-only)
#     CACHE_ROOT  where built assets are kept, one directory per key
#   Prints, as the last line on stdout, CACHE_ROOT/<key>: a directory holding
#   static/ (the .gz files, same layout as web/ui/static) and embed.go, ready to be
#   laid over a copy of web/ui. The key is the module version plus a hash of this
#   directory's inputs, so a rerun with the same inputs is instant.
#   build-assets.sh --key VERSION
#     prints the key only (build-prometheus.sh stamps it into the binary, so that a
#     change here makes its fast path rebuild).
#
# One gap is filled here: Go module zips leave out every vendor/ directory, so the
# module lacks web/ui/react-app/src/vendor/flot/ (the Flot charting library the Graph
# page requires). Flot 0.8.3 comes from the npm registry, pinned by package-lock.json
# beside this script, and jquery.flot.heatmap.js (the heatmap display mode) is our own.
#
# Needs node >= 20 and npm (Debian 13's nodejs/npm, or any), and the npm registry.
set -euo pipefail

UI_INPUTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
assets_key() { # VERSION
  local inputs_hash
  inputs_hash="$(cd "$UI_INPUTS" && cat package.json package-lock.json jquery.flot.heatmap.js build-assets.sh \
    | sha256sum)" || return 1
  echo "$1-${inputs_hash:0:12}"
}
if [ "${1:-}" = "--key" ]; then
  assets_key "${2:?usage: build-assets.sh --key VERSION}"
  exit
fi
MODULE_DIR="${1:?usage: build-assets.sh MODULE_DIR CACHE_ROOT}"
CACHE_ROOT="${2:?usage: build-assets.sh MODULE_DIR CACHE_ROOT}"
FLOT_FILES=(jquery.flot.js jquery.flot.stack.js jquery.flot.time.js jquery.flot.crosshair.js
  jquery.flot.selection.js)

STEP="init"
WORK=""
fail() { echo "build-assets.sh: ERROR in step '$STEP': $*" >&2; exit 1; }
log() { echo "build-assets.sh: $*" >&2; }
trap '[ -z "$WORK" ] || rm -rf "$WORK"' EXIT

STEP="inputs"
[ -f "$MODULE_DIR/web/ui/package-lock.json" ] || fail "$MODULE_DIR/web/ui/package-lock.json not found"
version="$(basename "$MODULE_DIR")"; version="${version##*@}"
OUT="$CACHE_ROOT/$(assets_key "$version")"
if [ -f "$OUT/embed.go" ]; then
  log "cached: $OUT"
  echo "$OUT"
  exit 0
fi
{ command -v node && command -v npm; } >/dev/null || fail "node and npm are needed (apt-get install nodejs npm)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || fail "node $(node --version) is too old: Prometheus's web UI needs node >= 20"

mkdir -p "$CACHE_ROOT"
WORK="$(mktemp -d "$CACHE_ROOT/.work.XXXXXX")"
cp -r "$MODULE_DIR/web/ui" "$WORK/ui"
chmod -R u+w "$WORK/ui" # the module cache is read-only

STEP="flot from npm"
mkdir -p "$WORK/flot"
cp "$UI_INPUTS/package.json" "$UI_INPUTS/package-lock.json" "$WORK/flot/"
(cd "$WORK/flot" && npm ci --no-audit --no-fund --loglevel=error >&2) || fail "npm ci (flot 0.8.3) failed"
vendor="$WORK/ui/react-app/src/vendor/flot"
mkdir -p "$vendor"
for f in "${FLOT_FILES[@]}"; do
  cp "$WORK/flot/node_modules/flot/$f" "$vendor/" || fail "flot 0.8.3 has no $f"
done
cp "$UI_INPUTS/jquery.flot.heatmap.js" "$vendor/"

STEP="npm ci"
log "[$STEP] web/ui of prometheus $version ($(node --version), npm $(npm --version))"
start=$SECONDS
(cd "$WORK/ui" && nice -n 10 npm ci --no-audit --no-fund --loglevel=error >&2) || fail "npm ci in web/ui failed"
log "[$STEP] done in $((SECONDS - start))s"

STEP="npm run build"
start=$SECONDS
# CI="" as upstream's Makefile (CRA would turn warnings into errors); the ESLint
# plugin is off because stock Flot 0.8.3 uses the global jQuery the app sets up in
# src/globals.ts, which CRA's lint rules reject (TypeScript checking stays on).
(cd "$WORK/ui" && CI="" DISABLE_ESLINT_PLUGIN=true GENERATE_SOURCEMAP=false \
  nice -n 10 npm run build >&2) || fail "npm run build in web/ui failed (see above)"
[ -f "$WORK/ui/static/react/index.html" ] || fail "the build left no static/react/index.html"
log "[$STEP] done in $((SECONDS - start))s"

STEP="compress"
# As upstream's scripts/compress_assets.sh: every file under static/ gzipped, and the
# //go:embed list names exactly those .gz files.
cd "$WORK/ui"
find static -type f -name '*.gz' -delete
find static -type f -exec gzip -9 -n '{}' ';'
mapfile -t gz < <(find static -type f -name '*.gz' | LC_ALL=C sort)
[ "${#gz[@]}" -gt 0 ] || fail "nothing to embed"
{
  cat embed.go.tmpl
  echo "//go:embed ${gz[*]}"
  echo "var EmbedFS embed.FS"
} >embed.go

STEP="install"
mkdir -p "$WORK/out"
mv static embed.go "$WORK/out/"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
log "ok: $OUT (${#gz[@]} files, $(du -sh "$OUT" | cut -f1))"
echo "$OUT"
