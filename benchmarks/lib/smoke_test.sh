#!/usr/bin/env bash
# The ctest benchmark.run_smoke: benchmarks/run.sh --short against the test build,
# writing into a temporary results root (never into the source tree), then checks
# that it produced the summary, a plot per suite and each suite's samples.
#   smoke_test.sh BUILD_DIR SUITE...
set -euo pipefail
build_dir="$1"
shift
root="$(cd "$(dirname "$0")/../.." && pwd)"
results=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX")
trap 'rm -rf "$results"' EXIT
"$root/benchmarks/run.sh" --short --results-root "$results" --build-dir "$build_dir" "$@"
day=$(find "$results" -mindepth 1 -maxdepth 1 -type d | head -1)
fail() { echo "benchmark smoke: $*" >&2; exit 1; }
[ -s "$day/summary.md" ] || fail "no summary.md in $day"
for suite in "$@"; do
  [ "$(wc -l <"$day/$suite/samples.tsv")" -gt 1 ] || fail "suite $suite: no samples"
  grep -q "^## $suite\$" "$day/summary.md" || fail "summary.md has no section for $suite"
  compgen -G "$day/plots/$suite-*.png" >/dev/null || fail "no plot of suite $suite in $day/plots"
  file_type=$(head -c 8 "$(compgen -G "$day/plots/$suite-*.png" | head -1)" | od -An -c | tr -d ' ')
  [ "$file_type" = '211PNG\r\n032\n' ] || fail "$suite's plot is not a PNG ($file_type)"
done
echo "benchmark smoke: summary.md and plots for: $*"
sed -n '1,/^## /p' "$day/summary.md"
