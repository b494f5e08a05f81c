# shellcheck shell=bash
# The samples file of a benchmarks/run.sh suite (sourced by benchmarks/suites/*.sh).
# The interface (BENCH_MODE, BENCH_ROUNDS, BENCH_OUT, BENCH_BIN, COROMESH_ROOT, the
# columns below) is described in benchmarks/README.md; benchmarks/lib/summarize.py
# reads what these helpers write.
#
#   sample_header                       starts $BENCH_OUT/samples.tsv (and $BENCH_OUT/raw/)
#   sample CASE SUBJECT ROUND METRIC VALUE UNIT
#                                       appends one measured figure
#   wrk_samples CASE SUBJECT ROUND RAW  the figures of one wrk run made with
#                                       benchmarks/lib/latency.lua (req_per_s, p50_ms,
#                                       p99_ms, p999_ms; req_per_s counts 2xx/3xx answers,
#                                       others are non_2xx_per_s); fails when wrk served
#                                       nothing or more than 1% of the requests met a
#                                       socket error
#   bench_baseline SUBJECT              writes $BENCH_OUT/baseline
#   bench_goal METRIC SUBJECT OP VALUE [vs=SUBJECT] [case=GLOB]
#                                       appends a goal to $BENCH_OUT/goals.tsv
#
# CASE is "<x-name>=<x-number>" (conns=100), optionally followed by ",<name>=<value>"
# pairs that split the series (conns=100,threads=2: one table and plot per threads).

: "${BENCH_OUT:?BENCH_OUT is not set: suites are run by benchmarks/run.sh}"

sample_header() {
  mkdir -p "$BENCH_OUT/raw"
  printf 'case\tsubject\tround\tmetric\tvalue\tunit\n' >"$BENCH_OUT/samples.tsv"
}

sample() {
  [ $# -eq 6 ] || { echo "sample: 6 arguments expected, got $#: $*" >&2; return 1; }
  [ -f "$BENCH_OUT/samples.tsv" ] || { echo "sample: call sample_header first" >&2; return 1; }
  [[ "$5" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
    { echo "sample: $2 $4 at $1: '$5' is not a number" >&2; return 1; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_OUT/samples.tsv"
}

wrk_samples() {
  local case="$1" subject="$2" round="$3" raw="$4" line
  line=$(grep '^latency_summary ' "$raw" | tail -1) ||
    { echo "wrk_samples: $subject at $case: no summary in $raw (wrk failed?):" >&2; tail -5 "$raw" >&2; return 1; }
  # latency_summary requests errors seconds p50_us p99_us p999_us non_2xx
  local _ requests errors seconds p50 p99 p999 non_2xx
  read -r _ requests errors seconds p50 p99 p999 non_2xx <<<"$line"
  if [ "$requests" -eq "$non_2xx" ] || [ $(((errors - non_2xx) * 100)) -gt "$requests" ]; then
    echo "wrk_samples: $subject at $case: $requests requests, $non_2xx answered other than" \
      "2xx/3xx, $((errors - non_2xx)) socket errors ($raw)" >&2
    return 1
  fi
  # Answers other than 2xx/3xx (a declared rate limit's 429) are not counted as served.
  sample "$case" "$subject" "$round" req_per_s \
    "$(awk -v n="$((requests - non_2xx))" -v s="$seconds" 'BEGIN {printf "%.1f", n / s}')" "1/s"
  [ "$non_2xx" -eq 0 ] || sample "$case" "$subject" "$round" non_2xx_per_s \
    "$(awk -v n="$non_2xx" -v s="$seconds" 'BEGIN {printf "%.1f", n / s}')" "1/s"
  sample "$case" "$subject" "$round" p50_ms "$(awk -v v="$p50" 'BEGIN {printf "%.4f", v / 1000}')" ms
  sample "$case" "$subject" "$round" p99_ms "$(awk -v v="$p99" 'BEGIN {printf "%.4f", v / 1000}')" ms
  sample "$case" "$subject" "$round" p999_ms "$(awk -v v="$p999" 'BEGIN {printf "%.4f", v / 1000}')" ms
}

bench_baseline() { echo "$1" >"$BENCH_OUT/baseline"; }

bench_goal() {
  local IFS=$'\t'
  echo "$*" >>"$BENCH_OUT/goals.tsv"
}
