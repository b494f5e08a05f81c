#!/usr/bin/env python3
"""One wrk --latency output -> one tab-separated row for sidecar_pairs.sh.

    parse_wrk.py WRK_OUTPUT ROUND CONNECTIONS PATH CPU_SECONDS RSS_LIST

Prints: round, connections, path, requests/s, p50 ms, p99 ms, cpu s, rss list,
requests, errors (socket errors + non-2xx/3xx). A run wrk could not make (no
"Requests/sec" line) is a row of zeros, which the caller reports as a failure.
"""
import re
import sys

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * UNIT_MS[match.group(2)] if match else 0.0


def main():
    path, round_, conns, name, cpu, rss = sys.argv[1:7]
    out = open(path, encoding="utf-8", errors="replace").read()
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    requests = re.search(r"^\s+(\d+) requests in", out, re.M)
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    row = [
        round_, conns, name,
        f"{float(rps.group(1)):.0f}" if rps else "0",
        f"{to_ms(p50.group(1)):.3f}" if p50 else "0",
        f"{to_ms(p99.group(1)):.3f}" if p99 else "0",
        cpu, rss or "-",
        requests.group(1) if requests else "0",
        str(errors),
    ]
    print("\t".join(row))


if __name__ == "__main__":
    main()
