# Background processes tracked by PID files in a run directory, and free loopback
# ports (sourced by ops/lib/platform.sh, ops/lib/topology.sh and their callers).
#
#   proc_start DIR NAME CMD...   starts CMD with its log in DIR/NAME.log and its PID in
#                                DIR/NAME.pid; sets $proc_started to the PID
#   proc_alive DIR NAME          true while that process runs
#   proc_pid DIR NAME            its PID (empty when there is no PID file)
#   proc_restart DIR NAME        starts NAME again with the command proc_start was given
#                                (kept in DIR/NAME.cmd); sets $proc_started
#   proc_stop DIR NAME...        SIGTERM to all, up to PROC_STOP_GRACE (15) seconds,
#                                then SIGKILL; removes the PID files
#   free_ports N [GIVEN_FILE]    N distinct free loopback ports, none in GIVEN_FILE
#
# A PID file holds "PID STARTTIME" (field 22 of /proc/PID/stat), so a PID the kernel
# has handed to another process since (after a reboot, say) is never taken for ours
# and never signalled. PROC_DETACH=1 starts each process in a process group of its own
# (bash's job control, set -m): the demo's processes outlive the shell that started them
# and a later Ctrl-C in it. They stay in the caller's session, not one each (setsid):
# with the kernel's autogroup scheduling a session is a scheduling group, and 19
# processes passing every request along a chain, each in a group of its own, made the
# coromesh mesh half as fast under load (a chain of Go proxies, which spin before they
# sleep, suffered less). A test leaves it 0: its processes stay in its process group.

# _proc_starttime PID: the process's start time in clock ticks since boot; empty
# when there is no such process. Field 22 counts from the ")" that ends the name.
_proc_starttime() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # After the name: state is field 3 of the line, starttime field 22.
  awk '{print $20}' <<<"$stat"
}

# _proc_running PID STARTTIME: the process exists, is that process, and is no zombie
# (a child we killed stays a zombie until waited for, and kill -0 still reaches it).
_proc_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  [ -z "${2:-}" ] || [ "$(awk '{print $20}' <<<"$stat")" = "$2" ]
}

proc_pid() {
  [ -f "$1/$2.pid" ] || return 0
  local pid _
  read -r pid _ <"$1/$2.pid"
  echo "$pid"
}

proc_alive() {
  [ -f "$1/$2.pid" ] || return 1
  local pid started
  read -r pid started <"$1/$2.pid"
  _proc_running "$pid" "$started"
}

proc_start() {
  local dir="$1" name="$2"
  shift 2
  # The working directory is the run directory: Consul's dev agent writes relative
  # paths, which must not land in the source tree.
  [ "${PROC_DETACH:-0}" != 1 ] || set -m
  printf '%s\0' "$@" >"$dir/$name.cmd"
  # A restart (proc_restart) appends to the log: what the first run said stays.
  [ "${_proc_restarting:-0}" = 1 ] || : >"$dir/$name.log"
  (cd "$dir" && exec "$@") >>"$dir/$name.log" 2>&1 </dev/null &
  proc_started=$!
  [ "${PROC_DETACH:-0}" != 1 ] || set +m
  # The start time is read once the subshell has exec'd (same PID, same start time).
  echo "$proc_started $(_proc_starttime "$proc_started")" >"$dir/$name.pid"
}

proc_restart() {
  local -a command=()
  [ -f "$1/$2.cmd" ] || die "proc_restart: $2 was never started in $1"
  ! proc_alive "$1" "$2" || die "proc_restart: $2 is still running"
  mapfile -d '' -t command <"$1/$2.cmd"
  _proc_restarting=1 proc_start "$1" "$2" "${command[@]}"
}

proc_stop() {
  local dir="$1" name pid started deadline
  shift
  local -a pids=() starts=()
  for name in "$@"; do
    [ -f "$dir/$name.pid" ] || continue
    read -r pid started <"$dir/$name.pid"
    if _proc_running "$pid" "$started"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      starts+=("$started")
    fi
  done
  deadline=$((SECONDS + ${PROC_STOP_GRACE:-15}))
  local i alive
  while [ "${#pids[@]}" -gt 0 ]; do
    alive=0
    for i in "${!pids[@]}"; do
      _proc_running "${pids[$i]}" "${starts[$i]}" && alive=1
    done
    [ "$alive" -eq 1 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      for i in "${!pids[@]}"; do
        if _proc_running "${pids[$i]}" "${starts[$i]}"; then
          echo "[${COROMESH_SCRIPT:-ops}] pid ${pids[$i]} ignored SIGTERM for ${PROC_STOP_GRACE:-15}s: SIGKILL" >&2
          kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
      done
      break
    fi
    sleep 0.1
  done
  # Reap the ones that are our children (a no-op for processes an earlier shell started).
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for name in "$@"; do rm -f "$dir/$name.pid"; done
}

# free_ports N [GIVEN_FILE]: N distinct loopback ports free now, between 20000 and the
# kernel's ephemeral range (a port bind(0) handed out can come back as the source port
# of an outgoing connection before its listener binds it), none listed in GIVEN_FILE,
# to which they are appended. The probe sockets are closed before the ports are
# printed: `read < <(free_ports N)` goes on as soon as the line is out.
free_ports() {
  python3 - "$1" "${2:-}" <<'PY'
import os, random, socket, sys
count, given_file = int(sys.argv[1]), sys.argv[2]
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
high = min(32000, low)
given = set()
if given_file and os.path.exists(given_file):
    given = set(open(given_file).read().split())
socks = []
for _ in range(100 * count + 1000):
    if len(socks) == count:
        break
    port = random.randrange(20000, high)
    if str(port) in given:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    given.add(str(port))
    socks.append(s)
if len(socks) < count:
    sys.exit(f"free_ports: only {len(socks)} of {count} free ports in 20000..{high}")
ports = [str(s.getsockname()[1]) for s in socks]
for s in socks:
    s.close()
if given_file:
    with open(given_file, "a") as f:
        f.write(" ".join(ports) + "\n")
print(" ".join(ports), flush=True)
PY
}

# port_busy PORT: something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
