# Process figures read from /proc for benchmarks/load/*.sh (sourced). A "proxy" is a
# PID together with its children (nginx: master + worker), so one number per proxy.

# proc_tree PID: the PID and its direct children.
proc_tree() {
  echo "$1"
  pgrep -P "$1" 2>/dev/null || true
}

# cpu_ticks PID...: utime + stime (clock ticks) summed over the PIDs and their children.
# Fields after the ")" that closes the command name: state is 1st, utime 12th, stime 13th.
cpu_ticks() {
  local total=0 pid stat
  for pid in "$@"; do
    for p in $(proc_tree "$pid"); do
      stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
      stat=${stat##*) }
      total=$((total + $(awk '{print $12 + $13}' <<<"$stat")))
    done
  done
  echo "$total"
}

# rss_kib PID: VmRSS of the PID and its children, KiB.
rss_kib() {
  local total=0 p kib
  for p in $(proc_tree "$1"); do
    kib=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# rss_list PID...: one rss_kib per PID, comma-separated (empty for no PID).
rss_list() {
  local out="" pid
  for pid in "$@"; do out="$out${out:+,}$(rss_kib "$pid")"; done
  echo "$out"
}
