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
#                                       p99_ms, p999_ms); fails when wrk served nothing or
#                                       more than 1% of the requests failed
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
  # latency_summary requests errors seconds p50_us p99_us p999_us
  local _ requests errors seconds p50 p99 p999
  read -r _ requests errors seconds p50 p99 p999 <<<"$line"
  if [ "$requests" -eq 0 ] || [ $((errors * 100)) -gt "$requests" ]; then
    echo "wrk_samples: $subject at $case: $errors errors in $requests requests ($raw)" >&2
    return 1
  fi
  sample "$case" "$subject" "$round" req_per_s "$(awk -v n="$requests" -v s="$seconds" 'BEGIN {printf "%.1f", n / s}')" "1/s"
  sample "$case" "$subject" "$round" p50_ms "$(awk -v v="$p50" 'BEGIN {printf "%.4f", v / 1000}')" ms
  sample "$case" "$subject" "$round" p99_ms "$(awk -v v="$p99" 'BEGIN {printf "%.4f", v / 1000}')" ms
  sample "$case" "$subject" "$round" p999_ms "$(awk -v v="$p999" 'BEGIN {printf "%.4f", v / 1000}')" ms
}

bench_baseline() { echo "$1" >"$BENCH_OUT/baseline"; }

bench_goal() {
  local IFS=$'\t'
  echo "$*" >>"$BENCH_OUT/goals.tsv"
}
