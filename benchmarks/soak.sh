#!/usr/bin/env bash
# Soak: the calculator mesh (tests/e2e/lib.sh: free loopback ports, its own Consul dev
# agent) under a steady load of the seed's request for N minutes, with one operator
# instance killed (SIGKILL) and restarted every 30 s, in turn. Every 5 s it samples the
# RSS (VmRSS of /proc/PID/status) and the open descriptors (/proc/PID/fd) of every
# process (services, sidecars, Consul). At the end, a table per process of the first
# sample after a 30 s warm-up, the maximum and the last; it fails when a process that
# ran the whole time grew past the bound, or when the load saw an error.
#
#   benchmarks/soak.sh [--minutes N=4] [--bin DIR=build/bin]
#
# Bounds (start = first sample after warm-up, end = last sample of the same PID):
#   RSS  end <= start x 1.2 + 4 MiB      fds  end <= start + 8
# A restarted instance is judged on its last incarnation from its own start, so it
# is reported but not held to the bound when that incarnation is shorter than the
# warm-up. The raw samples are kept in the run directory with E2E_KEEP=1.
set -euo pipefail
COROMESH_SCRIPT=soak
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../tests/e2e/lib.sh
source "$root/tests/e2e/lib.sh"

minutes=4 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    *) die "usage: benchmarks/soak.sh [--minutes N] [--bin DIR]" ;;
  esac
done
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ] || [ "$minutes" -gt 120 ]; then
  die "--minutes: a whole number from 1 to 120"
fi

load_pid=""
e2e_on_exit() {
  [ -z "$load_pid" ] || { kill -TERM "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; }
}

e2e_mesh_up "$bin"
duration=$((minutes * 60))
echo "soak: ${minutes} min, 4 workers posting the seed's expression to $frontend;" \
  "an operator instance killed and restarted every 30 s"
python3 "$root/tests/e2e/load.py" run --url "http://$frontend/api/v1/compute" \
  --body '{"expression":"1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5"}' --expect '{"result":9}' \
  --workers 4 --duration "$duration" --log "$work/load.log" &
load_pid=$!

samples="$work/samples.tsv"
: >"$samples"
# sample: one line per process: SECONDS PROCESS PID RSS_KIB FDS.
sample() {
  local proc pid rss fds
  for proc in consul $(topology_rows | cut -f1); do
    pid=$(proc_pid "$work" "$proc")
    [ -n "$pid" ] && proc_alive "$work" "$proc" || continue
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\n' "$SECONDS" "$proc" "$pid" "$rss" "$fds" >>"$samples"
  done
}

victims=(add-svc-1 sub-svc-2 mul-svc-1 div-svc-2 mod-svc-1 add-svc-2 sub-svc-1 mul-svc-2 div-svc-1 mod-svc-2)
started=$SECONDS next_kill=$((SECONDS + 30)) kills=0 restart_proc="" restart_at=0
while [ $((SECONDS - started)) -lt "$duration" ]; do
  sample
  if [ -n "$restart_proc" ] && [ "$SECONDS" -ge "$restart_at" ]; then
    proc_restart "$work" "$restart_proc"
    restart_proc=""
  fi
  if [ "$SECONDS" -ge "$next_kill" ] && [ -z "$restart_proc" ] &&
    [ $((started + duration - SECONDS)) -gt 40 ]; then
    restart_proc=${victims[$((kills % ${#victims[@]}))]}
    kill -KILL "$(proc_pid "$work" "$restart_proc")"
    wait "$(proc_pid "$work" "$restart_proc")" 2>/dev/null || true
    kills=$((kills + 1)) restart_at=$((SECONDS + 5)) next_kill=$((SECONDS + 30))
  fi
  kill -0 "$load_pid" 2>/dev/null || break
  sleep 5
done
[ -z "$restart_proc" ] || proc_restart "$work" "$restart_proc"
wait "$load_pid" || true
load_pid=""
sample
summary=$(python3 "$root/tests/e2e/load.py" report --log "$work/load.log" --events /dev/null)
echo "load: $(jq -r .requests <<<"$summary") requests, $(jq -r .errors <<<"$summary") errors" \
  "(by status: $(jq -c .statuses <<<"$summary")), p50 $(jq -r .before_p50_ms <<<"$summary") ms," \
  "worst $(jq -r .before_max_ms <<<"$summary") ms; $kills instances killed and restarted"

status=0
python3 - "$samples" <<'PY' || status=$?
import sys
WARMUP, RSS_FACTOR, RSS_SLACK_KIB, FD_SLACK = 30, 1.2, 4096, 8
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
by_proc = {}
for t, proc, pid, rss, fds in rows:
    by_proc.setdefault(proc, []).append((int(t), pid, int(rss), int(fds)))
print(f"{'process':<24}{'runs':>5}{'RSS start':>11}{'max':>9}{'end':>9}{'fds start':>11}{'max':>6}{'end':>6}  verdict")
bad = 0
for proc, samples in sorted(by_proc.items()):
    runs = len(dict.fromkeys(s[1] for s in samples))
    last_pid = samples[-1][1]
    mine = [s for s in samples if s[1] == last_pid]
    first_t = mine[0][0]
    settled = [s for s in mine if s[0] - first_t >= WARMUP] or mine
    start, end = settled[0], settled[-1]
    rss_max = max(s[2] for s in settled)
    fd_max = max(s[3] for s in settled)
    judged = mine[-1][0] - first_t >= 2 * WARMUP
    ok = end[2] <= start[2] * RSS_FACTOR + RSS_SLACK_KIB and end[3] <= start[3] + FD_SLACK
    verdict = ("ok" if ok else "GREW PAST THE BOUND") if judged else "too short to judge"
    bad += judged and not ok
    mib = lambda kib: f"{kib / 1024:.1f}M"
    print(f"{proc:<24}{runs:>5}{mib(start[2]):>11}{mib(rss_max):>9}{mib(end[2]):>9}"
          f"{start[3]:>11}{fd_max:>6}{end[3]:>6}  {verdict}")
print(f"bound: RSS end <= start x {RSS_FACTOR} + {RSS_SLACK_KIB // 1024} MiB, fds end <= start + {FD_SLACK}"
      f" (start: {WARMUP} s after the process started)")
sys.exit(1 if bad else 0)
PY
[ "$status" -eq 0 ] || fail "a process grew past the bound"
[ "$(jq -r .errors <<<"$summary")" -eq 0 ] || fail "the load saw $(jq -r .errors <<<"$summary") errors"
echo "PASS"
