#!/usr/bin/env bash
# Suite memory: the resident set (VmRSS, children included: nginx's workers) of each
# binary idle (case conns=0, 1 s after its first answer and a 1 s warm-up of wrk) and
# while it holds 1,000 keep-alive connections that each carried one request (conns=1000).
#   servers, one thread / worker each: nginx (the baseline), coromesh-hello (hello-svc),
#     coromesh-add (add-svc), coromesh-frontend (frontend, no upstreams: GET /ivt),
#     beast-raw, go-nethttp
#   proxies, by benchmarks/load/sidecar_pairs.sh (--rounds 0: only the idle and held
#     figures): coromesh-sidecar (tcp mode), consul-connect-proxy, each the larger
#     process of its pair; nginx-tls, the one nginx process holding both sides of the
#     stream TLS pair. Connections held through the pair: each proxy holds 1,000 on
#     each side.
# Goals (issues 3 and 9): hello and the sidecar idle under 16 MiB, the sidecar under
# 64 MiB holding 1,000 connections.
# bench-targets: hello-svc add-svc frontend beast_raw_server go-hello coromesh-sidecar
# bench-minutes-per-round: 1.5
set -euo pipefail
suite=memory
# shellcheck source=../lib/suite.sh
source "$COROMESH_ROOT/benchmarks/lib/suite.sh"

hold=1000
[ "$BENCH_MODE" = full ] || hold=200
held_case="conns=$hold"
for bin in hello-svc add-svc frontend beast_raw_server go-hello coromesh-sidecar; do
  [ -x "$BENCH_BIN/$bin" ] || die "missing $BENCH_BIN/$bin (benchmarks/run.sh builds it)"
done

sample_header
bench_baseline nginx
bench_goal rss_mib coromesh-hello '<' 16 case=conns=0
bench_goal rss_mib coromesh-sidecar '<' 16 case=conns=0
bench_goal rss_mib coromesh-sidecar '<' 64 "case=$held_case"

subjects=(nginx coromesh-hello coromesh-add coromesh-frontend beast-raw go-nethttp)
declare -A port pid path
start_servers() {
  local p common=(--threads 1 --consul-register=false --log-level warn)
  read -ra p < <(free_ports 6 "$work/ports-given")
  port[nginx]=${p[0]} port[coromesh-hello]=${p[1]} port[coromesh-add]=${p[2]}
  port[coromesh-frontend]=${p[3]} port[beast-raw]=${p[4]} port[go-nethttp]=${p[5]}
  path[nginx]=/ path[coromesh-hello]=/hello path[coromesh-add]='/api/v1/execute?l=2&r=3'
  path[coromesh-frontend]=/ivt path[beast-raw]=/ path[go-nethttp]=/
  start_nginx_hello 1 "${port[nginx]}"
  pid[nginx]=$started
  suite_start hello "$BENCH_BIN/hello-svc" --port "${port[coromesh-hello]}" "${common[@]}"
  pid[coromesh-hello]=$started
  suite_start add "$BENCH_BIN/add-svc" --port "${port[coromesh-add]}" "${common[@]}"
  pid[coromesh-add]=$started
  suite_start frontend "$BENCH_BIN/frontend" --port "${port[coromesh-frontend]}" "${common[@]}"
  pid[coromesh-frontend]=$started
  suite_start beast "$BENCH_BIN/beast_raw_server" --port "${port[beast-raw]}" --threads 1
  pid[beast-raw]=$started
  suite_start go env GOMAXPROCS=1 "$BENCH_BIN/go-hello" -port "${port[go-nethttp]}"
  pid[go-nethttp]=$started
  local s
  for s in "${subjects[@]}"; do
    wait_http "${port[$s]}" "${path[$s]}" 30 "${pid[$s]}" ||
      die "$s did not answer GET ${path[$s]} on 127.0.0.1:${port[$s]} within 30 s; logs:
$(tail -n 5 "$work"/*.log)"
  done
}

# hold_rss SUBJECT ROUND: RSS while $hold connections are held open to the subject.
hold_rss() {
  local s="$1" ready="$work/hold-ready" holder count
  rm -f "$ready"
  python3 "$COROMESH_ROOT/benchmarks/load/lib/hold_connections.py" "${port[$s]}" "$hold" \
    "$ready" 120 "${path[$s]}" >"$BENCH_OUT/raw/hold-$s-r$2.log" 2>&1 &
  holder=$!
  suite_pids+=("$holder")
  local deadline=$((SECONDS + 90))
  while [ ! -s "$ready" ] && kill -0 "$holder" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
  done
  count=$(cat "$ready" 2>/dev/null || echo 0)
  [ "${count:-0}" -eq "$hold" ] ||
    die "$s: only ${count:-0} of $hold connections held: $(tail -3 "$BENCH_OUT/raw/hold-$s-r$2.log")"
  sleep 1
  sample "$held_case" "$s" "$2" rss_mib "$(awk -v k="$(rss_kib "${pid[$s]}")" 'BEGIN {printf "%.1f", k / 1024}')" MiB
  suite_stop "$holder"
}

for ((round = 1; round <= BENCH_ROUNDS; round++)); do
  start_servers
  for s in "${subjects[@]}"; do
    wrk -t 1 -c 10 -d 1s "http://127.0.0.1:${port[$s]}${path[$s]}" >/dev/null 2>&1 || true
  done
  sleep 1
  for s in "${subjects[@]}"; do
    sample conns=0 "$s" "$round" rss_mib "$(awk -v k="$(rss_kib "${pid[$s]}")" 'BEGIN {printf "%.1f", k / 1024}')" MiB
  done
  for s in "${subjects[@]}"; do
    log "round $round/$BENCH_ROUNDS: $s holding $hold connections"
    hold_rss "$s" "$round"
  done
  suite_stop "${pid[@]}"

  log "round $round/$BENCH_ROUNDS: proxy pairs (benchmarks/load/sidecar_pairs.sh --rounds 0)"
  export_dir="$BENCH_OUT/raw/pairs-r$round"
  SIDECAR_BIN="$BENCH_BIN/coromesh-sidecar" "$COROMESH_ROOT/benchmarks/load/sidecar_pairs.sh" \
    --rounds 0 --hold "$hold" --export "$export_dir" --out "$export_dir/sidecar_pairs.txt" >"$BENCH_OUT/raw/pairs-r$round.log" 2>&1 ||
    die "sidecar_pairs.sh failed: $(tail -20 "$BENCH_OUT/raw/pairs-r$round.log")"
  # idle.tsv: path, RSS KiB list (out,in); held.tsv (header): path, held, RSS KiB list.
  python3 - "$export_dir" "$round" "$held_case" "$hold" >>"$BENCH_OUT/samples.tsv" <<'PY'
import csv, sys
export, round_, held_case, hold = sys.argv[1:5]
names = {"coromesh-tcp": "coromesh-sidecar", "consul": "consul-connect-proxy", "nginx": "nginx-tls"}
def largest(text):
    return max(int(v) for v in text.split(",")) / 1024
for case, file, header in (("conns=0", "idle.tsv", False), (held_case, "held.tsv", True)):
    rows = list(csv.reader(open(f"{export}/{file}"), delimiter="\t"))[1 if header else 0:]
    for row in rows:
        if row and row[0] in names:
            if header and int(row[1]) != int(hold):
                sys.exit(f"{row[0]}: only {row[1]} of {hold} connections held")
            print(f"{case}\t{names[row[0]]}\t{round_}\trss_mib\t{largest(row[-1]):.1f}\tMiB")
PY
done
