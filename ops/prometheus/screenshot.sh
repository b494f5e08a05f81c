#!/usr/bin/env bash
# Looks at a web page the way a person would: headless Chromium (Debian's `chromium`,
# installed by ./ops/setup.sh) loads it, runs its JavaScript, and then
#   ops/prometheus/screenshot.sh URL OUT.png [WIDTHxHEIGHT]   saves a screenshot (default 1400x900)
#   ops/prometheus/screenshot.sh --dump-dom URL               prints the rendered DOM
# e.g. ops/prometheus/screenshot.sh http://127.0.0.1:9090/targets prometheus-targets.png
#
# The page gets up to COROMESH_SCREENSHOT_BUDGET_MS (default 10000) of virtual time to
# fetch its data and render; Chromium is stopped after 120s of wall time whatever
# happens. A fresh profile directory per run, so parallel runs do not share a lock.
set -euo pipefail

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
mode=screenshot
if [ "${1:-}" = "--dump-dom" ]; then
  mode=dom
  shift
  [ $# -eq 1 ] || usage
  url="$1"
else
  if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
  url="$1"
  out="$2"
  size="${3:-1400x900}"
  [[ "$size" =~ ^([0-9]+)x([0-9]+)$ ]] || { echo "screenshot.sh: size '$size' is not WIDTHxHEIGHT" >&2; exit 2; }
  window="${BASH_REMATCH[1]},${BASH_REMATCH[2]}"
fi

chromium="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$chromium" ] || { echo "screenshot.sh: chromium not found (./ops/setup.sh installs Debian's chromium)" >&2; exit 1; }

profile="$(mktemp -d "${TMPDIR:-/tmp}/coromesh-chromium.XXXXXX")"
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: Chromium refuses to run as root with its sandbox (CI runs as root);
# the pages loaded are the project's own, on loopback.
flags=(--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars
  --no-first-run --no-default-browser-check --disable-extensions --mute-audio
  --user-data-dir="$profile" --virtual-time-budget="${COROMESH_SCREENSHOT_BUDGET_MS:-10000}")

if [ "$mode" = dom ]; then
  timeout 120 "$chromium" "${flags[@]}" --dump-dom "$url" 2>"$profile/chromium.log" || {
    tail -n 20 "$profile/chromium.log" >&2; echo "screenshot.sh: chromium failed on $url" >&2; exit 1; }
  exit 0
fi

case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"
rm -f "$out"
timeout 120 "$chromium" "${flags[@]}" --window-size="$window" --screenshot="$out" "$url" \
  >"$profile/chromium.log" 2>&1 || true  # judged by the file below
if [ ! -s "$out" ] || [ "$(head -c 8 "$out" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then
  tail -n 20 "$profile/chromium.log" >&2
  echo "screenshot.sh: chromium wrote no PNG for $url" >&2
  exit 1
fi
echo "screenshot.sh: $out ($(stat -c %s "$out") bytes, $size) of $url"
