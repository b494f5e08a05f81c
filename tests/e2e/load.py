#!/usr/bin/env python3
"""A bounded steady load that records every request, for the fault scenarios.

    load.py run --url URL --body JSON --expect BODY --workers N --duration S --log FILE
                [--retries R]
    load.py report --log FILE --events FILE [--slow-ms MS]

run: N workers, each one keep-alive connection, POST BODY back to back for S seconds
(or until the file FILE.stop appears). One line per request in FILE:
    START END STATUS OK ATTEMPTS
(wall-clock seconds; STATUS of the last attempt, 0 for a transport error; OK 1 when it
was 200 with exactly --expect). With --retries R a worker is "a client that retries":
a failed attempt is sent again, up to R more times, 0.1 s x attempt apart; OK then says
what the client saw in the end and ATTEMPTS how many it took.

report: reads the request log and the events file ("TIME LABEL" lines, written by the
scenario: "inject" when the fault starts, "restore" when it is undone) and prints one
JSON object: requests, errors (client-visible), failed_attempts (retried ones),
latency percentiles before the fault, when the errors came (errors_from_s,
errors_until_s: seconds after "inject", by the end of the failed request), the worst latency of requests that overlapped the
fault (inject .. restore, or the end), and recover_s: from "inject" to the end of the
last request that failed or took longer than --slow-ms (0 when none did).
"""
import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse


def worker(url, body, expect, deadline, retries, stop_file, lines, lock):
    parsed = urllib.parse.urlsplit(url)
    conn = None
    headers = {"Content-Type": "application/json"}
    while time.time() < deadline and not os.path.exists(stop_file):
        start = time.time()
        attempts, ok, status = 0, False, 0
        while True:
            attempts += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                conn.request("POST", parsed.path, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read().decode("utf-8", "replace")
                status = response.status
                ok = status == 200 and answer == expect
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = 0
                if conn is not None:
                    conn.close()
                conn = None
            if ok or attempts > retries:
                break
            time.sleep(0.1 * attempts)
        end = time.time()
        with lock:
            lines.append(f"{start:.6f} {end:.6f} {status} {int(ok)} {attempts}\n")
    if conn is not None:
        conn.close()


def run(args):
    lines, lock = [], threading.Lock()
    deadline = time.time() + args.duration
    stop_file = args.log + ".stop"
    threads = [
        threading.Thread(
            target=worker,
            args=(args.url, args.body, args.expect, deadline, args.retries, stop_file, lines, lock),
        )
        for _ in range(args.workers)
    ]
    for thread in threads:
        thread.start()
    # The log is written as it goes, so a scenario can watch the load's progress.
    written = 0
    with open(args.log, "w") as log:
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            with lock:
                chunk, written = lines[written:], len(lines)
            log.writelines(chunk)
            log.flush()
        log.writelines(lines[written:])


def percentile(values, fraction):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(args):
    requests = []
    with open(args.log) as log:
        for line in log:
            start, end, status, ok, attempts = line.split()
            requests.append((float(start), float(end), int(status), ok == "1", int(attempts)))
    events = {}
    if os.path.exists(args.events):
        with open(args.events) as f:
            for line in f:
                when, label = line.split(maxsplit=1)
                events.setdefault(label.strip(), float(when))
    inject = events.get("inject")
    last_end = max((r[1] for r in requests), default=0.0)
    restore = events.get("restore", last_end)
    ms = lambda r: (r[1] - r[0]) * 1000
    before = [ms(r) for r in requests if inject is None or r[1] < inject]
    during = [r for r in requests if inject is not None and r[1] >= inject and r[0] <= restore]
    bad_after = [
        r[1] for r in requests
        if inject is not None and r[1] >= inject and (not r[3] or ms(r) > args.slow_ms)
    ]
    summary = {
        "requests": len(requests),
        "errors": sum(1 for r in requests if not r[3]),
        "failed_attempts": sum(r[4] - (1 if r[3] else 0) for r in requests),
        "statuses": {},
        "before_p50_ms": round(percentile(before, 0.5), 1),
        "before_p99_ms": round(percentile(before, 0.99), 1),
        "before_max_ms": round(max(before, default=0.0), 1),
        "during_requests": len(during),
        "during_errors": sum(1 for r in during if not r[3]),
        "during_p50_ms": round(percentile([ms(r) for r in during], 0.5), 1),
        "during_p99_ms": round(percentile([ms(r) for r in during], 0.99), 1),
        "during_max_ms": round(max((ms(r) for r in during), default=0.0), 1),
        "errors_from_s": round(min((r[1] for r in requests if not r[3]), default=inject or 0) - (inject or 0), 2),
        "errors_until_s": round(max((r[1] for r in requests if not r[3]), default=inject or 0) - (inject or 0), 2),
        "recover_s": round(max(bad_after) - inject, 2) if bad_after else 0.0,
        "slow_ms": args.slow_ms,
    }
    for r in requests:
        if not r[3]:
            key = str(r[2])
            summary["statuses"][key] = summary["statuses"].get(key, 0) + 1
    print(json.dumps(summary))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--body", required=True)
    r.add_argument("--expect", required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--retries", type=int, default=0)
    r.add_argument("--log", required=True)
    p = sub.add_parser("report")
    p.add_argument("--log", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--slow-ms", type=float, default=500.0)
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
