#!/usr/bin/env python3
"""N idle connections held open against one process, which must keep serving.

    idle_connections.py --name NAME --port PORT --pid PID --good-url URL --expect BODY
                        [--connections N] [--close-within S] [--rss-bound-mib M]
                        [--row FILE]

Opens N TCP connections to 127.0.0.1:PORT that never send a byte (to a TLS port: never
a ClientHello; with --send-first, only those bytes; with --request-first, one request
each, answered, then nothing: keep-alive connections), all at once, then: a good request (GET URL, answered 200 BODY) while
they are open; every connection must be closed by the process (its header, handshake or
idle timeout) within S seconds of the last one opening; the process (PID) must still
run and serve the good request afterwards; its RSS growth while they were open must
stay under M MiB. Prints what it measured (RSS and descriptors of PID before, with the
N open, after) and, with --row, appends a Markdown row for RELIABILITY.md. Exits 1 when
a check fails.

The client is this process, with its descriptor limit raised to the hard limit (N + a
few hundred are needed); the server is another process with its own limit.
"""
import argparse
import datetime
import os
import resource
import select
import socket
import sys
import time
import urllib.request


def status_of(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def rss_mib(pid):
    return int(status_of(pid)["VmRSS"].split()[0]) / 1024.0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def alive(pid):
    try:
        return status_of(pid).get("State", "Z").split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def good_request(url, expect):
    """(answered as expected, latency in ms, what came back)."""
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode("utf-8", "replace")
            ok = response.status == 200 and body == expect
            got = "%d %s" % (response.status, body[:80])
    except Exception as error:  # any failure is the finding, whatever its type
        ok, got = False, repr(error)[:120]
    return ok, (time.monotonic() - start) * 1000, got


def read_answer(sock):
    """One HTTP/1.1 answer with a Content-Length, read whole: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before an answer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the middle of an answer")
        body += chunk
    return int(head.split(b" ")[1]), body.decode("utf-8", "replace")


def open_all(port, count, first=b"", request=None, expect=None):
    """count connections, opened one after the other (each connect completes in the
    kernel; the process accepts them at its own pace), each sending `first`; with
    `request` (a path), each is a keep-alive connection that had one request answered
    (`expect`) before it went idle: sent 100 connections at a time, then answered."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first:
            sock.sendall(first)
        if request:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % request.encode())
        sockets.append(sock)
        if request and (len(sockets) % 100 == 0 or len(sockets) == count):
            for waiting in sockets[-(len(sockets) % 100 or 100):]:
                status, body = read_answer(waiting)
                if status != 200 or body != expect:
                    raise RuntimeError("keep-alive request answered %d %r" % (status, body))
    for sock in sockets:
        sock.setblocking(False)
    return sockets


def wait_closed(sockets, until):
    """How many the peer closed (EOF or reset) before `until` (monotonic), and when the
    last of them was seen closing."""
    poller = select.epoll()
    by_fd = {}
    for sock in sockets:
        poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        by_fd[sock.fileno()] = sock
    closed, last = 0, None
    while by_fd and time.monotonic() < until:
        for fd, _ in poller.poll(max(0.0, min(0.5, until - time.monotonic()))):
            sock = by_fd.pop(fd)
            poller.unregister(fd)
            try:
                data = sock.recv(1)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if data == b"":
                closed += 1
                last = time.monotonic()
    poller.close()
    return closed, last


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="what is tested, for the report")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--good-url", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--close-within", type=float, default=20)
    parser.add_argument("--rss-bound-mib", type=float, default=200,
                        help="0: not checked (a sanitizer build: its allocator keeps freed "
                        "memory in quarantine), said so in the output")
    parser.add_argument("--send-first", default="",
                        help="hex bytes each connection sends once, then nothing more (e.g. "
                        "the first bytes of a TLS record: a ClientHello that stalls)")
    parser.add_argument("--request-first", metavar="PATH",
                        help="each connection has a GET PATH answered (--expect) first, "
                        "then idles as a keep-alive connection")
    parser.add_argument("--row", help="append a Markdown row to this file")
    args = parser.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.connections + 200:
        sys.exit("idle_connections: the descriptor limit (%d) is below %d connections" %
                 (hard, args.connections))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    ok_before, _, got = good_request(args.good_url, args.expect)
    if not ok_before:
        sys.exit("idle_connections: %s does not serve the good request to begin with: %s" %
                 (args.name, got))
    rss_before, fds_before = rss_mib(args.pid), fd_count(args.pid)
    started = time.monotonic()
    sockets = open_all(args.port, args.connections, bytes.fromhex(args.send_first),
                       args.request_first, args.expect)
    opened_in = time.monotonic() - started
    # The process has them all once its descriptors say so (a few seconds at most).
    fds_open = fd_count(args.pid)
    settle = time.monotonic() + 5
    while fds_open < fds_before + args.connections and time.monotonic() < settle:
        time.sleep(0.05)
        fds_open = max(fds_open, fd_count(args.pid))
    rss_open = rss_mib(args.pid)
    served, latency_ms, got = good_request(args.good_url, args.expect)
    rss_open = max(rss_open, rss_mib(args.pid))
    try:
        closed, last = wait_closed(sockets, time.monotonic() + args.close_within)
    finally:
        for sock in sockets:
            sock.close()
    still_alive = alive(args.pid)
    served_after, _, got_after = (good_request(args.good_url, args.expect) if still_alive
                                  else (False, 0, "process gone"))
    # The descriptors go once the process has seen our closes too.
    fds_after = fd_count(args.pid) if still_alive else -1
    rss_after = rss_mib(args.pid) if still_alive else -1
    growth = rss_open - rss_before
    per_1k = growth / (args.connections / 1000.0)
    closed_after_s = (last - started) if last else -1

    print("%s: %d connections opened in %.1f s; process descriptors %d -> %d (open) -> %d; "
          "RSS %.1f -> %.1f MiB (+%.1f, %.2f MiB per 1k connections) -> %.1f MiB after; good "
          "request while open: %s in %.0f ms (%s); closed by the process: %d of %d, the last "
          "%.1f s after the first opened; alive: %s; served after: %s (%s)" % (
              args.name, args.connections, opened_in, fds_before, fds_open, fds_after,
              rss_before, rss_open, growth, per_1k, rss_after, served, latency_ms, got,
              closed, args.connections, closed_after_s, still_alive, served_after, got_after))
    checks = {
        "a good request was served while they were open": served,
        "every connection was closed by the process": closed == args.connections,
        "the process is still running": still_alive,
        "a good request was served afterwards": served_after,
    }
    if args.rss_bound_mib > 0:
        checks["RSS grew by less than %g MiB" % args.rss_bound_mib] = growth < args.rss_bound_mib
    else:
        print("%s: RSS reported, NOT checked against a bound (--rss-bound-mib 0)" % args.name)
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        print("FAIL %s: %s" % (args.name, name))
    if args.row:
        with open(args.row, "a") as out:
            expected = "served; all closed" + (
                "; RSS < %g MiB" % args.rss_bound_mib if args.rss_bound_mib > 0 else "")
            out.write("| %d idle connections | %s | %s | "
                      "served in %.0f ms; %d of %d closed, the last %.1f s after opening; "
                      "RSS %.1f -> %.1f MiB (%.2f MiB per 1k), %.1f after | %s | "
                      "`integration.idle_connections` | %s |\n" % (
                          args.connections, args.name, expected, latency_ms, closed,
                          args.connections, closed_after_s, rss_before, rss_open, per_1k,
                          rss_after, "fail" if failed else "pass",
                          datetime.date.today().isoformat()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
