#!/usr/bin/env bash
# Suite sidecar: wrk through a pair of proxies (outbound and inbound, mutual TLS
# between them) in front of one nginx backend, by benchmarks/load/sidecar_pairs.sh:
#   consul          `consul connect proxy` pair (the baseline)
#   nginx-tls       nginx stream TLS origination -> termination, one worker
#   coromesh-tcp    coromesh-sidecar pair, tcp upstream listener
#   coromesh-http   coromesh-sidecar pair, http upstream listener
#   direct          wrk -> backend: the limit
# Cases conns=50 and conns=5 (keep-alive, wrk -t2; full mode 10 s per run); each round
# measures every path in turn, then new connections per second ("Connection: close")
# at 5 connections. Figures: req_per_s, p50/p99/p999_ms, cpu_s_per_100k and rss_mib of
# both proxies, added_p50_ms / added_p99_ms over direct, conn_per_s.
# Goals: our pairs >= 1.5x Consul's req/s and >= 1.0x nginx stream TLS's.
# bench-targets: coromesh-sidecar
# bench-minutes-per-round: 2.5
set -euo pipefail
suite=sidecar
# shellcheck source=../lib/suite.sh
source "$COROMESH_ROOT/benchmarks/lib/suite.sh"

sidecar_bin="$BENCH_BIN/coromesh-sidecar"
[ -x "$sidecar_bin" ] || die "missing $sidecar_bin (benchmarks/run.sh builds it)"
args=(--rounds "$BENCH_ROUNDS" --export "$BENCH_OUT/raw" --hold 0)
if [ "$BENCH_MODE" = short ]; then
  args+=(--short --rounds "$BENCH_ROUNDS" --hold 0)
else
  args+=(--out "$BENCH_OUT/raw/sidecar_pairs.txt")
fi
SIDECAR_BIN="$sidecar_bin" "$COROMESH_ROOT/benchmarks/load/sidecar_pairs.sh" "${args[@]}" ||
  die "sidecar_pairs.sh failed (its output is above)"
for pair in coromesh-tcp coromesh-http; do
  grep -q "	$pair	" "$BENCH_OUT/raw/rounds.tsv" ||
    die "the $pair pair was not measured (see NOT MEASURED above)"
done

sample_header
python3 "$COROMESH_ROOT/benchmarks/load/lib/pairs_to_samples.py" "$BENCH_OUT/raw" \
  >>"$BENCH_OUT/samples.tsv"
bench_baseline consul
for pair in coromesh-tcp coromesh-http; do
  bench_goal req_per_s "$pair" 'ratio>=' 1.5
  bench_goal req_per_s "$pair" 'ratio>=' 1.0 vs=nginx-tls
done
