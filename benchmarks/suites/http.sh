#!/usr/bin/env bash
# Suite http: one HTTP service answering a small GET, on loopback, under wrk.
#   nginx           `return 200 "hello"`, N worker processes (the baseline)
#   coromesh-hello  hello-svc's plain route GET /hello, --threads N, metrics on
#   coromesh-add    add-svc's declared operation GET /api/v1/execute?l=2&r=3 (typed
#                   binding, QoS chain, metrics), --threads N
#   beast-raw       benchmarks/peers/beast_raw_server: Beast + coroutines, no framework
#   go-nethttp      benchmarks/peers/go-hello: net/http, GOMAXPROCS=N
# Cases conns=1,10,100,1000 x threads=1,2 (server threads; wrk runs 2 threads, 1 for
# a single connection). Each round starts every server afresh for each thread count,
# then measures every subject at each connection count in turn (A B C D E, A B ...).
# Figures: req_per_s, p50/p99/p999_ms, cpu_s_per_100k (server CPU time per 100,000
# requests), rss_mib (during the run). Goals: hello >= 1.0x nginx's req/s at no worse
# p99, at every connection count.
# bench-targets: hello-svc add-svc beast_raw_server go-hello
# bench-minutes-per-round: 5
set -euo pipefail
suite=http
# shellcheck source=../lib/suite.sh
source "$COROMESH_ROOT/benchmarks/lib/suite.sh"

if [ "$BENCH_MODE" = short ]; then
  conns_list=(1 100) threads_list=(1) seconds=1
else
  conns_list=(1 10 100 1000) threads_list=(1 2) seconds=6
fi
subjects=(nginx coromesh-hello coromesh-add beast-raw go-nethttp)
for bin in hello-svc add-svc beast_raw_server go-hello; do
  [ -x "$BENCH_BIN/$bin" ] || die "missing $BENCH_BIN/$bin (benchmarks/run.sh builds it)"
done

sample_header
bench_baseline nginx
for threads in "${threads_list[@]}"; do
  bench_goal req_per_s coromesh-hello 'ratio>=' 1.0 "case=*,threads=$threads"
  bench_goal p99_ms coromesh-hello 'ratio<=' 1.0 "case=*,threads=$threads"
done

declare -A port pid path
# start_subjects THREADS: every server with THREADS threads on fresh ports.
start_subjects() {
  local n="$1" p
  read -ra p < <(free_ports 5 "$work/ports-given")
  port[nginx]=${p[0]} port[coromesh-hello]=${p[1]} port[coromesh-add]=${p[2]}
  port[beast-raw]=${p[3]} port[go-nethttp]=${p[4]}
  path[nginx]=/ path[coromesh-hello]=/hello path[coromesh-add]='/api/v1/execute?l=2&r=3'
  path[beast-raw]=/ path[go-nethttp]=/
  start_nginx_hello "$n" "${port[nginx]}"
  pid[nginx]=$started
  local common=(--threads "$n" --consul-register=false --log-level warn)
  suite_start "hello-$n" "$BENCH_BIN/hello-svc" --port "${port[coromesh-hello]}" "${common[@]}"
  pid[coromesh-hello]=$started
  suite_start "add-$n" "$BENCH_BIN/add-svc" --port "${port[coromesh-add]}" "${common[@]}"
  pid[coromesh-add]=$started
  suite_start "beast-$n" "$BENCH_BIN/beast_raw_server" --port "${port[beast-raw]}" --threads "$n"
  pid[beast-raw]=$started
  suite_start "go-$n" env GOMAXPROCS="$n" "$BENCH_BIN/go-hello" -port "${port[go-nethttp]}"
  pid[go-nethttp]=$started
  for s in "${subjects[@]}"; do
    wait_http "${port[$s]}" "${path[$s]}" 30 "${pid[$s]}" ||
      die "$s did not answer GET ${path[$s]} on 127.0.0.1:${port[$s]} within 30 s; logs:
$(tail -n 5 "$work"/*.log)"
  done
  # Warm-up: connections, caches, Go's and glibc's heaps.
  for s in "${subjects[@]}"; do
    wrk -t 2 -c 100 -d 1s "http://127.0.0.1:${port[$s]}${path[$s]}" >/dev/null 2>&1 || true
  done
}

for ((round = 1; round <= BENCH_ROUNDS; round++)); do
  for threads in "${threads_list[@]}"; do
    start_subjects "$threads"
    for conns in "${conns_list[@]}"; do
      for s in "${subjects[@]}"; do
        log "round $round/$BENCH_ROUNDS, threads=$threads, conns=$conns: $s"
        measure_wrk "conns=$conns,threads=$threads" "$s" "$round" \
          "http://127.0.0.1:${port[$s]}${path[$s]}" "$conns" "$seconds" "${pid[$s]}" ||
          die "$s at $conns connections, $threads thread(s): no usable measurement"
      done
    done
    suite_stop "${pid[@]}"
  done
done
